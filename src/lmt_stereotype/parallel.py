"""Worker processes for per-recording work (simulating, reading recordings).

Processes, not threads: SQLite's row-by-row calls hand the GIL over at every row. Forked
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


def process_pool(n_jobs: int, workers: int = 0) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (0: one per available core), never more than ``n_jobs``."""
    fork = "fork" in multiprocessing.get_all_start_methods()
    count = max(1, min(n_jobs, workers or available_cores()))
    return ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork" if fork else None))
