"""Benchmark: cohort stop detection in one process against several, on the same recordings.

Not a test: it measures. Run on an idle machine, from the project root, after `make run`
(or `lmt-stereotype simulate`):

    .venv/bin/python benchmarks/preprocess.py [--params params.yaml] [--workers 1 2] [--repeat 3]

Prints the median wall time of `detect_cohort_stops` over the manifest's recordings for
each worker count, the speed-up against one process, and checks that every output file
is byte-identical whatever the worker count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from lmt_stereotype.config import load_params
from lmt_stereotype.parallel import available_cores
from lmt_stereotype.stops import detect_cohort_stops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    params = load_params(args.params)
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            times = []
            for k in range(args.repeat + 1):  # the first run warms the page cache
                out = Path(tmp) / f"w{workers}-{k}"
                start = time.perf_counter()
                detect_cohort_stops(params.data.manifest, out, params.lmt, params.stops, workers=workers)
                times.append(time.perf_counter() - start)
            results[workers] = statistics.median(times[1:])
            outputs[workers] = {p.name: p.read_bytes() for p in out.iterdir()}
        identical = all(outputs[w] == outputs[args.workers[0]] for w in args.workers)
    n = len(outputs[args.workers[0]]) - 1  # parquet files, not recordings.csv
    base = results[args.workers[0]]
    print(f"{n} recordings, {available_cores()} cores; outputs identical across worker counts: {identical}")
    for workers, seconds in results.items():
        print(f"  {workers} worker(s): {seconds:6.2f} s   speed-up x{base / seconds:.2f}")
    print(json.dumps({"recordings": n, "seconds": results, "identical": identical}))


if __name__ == "__main__":
    main()
