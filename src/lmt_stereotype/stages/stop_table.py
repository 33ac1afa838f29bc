"""stop_table: the stops of one LMT recording as a table, outside the pipeline (a tool for checking a file).

One row per stop: animal_id, rfid, start_frame, end_frame, start_s, duration_s, x_cm,
y_cm, n_detections; to a CSV or parquet file, or printed as CSV.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from lmt_stereotype.config import Params
from lmt_stereotype.files import write_table
from lmt_stereotype.parallel import available_cores
from lmt_stereotype.stops import recording_stops

log = logging.getLogger("lmt_stereotype")


def run(params: Params, db: Path, out: Path | None = None, threads: int = 0) -> None:
    """Stops of ``db`` to ``out`` (``.csv`` or ``.parquet``; None: standard output), ``threads`` animals at once."""
    table, _ = recording_stops(db, params.lmt, params.stops, threads=threads or available_cores())
    if out is None:
        table.to_csv(sys.stdout, index=False)
        return
    write_table(table, out)
    log.info("stop_table: %d stops of %d animals -> %s", len(table), table["animal_id"].nunique(), out)
