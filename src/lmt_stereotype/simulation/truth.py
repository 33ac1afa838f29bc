"""The simulator's ground truth: the planted stops beside a simulated cohort, and how a
stop detector's stops are scored against them (for tests and benchmarks, never for models)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmt_stereotype.errors import InputError
from lmt_stereotype.files import read_table

PLANTED_DIR = "planted_stops"


def truth_file(recording: str) -> str:
    """Where, relative to the raw folder, the planted stops of ``recording`` (its manifest path) are."""
    return f"{PLANTED_DIR}/{Path(recording).with_suffix('').as_posix()}.parquet"


def planted_stops(raw_dir: Path, recording: str) -> pd.DataFrame:
    """The planted stops of a simulated ``recording`` (columns:
    :data:`~lmt_stereotype.simulation.lmt_writer.TRUTH_COLUMNS`)."""
    path = Path(raw_dir) / truth_file(recording)
    if not path.exists():
        raise InputError(path, "no planted stops: not a simulated recording, or simulated before they were kept")
    return read_table(path)


@dataclass(frozen=True)
class StopScore:
    """Detected stops against planted ones: a pair matches when both are the same animal's and their
    intersection is more than half of their union (IoU > 0.5, so that each planted stop matches at
    most one detected stop and the other way round). A rest found in pieces that each cover less
    than half of it is missed, and its pieces are false detections; two rests merged into one stop
    match one of them at most."""

    n_planted: int
    n_detected: int
    n_matched: int
    n_seen: int  # planted stops whose animal was detected and identified for >= 1 s of them
    n_seen_matched: int

    @property
    def recall(self) -> float:
        return self.n_matched / self.n_planted if self.n_planted else float("nan")

    @property
    def recall_seen(self) -> float:
        """Recall among the planted stops a detector could find (seen for at least a second)."""
        return self.n_seen_matched / self.n_seen if self.n_seen else float("nan")

    @property
    def precision(self) -> float:
        return self.n_matched / self.n_detected if self.n_detected else float("nan")

    def __add__(self, other: StopScore) -> StopScore:
        return StopScore(*(a + b for a, b in zip(self.counts(), other.counts())))

    def counts(self) -> tuple[int, int, int, int, int]:
        return self.n_planted, self.n_detected, self.n_matched, self.n_seen, self.n_seen_matched


def score_stops(detected: pd.DataFrame, planted: pd.DataFrame, fps: float) -> StopScore:
    """Scores ``detected`` stops (animal_id, start_frame, end_frame) against ``planted`` ones (also seen_frames)."""
    seen = planted["seen_frames"].to_numpy() >= fps
    matched = np.zeros(len(planted), dtype=bool)
    for animal, p in planted.reset_index(drop=True).groupby("animal_id"):
        d = detected[detected["animal_id"] == animal]
        ps, pe = p["start_frame"].to_numpy(), p["end_frame"].to_numpy()
        ds, de = d["start_frame"].to_numpy(), d["end_frame"].to_numpy()
        lo = np.searchsorted(pe, ds, side="left")  # planted stops are disjoint and sorted
        hi = np.searchsorted(ps, de, side="right")
        for j in range(int((hi - lo).max(initial=0))):
            k = lo + j
            ok = k < hi
            kk = np.where(ok, k, 0)
            inter = np.minimum(de, pe[kk]) - np.maximum(ds, ps[kk]) + 1
            union = np.maximum(de, pe[kk]) - np.minimum(ds, ps[kk]) + 1
            matched[p.index[kk[ok & (2 * inter > union)]]] = True
    return StopScore(
        n_planted=len(planted),
        n_detected=len(detected),
        n_matched=int(matched.sum()),
        n_seen=int(seen.sum()),
        n_seen_matched=int((matched & seen).sum()),
    )
