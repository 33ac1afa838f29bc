"""Classify every identified mouse of new LMT recordings with a registered model.

The recording goes through the same stop detection and histograms as the training
cohort, with the ``stops`` and ``histograms`` parameters stored in the model, so a model
keeps meaning what it meant when it was trained, whatever ``params.yaml`` says today.
Only the camera geometry (``lmt``: frame rate, scale, arena) and the room's time zone
come from the caller: they describe the set-up that made the recording, not the model.
The window is placed and checked by the same rules as ``histograms``
(:func:`~lmt_stereotype.histograms.stack_window`, :func:`~lmt_stereotype.histograms.check_length`),
but a recording short of it by more than ``pad_tolerance`` of an interval is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lmt_stereotype.clock import clock_hour, seconds_per_clock_hour
from lmt_stereotype.config import StackParams
from lmt_stereotype.errors import InputError
from lmt_stereotype.histograms import check_length, stack_window, stop_histograms
from lmt_stereotype.lmt import LMTDatabase
from lmt_stereotype.manifest import read_manifest
from lmt_stereotype.parallel import available_cores
from lmt_stereotype.stops import recording_stops


def load_model(uri: str) -> tuple[Any, StackParams]:
    """The registered pyfunc at ``uri`` and the parameters it was trained with; a clear error when there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from lmt_stereotype.registry import stack_params

    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(uri, f"no such model ({first_line}); train one first or pass --model URI") from None
    try:
        params = stack_params(model)
    except ValueError as exc:  # pydantic's ValidationError
        first_line = str(exc).strip().splitlines()[0]
        raise InputError(uri, f"trained by another version of lmt-stereotype ({first_line}): retrain it") from None
    if params is None:
        raise InputError(uri, "not an lmt-stereotype model: its metadata lacks the stop and histogram parameters")
    return model, params


def recording_stacks(db: Path, params: StackParams, timezone: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One stack per identified animal of ``db`` (rows: animal_id, rfid, name, n_stops in the window),
    in the window the model's histograms parameters place (its clock read in ``timezone``)."""
    h = params.histograms
    with LMTDatabase(db, params.lmt) as recording:
        animals = recording.animals()
        start_ms = recording.start_ms()
    start_hour = clock_hour(start_ms, timezone) if start_ms is not None else float("nan")
    window = stack_window(start_hour, seconds_per_clock_hour(Path(db).parent), h, str(db))
    stops, summary = recording_stops(db, params.lmt, params.stops, threads=available_cores())
    duration_s = (summary.last_frame - summary.first_frame + 1) / params.lmt.fps
    check_length(str(db), duration_s, params.lmt.fps, window, h, refuse=True)
    if not animals:
        raise InputError(db, "no identified animal in ANIMAL: nothing to classify")
    rows, stacks = [], []
    for animal in animals:
        mine = stops[stops["animal_id"] == animal.id]
        stacks.append(
            stop_histograms(mine["start_s"], mine["x_cm"], mine["y_cm"], h, params.lmt.arena_size_cm, window.offset_s)
        )
        in_window = int(stacks[-1].sum())
        rows.append({"animal_id": animal.id, "rfid": animal.rfid, "name": animal.name, "n_stops": in_window})
    return pd.DataFrame(rows), np.stack(stacks)


def prediction_inputs(inputs: Sequence[Path]) -> list[Path]:
    """The recordings ``inputs`` name, in order, each once: a file as given, every ``*.sqlite`` under a
    folder (sorted), the recordings a manifest (``.csv``) lists (its labels, if any, unused)."""
    recordings: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.sqlite") if p.is_file())
            if not found:
                raise InputError(path, "no LMT recording (*.sqlite) in this folder")
            recordings += found
        elif path.suffix.lower() == ".csv":
            recordings += [path.parent / r for r in read_manifest(path)["recording"].unique()]
        else:
            recordings.append(path)
    return list(dict.fromkeys(recordings))


def predict_recordings(
    recordings: Sequence[Path], model: Any, trained: StackParams, timezone: str, progress: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-mouse class and class probabilities of every recording, by the loaded ``model`` (whose stop and
    histogram parameters are ``trained``, the camera geometry the caller's), one table for all; and
    the inputs: each recording with its identity (:meth:`~lmt_stereotype.lmt.LMTDatabase.identity`)."""
    tables, inputs = [], []
    for db in tqdm(recordings, desc="predict", unit="rec", disable=not progress):
        animals, X = recording_stacks(db, trained, timezone)
        table = pd.concat([animals, model.predict(X).reset_index(drop=True)], axis=1)
        table.insert(0, "recording", str(db))
        tables.append(table)
        with LMTDatabase(db, trained.lmt) as recording:
            inputs.append({"recording": str(db), "identity": recording.identity(), "bytes": Path(db).stat().st_size})
    return pd.concat(tables, ignore_index=True), pd.DataFrame(inputs)
