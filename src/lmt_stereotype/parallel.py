"""Worker processes for per-recording work (simulating, reading recordings).

Processes, not threads, across recordings: writing through ``sqlite3`` and building
stop tables in pandas hold the GIL (reading one recording's animals in threads is the
reader's business, see ``stops.recording_stops``). Forked
where the OS allows, so scripts need no ``__main__`` guard; the workers only touch numpy,
pandas and their own SQLite files.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pool_size(n_jobs: int, workers: int = 0) -> int:
    """``workers`` processes (0: one per available core), never more than ``n_jobs``."""
    return max(1, min(n_jobs, workers or available_cores()))


def process_pool(n_jobs: int, workers: int = 0) -> ProcessPoolExecutor:
    """A pool of :func:`pool_size` processes."""
    fork = "fork" in multiprocessing.get_all_start_methods()
    return ProcessPoolExecutor(
        pool_size(n_jobs, workers), mp_context=multiprocessing.get_context("fork" if fork else None)
    )
