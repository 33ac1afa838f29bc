"""The cohort manifest: which animal of which recording is which mouse, in which cage, with which labels.

A CSV with one row per mouse-recording and the columns

``recording``  the LMT database, relative to the manifest's folder
``animal``     ANIMAL.ID or RFID of the mouse in that database
``cage``       cage (home group) identifier; cross-validation holds out whole cages

and any label columns, all optional: ``sex`` (M or F; male/female accepted), ``age``
(juvenile or adult; J/A accepted), ``genotype``, ``strain``, ``treatment``
(:data:`~lmt_stereotype.labels.GROUPING_COLUMNS`) and any other a lab keeps (``rank``,
``batch`` ...), each a possible ``target.column``. Empty cells of the grouping columns
are filled from ANIMAL's column of the same name when the database has it; a manifest
value that contradicts ANIMAL is an error. A label the target needs and neither gives
is an error of ``histograms``, which applies the target.

Errors name the manifest, the row (as a spreadsheet numbers it: the header is row 1)
and the problem: a missing column, an empty cell, a recording that is not there, an
animal that is not (or not unambiguously) in its database, an unknown sex or age
label, the same animal of a recording listed twice. Allowed, though the paper's design
has neither:

- a cage holding both sexes is allowed, with a warning naming the cage and its rows
  (the paper's cages are single-sex, so it is more often a typo than a design):
  leave-one-cage-out holds it out whole, and the permutation test shuffles sex within
  it (``evaluation.design_permutation``);
- a cage with a single recording (or a single mouse) is allowed: its fold holds that
  recording alone. Tuning needs enough cages, which ``train`` checks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lmt_stereotype.clock import clock_hour, seconds_per_clock_hour
from lmt_stereotype.config import LMTGeometry
from lmt_stereotype.errors import InputError
from lmt_stereotype.labels import GROUPING_COLUMNS
from lmt_stereotype.lmt import Animal, LMTDatabase

MANIFEST_COLUMNS = ("recording", "animal", "cage")
"""The columns every manifest has; any others are labels."""
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F"}
_AGE = {"j": "juvenile", "juv": "juvenile", "juvenile": "juvenile", "a": "adult", "adult": "adult"}
_VOCABULARY = {"sex": _SEX, "age": _AGE}

log = logging.getLogger(__name__)


def recording_id(recording: str) -> str:
    """A file-name-safe id for a database path given relative to the manifest."""
    return Path(recording).with_suffix("").as_posix().replace("/", "__")


def _normalise(value: object, vocabulary: dict[str, str] | None) -> str | None:
    """A label cell as its canonical text (``?text`` outside a vocabulary); None when empty."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text if vocabulary is None else vocabulary.get(text.lower(), f"?{text}")


def read_manifest(path: Path | str) -> pd.DataFrame:
    """Read and check a manifest's structure; labels may still be missing (see :func:`resolve`).

    Every recording it names must exist (relative to the manifest's folder): a missing
    one is named with its row here, before any recording is read.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(path, "manifest not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a manifest") from None
    except PermissionError:
        raise InputError(path, "cannot be read (permission denied)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV manifest: {exc}") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"manifest lacks column(s) {', '.join(missing)}")
    reserved = [c for c in df.columns if c in _DERIVED]
    if reserved:
        raise InputError(path, f"column(s) {', '.join(reserved)} are made by lmt-stereotype; rename them")
    if df.empty:
        raise InputError(path, "manifest has no rows")
    for col in GROUPING_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    df = df.apply(lambda s: s.str.strip())
    for col in ("recording", "animal", "cage"):
        empty = df.index[df[col] == ""]
        if len(empty):
            raise InputError(path, f"row {empty[0] + 2}: empty {col}")
    dup = df.duplicated(["recording", "animal"], keep=False)
    if dup.any():
        rows = ", ".join(str(i + 2) for i in df.index[dup])
        raise InputError(path, f"rows {rows}: the same animal of a recording is listed twice")
    for col in GROUPING_COLUMNS:
        vocab = _VOCABULARY.get(col)
        df[col] = pd.Series([_normalise(v, vocab) for v in df[col]], index=df.index, dtype=object)
    for col, vocab in _VOCABULARY.items():
        bad = [(i, v) for i, v in zip(df.index, df[col]) if v is not None and v.startswith("?")]
        if bad:
            i, v = bad[0]
            allowed = "/".join(sorted(set(vocab.values())))
            raise InputError(path, f"row {i + 2}: unknown {col} {v[1:]!r} (expected {allowed})")
    for i, rec in zip(df.index, df["recording"]):
        if not (path.parent / rec).exists():
            raise InputError(path, f"row {i + 2}: recording not found: {rec} (looked for {path.parent / rec})")
    df["recording_id"] = [recording_id(r) for r in df["recording"]]
    return df


SAMPLE_COLUMNS = (
    "sample",
    "recording",
    "recording_id",
    "manifest_row",
    "animal",
    "animal_id",
    "rfid",
    "cage",
    *GROUPING_COLUMNS,
    "identity",
    "start_hour",
    "seconds_per_hour",
)
"""The sample table ``stops`` writes (one row per mouse-recording) and every later stage reads:
these columns first, then the manifest's other columns."""
_DERIVED = {*SAMPLE_COLUMNS, "class", "label"} - {*MANIFEST_COLUMNS, *GROUPING_COLUMNS}
"""Columns the sample table derives, so a manifest may not hold them."""
_NUMBERS = {"manifest_row": "int64", "animal_id": "int64", "start_hour": "float64", "seconds_per_hour": "float64"}


def sample_table(resolved: pd.DataFrame) -> pd.DataFrame:
    """The sample table's columns of a resolved manifest, in order, unknown labels as empty text."""
    extra = [c for c in resolved.columns if c not in SAMPLE_COLUMNS]
    table = resolved[[*SAMPLE_COLUMNS, *extra]].copy()
    table[list(GROUPING_COLUMNS)] = table[list(GROUPING_COLUMNS)].fillna("")
    return table


def read_samples(path: Path | str) -> pd.DataFrame:
    """The sample table, with its text columns kept as text (an RFID keeps its leading zeros)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(path, "no sample table; run `lmt-stereotype stops` first") from None
    missing = [c for c in SAMPLE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, f"lacks column(s) {', '.join(missing)}: run `lmt-stereotype stops` again")
    return table.astype({c: t for c, t in _NUMBERS.items() if c != "start_hour"}).assign(
        start_hour=pd.to_numeric(table["start_hour"].replace("", np.nan))
    )


def _match_animal(animals: list[Animal], key: str) -> Animal | None:
    by_id = [a for a in animals if key.isdigit() and a.id == int(key)]
    by_rfid = [a for a in animals if a.rfid is not None and a.rfid == key]
    if by_id and by_rfid and by_id[0] != by_rfid[0]:
        return None
    return (by_id or by_rfid or [None])[0]


def resolve(manifest: pd.DataFrame, manifest_path: Path, geometry: LMTGeometry) -> pd.DataFrame:
    """Match each row to its ANIMAL, fill label gaps from ANIMAL's columns, add ``animal_id``, ``rfid``, ``sample``.

    Opens each database once (read-only) to read its ANIMAL table.
    """
    root = manifest_path.parent
    out = manifest.copy().astype({c: object for c in GROUPING_COLUMNS})
    animal_ids, rfids = [], []
    for rec, rows in manifest.groupby("recording", sort=False):
        with LMTDatabase(root / rec, geometry) as db:
            animals = db.animals()
        for i in rows.index:
            key = manifest.at[i, "animal"]
            animal = _match_animal(animals, key)
            if animal is None:
                known = ", ".join(f"{a.id} ({a.rfid})" for a in animals) or "no rows"
                raise InputError(
                    manifest_path,
                    f"row {i + 2}: animal {key!r} is not (or not unambiguously) in {rec}; ANIMAL has {known}",
                )
            animal_ids.append((i, animal.id))
            rfids.append((i, animal.rfid))
            for col in GROUPING_COLUMNS:
                from_db = _normalise(getattr(animal, col), _VOCABULARY.get(col))
                if from_db is not None and from_db.startswith("?"):
                    from_db = None  # free text in ANIMAL we cannot read as a label
                given = out.at[i, col]
                if pd.isna(given):
                    out.at[i, col] = from_db
                elif from_db is not None and from_db != given:
                    raise InputError(
                        manifest_path,
                        f"row {i + 2}: {col} {given} contradicts ANIMAL.{col.upper()} {from_db} in {rec}",
                    )
    out["animal_id"] = pd.Series(dict(animal_ids), dtype="int64")
    out["rfid"] = pd.Series(dict(rfids), dtype="string")
    dup = out.duplicated(["recording", "animal_id"], keep=False)
    if dup.any():
        rows = ", ".join(str(i + 2) for i in out.index[dup])
        raise InputError(manifest_path, f"rows {rows}: name the same animal of a recording twice")
    for cage, rows in out.groupby("cage", sort=True):
        if rows["sex"].dropna().nunique() > 1:
            log.warning(
                "%s: cage %s holds both sexes (rows %s): allowed (it is held out whole), but check the labels",
                manifest_path,
                cage,
                ", ".join(str(i + 2) for i in rows.index),
            )
    out["manifest_row"] = out.index + 2
    out["sample"] = [f"{r}:{a}" for r, a in zip(out["recording_id"], out["animal_id"])]
    return out


def cohort_samples(manifest_path: Path, summary: pd.DataFrame, geometry: LMTGeometry, timezone: str) -> pd.DataFrame:
    """The sample table of a cohort whose stops are found (``summary``: one row per recording, from
    :func:`~lmt_stereotype.stops.detect_cohort_stops`): each mouse-recording resolved against its
    ANIMAL table, with its recording's identity and clock (the time of day of its first frame in
    ``timezone``, seconds per clock hour)."""
    samples = resolve(read_manifest(manifest_path), manifest_path, geometry)
    by_recording = summary.set_index("recording_id")
    samples["identity"] = by_recording.loc[samples["recording_id"], "identity"].to_numpy()
    start_ms = by_recording.loc[samples["recording_id"], "start_ms"].to_numpy(dtype=float)
    samples["start_hour"] = [clock_hour(ms, timezone) if ms == ms else float("nan") for ms in start_ms]
    samples["seconds_per_hour"] = seconds_per_clock_hour(manifest_path.parent)
    return sample_table(samples)
