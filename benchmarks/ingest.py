"""Benchmark: ingest of one LMT recording (read every track, find every stop) against SQLite itself.

Not a test: it measures (issue 6, benchmark 1). Run on an idle machine, from the project root:

    .venv/bin/python benchmarks/ingest.py --hours 1 6 24 72 --repeat 3 --json benchmarks/ingest.json

For each length it writes once (and reuses) a synthetic recording at the real density of
the ``paper`` profile: 30 fps, 4 mice, 40% anonymous detections, DATA with 20 px masks.
With the OS page cache warm (every measurement is run once untimed first), it takes the
median of ``--repeat`` runs of

* the bare scan: ``SELECT count(*), sum(MASS_X), sum(MASS_Y)`` through the covering index,
  as one query (``ANIMALID IS NOT NULL``) and per animal (``ANIMALID = ?``, as our reader asks);
* our ingest: ``recording_stops`` with default geometry and stop parameters, the animals
  read in one thread per core (as ``predict`` and ``stops DB`` do) and in a single thread;
* the recording's identity (``LMTDatabase.identity``, what ``validate`` compares with a
  model's training recordings and ``predict`` logs), in a fresh process;
* a naive reader as users write it (lmt-analysis style, recordings up to 6 h only): fetch
  all rows, build ``{animal: {frame: (x, y)}}`` row by row, then a per-frame speed loop.

Ingest and the naive reader each run in a fresh process of this script, which reports its
own peak resident memory (VmHWM) and the part of it that was there before reading
(interpreter and imports).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from lmt_stereotype.config import load_params
from lmt_stereotype.errors import InputError
from lmt_stereotype.lmt import COVERING_INDEX, LMTDatabase
from lmt_stereotype.parallel import available_cores
from lmt_stereotype.simulation import FIRST_FRAME, PROFILES
from lmt_stereotype.simulation.behaviour import recording_frames
from lmt_stereotype.simulation.cohort import _plan_cohort, _write_planned
from lmt_stereotype.stops import recording_stops

NAIVE_MAX_HOURS = 6
PAPER = load_params(Path(__file__).resolve().parents[1] / "configs" / "paper.yaml")
BARE_SQL = f"SELECT count(*), sum(MASS_X), sum(MASS_Y) FROM DETECTION INDEXED BY {COVERING_INDEX}"
NAIVE_SQL = "SELECT ANIMALID, FRAMENUMBER, MASS_X, MASS_Y FROM DETECTION WHERE ANIMALID IS NOT NULL"


def recording(out: Path, hours: int) -> tuple[Path, float | None]:
    """The recording of ``hours``, written only if missing or of another length (72 h takes long).

    Returns its path and the seconds spent writing it (None when reused).
    """
    params = PAPER
    path = out / f"lmt_{hours}h.sqlite"
    # recordings last their profile's intervals and one stack interval (1 h) of margin: hours - 1 + 1
    profile = replace(PROFILES["paper"], interval_s=3600.0, n_intervals=hours - 1)
    n_frames = recording_frames(profile, params)
    try:
        with LMTDatabase(path, params.lmt) as db:
            if db.frame_range() == (FIRST_FRAME, FIRST_FRAME + n_frames - 1):
                return path, None
    except InputError:
        pass  # missing or broken: write it
    plan = replace(_plan_cohort(params)[0][0], file=path.name)
    start = time.perf_counter()
    _write_planned(plan, params, profile, out)
    return path, time.perf_counter() - start


def connect(path: Path) -> sqlite3.Connection:
    """Read-only, as the reader opens recordings."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def query_plan(path: Path, sql: str) -> str:
    """How SQLite answers ``sql``: shows whether the covering index alone serves it."""
    with connect(path) as con:
        return "; ".join(row[-1] for row in con.execute(f"EXPLAIN QUERY PLAN {sql}", (1,) * sql.count("?")))


def bare_scan(path: Path) -> tuple:
    """The floor: SQLite aggregating the reader's columns of every identified row in C."""
    with connect(path) as con:
        return con.execute(f"{BARE_SQL} WHERE ANIMALID IS NOT NULL").fetchone()


def bare_scan_per_animal(path: Path) -> tuple:
    """The same floor asked the way our reader asks, one animal at a time."""
    with connect(path) as con:
        ids = [row[0] for row in con.execute("SELECT ID FROM ANIMAL")]
        sums = [con.execute(f"{BARE_SQL} WHERE ANIMALID = ?", (i,)).fetchone() for i in ids]
    return tuple(sum(col) for col in zip(*sums))


def ingest(path: Path, threads: int = 0) -> dict:
    """What the pipeline does with one recording (0 threads: one per core)."""
    stops, _ = recording_stops(path, PAPER.lmt, PAPER.stops, threads or available_cores())
    return {"stops": len(stops)}


def identity(path: Path) -> dict:
    """What ``validate`` and ``predict`` read of a recording to know it: its first frame, clock,
    RFIDs and first detections, by index, whatever the file's length."""
    with LMTDatabase(path, PAPER.lmt) as db:
        return {"identity": db.identity()}


def naive(path: Path) -> dict:
    """lmt-analysis' way: every row into a dict keyed by frame, then speed frame by frame in Python."""
    g = PAPER.lmt
    with connect(path) as con:
        rows = con.execute(NAIVE_SQL).fetchall()
    tracks: dict[int, dict[int, tuple[float, float]]] = {}
    for animal, frame, x, y in rows:
        tracks.setdefault(animal, {})[frame] = (x, y)
    slow = 0
    for track in tracks.values():
        for t in sorted(track):
            if t - 1 in track and t + 1 in track:
                (x0, y0), (x1, y1) = track[t - 1], track[t + 1]
                slow += math.hypot(x1 - x0, y1 - y0) / g.px_per_cm * g.fps / 2 <= 5.0
    return {"rows": len(rows), "slow_frames": slow}


MEASURED = {"ingest": ingest, "ingest_1thread": lambda path: ingest(path, 1), "identity": identity, "naive": naive}


def memory_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process. Not ru_maxrss: Linux carries that over
    from the parent through fork and exec, so a child would report the parent's peak."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024  # kB


def measure_here(kind: str, path: Path) -> None:
    """Child process: one timed run, its peak memory and the memory held before it, as JSON."""
    base = memory_mb("VmRSS")
    start = time.perf_counter()
    result = MEASURED[kind](path)
    seconds = time.perf_counter() - start
    print(json.dumps({"s": seconds, "peak_mb": memory_mb("VmHWM"), "base_mb": base, **result}))


def in_child(kind: str, path: Path) -> dict:
    """A fresh process per run, so that its peak memory is this run's alone."""
    cmd = [sys.executable, __file__, "--measure", kind, str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def median_warm(run, repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` runs after one untimed run that warms the page cache."""
    result = run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def median_child(kind: str, path: Path, repeat: int) -> dict:
    """Median time and largest peak memory of ``repeat`` child runs, after one untimed."""
    in_child(kind, path)
    runs = [in_child(kind, path) for _ in range(repeat)]
    return {
        **runs[-1],
        "s": statistics.median(r["s"] for r in runs),
        "peak_mb": max(r["peak_mb"] for r in runs),
    }


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    return {
        "cpu": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?"),
        "cores": len(os.sched_getaffinity(0)),
        "ram_gb": round(int(next(m for m in meminfo if m.startswith("MemTotal")).split()[1]) / 2**20, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def bench(hours: int, out: Path, repeat: int) -> dict:
    """All measurements of one recording length."""
    path, write_s = recording(out, hours)
    with connect(path) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (COVERING_INDEX,)).fetchone():
            raise SystemExit(f"{path}: no index {COVERING_INDEX}")
    r = {"hours": hours, "file_gb": path.stat().st_size / 1e9, "write_s": write_s}
    r["bare_s"], (r["rows"], *_) = median_warm(lambda: bare_scan(path), repeat)
    r["bare_per_animal_s"], _ = median_warm(lambda: bare_scan_per_animal(path), repeat)
    r["plans"] = {
        "bare": query_plan(path, f"{BARE_SQL} WHERE ANIMALID IS NOT NULL"),
        "bare_per_animal": query_plan(path, f"{BARE_SQL} WHERE ANIMALID = ?"),
        "naive": query_plan(path, NAIVE_SQL),
    }
    r["ingest"] = median_child("ingest", path, repeat)
    r["ingest_1thread"] = median_child("ingest_1thread", path, repeat)
    r["identity"] = median_child("identity", path, repeat)
    r["naive"] = median_child("naive", path, repeat) if hours <= NAIVE_MAX_HOURS else None
    return r


def table(results: list[dict]) -> str:
    head = (
        f"{'hours':>5} {'rows':>11} {'file GB':>7} {'write s':>7} {'bare s':>7} {'bare/an s':>9} {'ingest s':>8} "
        f"{'ing/bare':>8} {'1 thread s':>10} {'ingest MB':>9} {'naive s':>7} {'naive MB':>8} {'rows/s':>10} "
        f"{'identity ms':>11}"
    )
    lines = [head]
    for r in results:
        ing, one, nv = r["ingest"], r["ingest_1thread"], r["naive"]
        lines.append(
            f"{r['hours']:>5} {r['rows']:>11,} {r['file_gb']:>7.2f} "
            f"{'reused' if r['write_s'] is None else format(r['write_s'], '.1f'):>7} "
            f"{r['bare_s']:>7.3f} {r['bare_per_animal_s']:>9.3f} {ing['s']:>8.3f} {ing['s'] / r['bare_s']:>8.1f} "
            f"{one['s']:>10.3f} "
            f"{ing['peak_mb']:>9.0f} {'-' if nv is None else format(nv['s'], '.2f'):>7} "
            f"{'-' if nv is None else format(nv['peak_mb'], '.0f'):>8} {r['rows'] / ing['s']:>10,.0f} "
            f"{1000 * r['identity']['s']:>11.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/data"), help="folder of the recordings")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_here(args.measure[0], Path(args.measure[1]))
        return
    report = {"machine": machine(), "results": [bench(h, args.out, args.repeat) for h in args.hours]}
    m = report["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, Python {m['python']}, SQLite {m['sqlite']}")
    print(table(report["results"]))
    print("rows: identified detections; times: median, warm page cache; MB: peak resident memory of a fresh")
    print("process, of which about", round(report["results"][0]["ingest"]["base_mb"]), "MB are interpreter and imports")
    for r in report["results"]:
        print(f"{r['hours']} h query plans: {json.dumps(r['plans'])}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
