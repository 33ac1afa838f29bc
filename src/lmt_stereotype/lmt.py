"""Reading Live Mouse Tracker (LMT) SQLite recordings, read-only and one animal at a time.

Follows ``shared/lmt/FORMAT.md`` (its schema and variants as SQL: :mod:`lmt_stereotype.schema`):
ANIMAL with 3 to 9 columns, EVENT with or without METADATA, anonymous detections
(ANIMALID NULL) ignored, duplicated (animal, frame) rows collapsed, dropped frames
tolerated, MASS_X below a threshold dropped as junk.
Tracks are streamed in chunks through the covering index
``detectionFastLoadXYIndex`` so that neither the DATA column nor a whole recording
is ever held in memory. Tracks are read by the ADBC SQLite driver, which fills Arrow
columns in C without a Python object per row (4x faster than ``sqlite3``'s tuples) and
without holding the GIL, so several animals can be read at once in threads.

What a recording gets (each case is in ``tests/test_corpus.py``):

- refused with an :class:`~lmt_stereotype.errors.InputError` naming the file: missing,
  a directory or anything but a regular file (a FIFO would block the reader forever),
  unreadable (permission), empty, not SQLite (a text file named ``.sqlite``), truncated
  (mid-page or at a page boundary) or otherwise corrupt, locked by a writer for longer
  than :data:`BUSY_TIMEOUT_S`, DETECTION or ANIMAL missing, a needed column missing,
  no frame at all;
- read, as documented: an ANIMAL row empty but for its ID is no animal; detections
  with a NULL, non-numeric (``'NaN'`` text: SQLite cannot store a NaN REAL, it stores
  NULL) or infinite coordinate or frame number are missing detections, like junk
  (MASS_X below ``min_mass_x_px``); coordinates outside the arena are kept as measured
  (the histograms clip them to the border tile); FRAME.TIMESTAMP is used only for the
  clock time of the first frame (where the clock's intervals start), never for timing,
  so a clock going backwards later changes nothing;
- read, with a warning naming the recording and animal: an animal with no valid
  detection at all (so no stops), which is every animal when only anonymous detections
  are left; an empty ANIMAL table.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_manager
import adbc_driver_sqlite.dbapi as adbc_sqlite
import numpy as np

from lmt_stereotype.config import LMTGeometry
from lmt_stereotype.errors import InputError
from lmt_stereotype.schema import COVERING_INDEX

NEEDED_COLUMNS = {
    "DETECTION": ("ANIMALID", "FRAMENUMBER", "MASS_X", "MASS_Y"),
    "ANIMAL": ("ID",),
}
OPTIONAL_ANIMAL_COLUMNS = ("RFID", "NAME", "GENOTYPE", "SEX", "AGE", "STRAIN", "TREATMENT")

_SQLITE_MAGIC = b"SQLite format 3\x00"

BUSY_TIMEOUT_S = 5.0
"""How long opening waits for a writer's lock (the tracker still writing) before giving up."""
IDENTITY_DETECTIONS = 1000
"""Detections a recording's :meth:`LMTDatabase.identity` reads."""

_FINITE = 1.7976931348623157e308
"""Coordinates are kept between -_FINITE and _FINITE: this drops NULL, infinities and text
(SQLite orders any TEXT above every number) inside the index scan, without a function call."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Animal:
    """One row of ANIMAL; optional columns are ``None`` when absent or empty."""

    id: int
    rfid: str | None = None
    name: str | None = None
    genotype: str | None = None
    sex: str | None = None
    age: str | None = None
    strain: str | None = None
    treatment: str | None = None


@dataclass(frozen=True)
class TrackChunk:
    """Consecutive detections of one animal, sorted by frame, positions in cm."""

    frame: np.ndarray  # int64
    x_cm: np.ndarray  # float64, from the arena's left edge
    y_cm: np.ndarray  # float64, from the arena's top edge (y points down)


def _check_sqlite_file(path: Path) -> None:
    """Reject what SQLite would misreport: missing, empty, non-SQLite and truncated files."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise InputError(path, "is a directory, not an LMT database")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(path, "is not a regular file (a pipe, socket or device), not an LMT database")
        size = info.st_size
        with path.open("rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        raise InputError(path, "recording not found") from None
    except PermissionError:
        raise InputError(path, "cannot be read (permission denied)") from None
    if size == 0:
        raise InputError(path, "empty file (0 bytes), not an LMT database")
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise InputError(path, "not an SQLite database (bad header)")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, n_pages = struct.unpack(">II", header[24:32])
    version_valid_for = struct.unpack(">I", header[92:96])[0]
    if n_pages and version_valid_for == change_counter and size < n_pages * page_size:
        raise InputError(
            path,
            f"truncated SQLite database: {size} bytes on disk, header says {n_pages * page_size}",
        )


class LMTDatabase:
    """A read-only LMT recording; validates its schema when opened.

    >>> with LMTDatabase("rec.sqlite", LMTGeometry()) as db:   # doctest: +SKIP
    ...     for chunk in db.iter_track(db.animals()[0].id): ...
    """

    def __init__(self, path: Path | str, geometry: LMTGeometry):
        self.path = Path(path)
        self.geometry = geometry
        _check_sqlite_file(self.path)
        self._uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            self._con = sqlite3.connect(self._uri, uri=True, timeout=BUSY_TIMEOUT_S)
            self._con.execute("PRAGMA query_only = ON")
            self._columns = self._read_columns()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        for table, needed in NEEDED_COLUMNS.items():
            if table not in self._columns:
                raise InputError(self.path, f"table {table} is missing: not an LMT recording")
            missing = [c for c in needed if c not in self._columns[table]]
            if missing:
                raise InputError(self.path, f"table {table} lacks column(s) {', '.join(missing)}")
        self.has_covering_index = self._has_index(COVERING_INDEX)

    def __enter__(self) -> LMTDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    def _error(self, exc: sqlite3.Error | adbc_driver_manager.Error) -> InputError:
        msg = str(exc)
        if "not a database" in msg:
            return InputError(self.path, "not an SQLite database")
        if "malformed" in msg or "disk I/O" in msg:
            return InputError(self.path, f"corrupt or truncated SQLite database ({msg})")
        if "locked" in msg or "busy" in msg:
            return InputError(self.path, f"database is locked by another process (waited {BUSY_TIMEOUT_S:g} s)")
        return InputError(self.path, f"SQLite error: {msg}")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _read_columns(self) -> dict[str, set[str]]:
        tables = [r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t.upper(): {r[1].upper() for r in self._con.execute(f'PRAGMA table_info("{t}")')} for t in tables}

    def _has_index(self, name: str) -> bool:
        rows = self._query("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (name,))
        return bool(rows)

    def animals(self) -> list[Animal]:
        """Every row of ANIMAL, whatever optional columns this file has, but a row whose every
        column but ID is NULL or empty (an extra row some files hold, FORMAT.md)."""
        present = [c for c in OPTIONAL_ANIMAL_COLUMNS if c in self._columns["ANIMAL"]]
        rows = self._query(f"SELECT {', '.join(['ID', *present])} FROM ANIMAL ORDER BY ID")
        animals = []
        for row in rows:
            values = {
                col.lower(): (str(v).strip() or None) if v is not None else None
                for col, v in zip(present, row[1:], strict=True)
            }
            if any(v is not None for v in values.values()):
                animals.append(Animal(id=int(row[0]), **values))
            else:
                log.debug("%s: ANIMAL row %s is empty but for its ID: no animal", self.path, row[0])
        if not animals:
            log.warning("%s: the ANIMAL table is empty: no identified mouse, so no stops", self.path)
        return animals

    def frame_range(self) -> tuple[int, int]:
        """First and last frame of the recording: FRAME if present, else DETECTION.

        Frame numbers at ``fps`` are the recording's clock; FRAME.TIMESTAMP is a wall
        clock that can go backwards and is not used for timing.
        """
        for table in ("FRAME", "DETECTION"):
            if "FRAMENUMBER" in self._columns.get(table, set()):
                # Two queries: SQLite answers a lone MIN or MAX from the index, both at once by a scan.
                ((lo,),) = self._query(f"SELECT MIN(FRAMENUMBER) FROM {table}")
                ((hi,),) = self._query(f"SELECT MAX(FRAMENUMBER) FROM {table}")
                if lo is not None:
                    return int(lo), int(hi)
        raise InputError(self.path, "no frames: FRAME and DETECTION are empty")

    def start_ms(self) -> int | None:
        """Wall clock of the first frame (FRAME.TIMESTAMP, epoch ms), None when the file has none."""
        if "TIMESTAMP" not in self._columns.get("FRAME", set()):
            return None
        first, _ = self.frame_range()
        rows = self._query("SELECT TIMESTAMP FROM FRAME WHERE FRAMENUMBER = ?", (first,))
        value = rows[0][0] if rows else None
        return int(value) if isinstance(value, int | float) and value == value else None

    def identity(self) -> str:
        """What makes this recording this recording, as 16 hex digits: a SHA-256 of what the tracker
        wrote first (the first frame's number and clock, the animals' RFIDs, the first
        :data:`IDENTITY_DETECTIONS` detections' frames, animals and positions).

        A copy, a renamed file, or one to which lmt-analysis has since added events keeps its
        identity (a hash of the file's bytes would not); another recording, even of the same
        mice, starts at another time with other detections; a copy cut short keeps it too.
        """
        first, _ = self.frame_range()
        rfids = sorted(a.rfid or f"#{a.id}" for a in self.animals())
        detections = self._query(
            "SELECT FRAMENUMBER, ANIMALID, MASS_X, MASS_Y FROM DETECTION ORDER BY ID LIMIT ?", (IDENTITY_DETECTIONS,)
        )
        digest = hashlib.sha256(repr((first, self.start_ms(), rfids, detections)).encode())
        return digest.hexdigest()[:16]

    def iter_track(self, animal_id: int) -> Iterator[TrackChunk]:
        """Stream one animal's valid detections in frame order, ``chunk_rows`` at a time.

        Drops NULL/NaN coordinates and MASS_X below ``min_mass_x_px`` (tracking junk),
        and keeps one row per frame where (animal, frame) is duplicated (the one with the
        smallest MASS_X, MASS_Y, so the choice does not depend on row order, also across
        chunk boundaries). Converts pixels to cm from the arena's top-left corner with
        ``px_per_cm`` (the same scale on both axes, as lmt-analysis does). Non-numeric
        (text such as ``'NaN'``) and infinite values count as missing, like NULL. An
        animal without a single valid detection is warned about: it can have no stop.
        """
        g = self.geometry
        hint = f"INDEXED BY {COVERING_INDEX}" if self.has_covering_index else ""
        sql = (
            "SELECT CAST(FRAMENUMBER AS INTEGER), CAST(MASS_X AS REAL), CAST(MASS_Y AS REAL) "
            f"FROM DETECTION {hint} "
            f"WHERE ANIMALID = ? AND FRAMENUMBER BETWEEN {-(2**63)} AND {2**63 - 1} "
            f"AND MASS_X BETWEEN ? AND {_FINITE!r} AND MASS_Y BETWEEN {-_FINITE!r} AND {_FINITE!r} "
            "ORDER BY FRAMENUMBER, MASS_X, MASS_Y"
        )
        try:
            # One connection per track, so that threads never share one.
            with adbc_sqlite.connect(self._uri) as con, con.cursor() as cur:
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(g.chunk_rows)})
                cur.execute(sql, (animal_id, float(g.min_mass_x_px)))
                last_frame: int | None = None
                for batch in cur.fetch_record_batch():
                    if not batch.num_rows:
                        continue
                    frame, x, y = (batch.column(i).to_numpy() for i in range(3))
                    keep = np.ones(len(frame), dtype=bool)
                    keep[1:] = frame[1:] != frame[:-1]
                    if last_frame is not None:
                        keep[0] = frame[0] != last_frame
                    last_frame = int(frame[-1])
                    if keep.any():
                        ox, oy = g.arena_origin_px
                        yield TrackChunk(
                            frame=frame[keep].astype(np.int64),
                            x_cm=(x[keep] - ox) / g.px_per_cm,
                            y_cm=(y[keep] - oy) / g.px_per_cm,
                        )
        except adbc_driver_manager.Error as exc:
            raise self._error(exc) from None
        if last_frame is None:
            log.warning(
                "%s: animal %d has no valid detection (none, or only NULL, junk or non-numeric positions): no stops",
                self.path,
                animal_id,
            )
