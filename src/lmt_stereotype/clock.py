"""The room's clock: at what time of day each interval of a stack starts, and when the lights are off.

A real recording's hours are real hours, and its first frame carries the recording PC's
wall clock (FRAME.TIMESTAMP, epoch milliseconds, FORMAT.md), read in the room's time
zone (``room.timezone``). The simulator compresses a day: its ``simulation.json`` records
how many seconds of recording make one hour of its clock (the demo: 30 s), so a 180-s
interval of the demo spans 6 of its hours. The light cycle is ``room.lights_on``, the one
source the simulator also plants its behaviour by.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

SECONDS_PER_HOUR = 3600.0
"""A real recording's clock."""


def seconds_per_clock_hour(raw_dir: Path) -> float:
    """Seconds of recording per hour of the room's clock: the simulator's (``simulation.json``) or real time."""
    description = Path(raw_dir) / "simulation.json"
    if not description.exists():
        return SECONDS_PER_HOUR
    return float(json.loads(description.read_text())["clock"]["seconds_per_hour"])


def clock_hour(epoch_ms: float, timezone: str) -> float:
    """Hour of the day (0-24, fractional) of an epoch-milliseconds time stamp in ``timezone``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=ZoneInfo(timezone))
    return moment.hour + moment.minute / 60 + (moment.second + moment.microsecond / 1e6) / 3600


def interval_start_hours(start_hour: float, n_intervals: int, interval_s: float, seconds_per_hour: float) -> np.ndarray:
    """Clock hour (counting on past 24) at which each interval starts."""
    return start_hour + np.arange(n_intervals) * interval_s / seconds_per_hour


def dark_spans(first_hour: float, last_hour: float, lights_on: tuple[float, float]) -> list[tuple[float, float]]:
    """The stretches of ``[first_hour, last_hour]`` (hours counting on past 24) with the lights off."""
    on, off = lights_on
    spans = []
    for day in range(int(np.floor(first_hour / 24)) - 1, int(np.ceil(last_hour / 24)) + 1):
        start, end = (day * 24 + off, day * 24 + 24 + on) if on <= off else (day * 24 + off, day * 24 + on)
        start, end = max(start, first_hour), min(end, last_hour)
        if start < end:
            spans.append((float(start), float(end)))
    return spans
