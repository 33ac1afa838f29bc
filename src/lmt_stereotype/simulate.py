"""Synthetic LMT recordings with planted, known class effects (the paper's cohort design).

No real LMT database is public, so the pipeline is exercised on simulated ones. They
use the tracker's own schema and every quirk FORMAT.md lists (anonymous blobs,
duplicated and junk rows, missing head/tail, dropped frames, a clock that jumps back,
hidden animals, ANIMAL and EVENT variants), so that the reader meets what real files
hold. Each mouse alternates stops at sites of the cage with travel in between; the
site it picks depends on the light phase, on its class (the planted effects), on its
cage (a fingerprint shared by cage mates, the reason for leave-one-cage-out CV) and on
itself. Everything derives from ``params.simulate.seed``: same seed, same bytes.
"""

from __future__ import annotations

import json
import math
import sqlite3
import zlib
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lmt_stereotype.config import CLASSES, CageLayout, Circle, Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.files import atomic_path, write_json, write_table
from lmt_stereotype.lmt import INDEXES, SCHEMA
from lmt_stereotype.parallel import available_cores, process_pool

SIMULATOR_VERSION = 1
"""Bump when the simulated data change, so an existing simulation is not taken as up to date."""


@dataclass(frozen=True)
class Profile:
    """How long a recording is and how heavy its files are."""

    interval_s: float  # length of one "hour" of the stack (demo: 30 s, paper: 3600 s)
    n_intervals: int  # intervals per recording (72 in both)
    anonymous_fraction: float  # share of DETECTION rows with ANIMALID NULL
    data_mask_px: int  # side of the binary mask encoded in DATA


PROFILES: dict[str, Profile] = {
    "demo": Profile(interval_s=30.0, n_intervals=72, anonymous_fraction=0.1, data_mask_px=8),
    "paper": Profile(interval_s=3600.0, n_intervals=72, anonymous_fraction=0.4, data_mask_px=20),
}


@dataclass(frozen=True)
class SimMouse:
    """One mouse in one recording: identity, class and its site preferences."""

    animal_id: int
    rfid: str
    name: str
    sex: str  # "M" or "F"
    age: str  # "juvenile" or "adult"
    fingerprint_cm: tuple[float, float]  # its cage's own favourite spot
    site_log_weights: tuple[float, ...]  # cage + individual log preference, by site_names()

    @property
    def label(self) -> str:
        return ("A" if self.age == "adult" else "J") + self.sex


# --- behaviour model -------------------------------------------------------------------

START_HOUR = 10  # interval k is hour (START_HOUR + k) % 24 of the day
LIGHTS_ON = (8, 20)  # lights on (rest phase) from 8:00 to 20:00
LIGHT_HOUSE_FACTOR = 3.0  # mice rest in the house while lights are on

STOP_MEDIAN_S = {False: 4.0, True: 6.0}  # by lights on; lognormal durations
STOP_SIGMA = 0.6
REST_MEDIAN_S = 300.0  # a rest in the house during light, in a 1-h interval; scales with interval_s
REST_FLOOR_S = 1.5
REST_SIGMA = 0.8
MIN_STOP_S = 1.2  # above the paper's 1 s, so that every planted stop is a detected stop

SPEED_CM_S = (10.0, 35.0)
SPEED_WOBBLE = 0.3  # speed dips to (1 - wobble) of the mean at both ends of a leg
BEND = 0.15  # sideways bulge of a leg, as a share of its length
MIN_HOP_CM = 6.0  # closer stops are joined by a detour, so that they stay two stops
DETOUR_P = {False: 0.25, True: 0.05}  # exploring detours, by lights on: more travel in the dark
PAUSE_P, PAUSE_S = 0.15, (0.2, 0.8)  # short pauses during travel, below the 1 s of a stop
SWAY_CM, SWAY_PERIOD_S = 0.25, (2.0, 6.0)  # body sway while stopped: a few cm/s at most

HIDE_PER_S, HIDE_S = 0.15, (0.1, 2.0)  # runs of missing detections while in the house
MISSED_P = 0.002  # single missing detections elsewhere
DROPPED_FRAME_P = 0.0005  # frames with no FRAME row and no detection
DUPLICATE_P = 0.001  # identified rows written twice
JUNK_P = 0.0005  # identified rows with MASS_X < 10 (tracking errors)
NO_HEAD_P = NO_TAIL_P = 0.05  # FRONT_* / BACK_* = -1
REARING_P, LOOK_UP_P, LOOK_DOWN_P = 0.03, 0.02, 0.02
TRACKING_NOISE_PX = 0.3
BODY_HALF_PX = 12.0  # head and tail this far ahead of / behind the centre of mass
N_POSES = 16  # heading bins; one precomputed mask per bin

MAX_WORKERS = 4  # recordings written at once
CHUNK_FRAMES = 54_000  # frames generated and inserted at a time (30 min at 30 fps)
FIRST_FRAME = 1
START_MS = 1_704_708_000_000  # 2024-01-08 10:00 (clock of the recording PC, written as UTC)
DAY_MS = 86_400_000

STOP, PAUSE, MOVE = 0, 1, 2

BASE_WEIGHTS = {
    "house": 3.0,
    "feeder": 1.5,
    "water": 1.5,
    "lower_border": 0.7,
    "centre": 0.5,
    "walls": 2.0,
    "fingerprint": 1.5,
}
LOWER_BORDER_CM = 4.0  # depth of the strip along the bottom wall
CENTRE_RADIUS_CM = 8.0
WALL_CM = (0.5, 3.0)  # thigmotaxis: distance from a wall
FINGERPRINT_SD_CM = 2.0
EDGE_CM = 0.5  # positions are kept this far inside the arena


@dataclass(frozen=True)
class _Site:
    """A place where mice stop: ``shape`` rect (x0, y0, x1, y1), gauss (x, y, sd), disc (x, y, r), walls."""

    name: str
    shape: str
    geometry: tuple[float, ...]
    weight: float


def site_names(layout: CageLayout) -> tuple[str, ...]:
    """Sites in the order of :attr:`SimMouse.site_log_weights`."""
    feeders = tuple(f"feeder{i + 1}" for i in range(len(layout.feeders)))
    return ("house", *feeders, "water", "lower_border", "centre", "walls", "fingerprint")


def _sites(layout: CageLayout, arena: float, fingerprint: tuple[float, float]) -> list[_Site]:
    h, w = layout.house, layout.water
    lower = max(layout.feeders, key=lambda c: c.y, default=Circle(x=0.0, y=arena, r=1.0))
    sites = [_Site("house", "rect", (h.x, h.y, h.x + h.width, h.y + h.height), BASE_WEIGHTS["house"])]
    for i, f in enumerate(layout.feeders):
        sites.append(_Site(f"feeder{i + 1}", "gauss", (f.x, f.y, f.r / 2), BASE_WEIGHTS["feeder"]))
    sites += [
        _Site("water", "gauss", (w.x, w.y, w.r / 2), BASE_WEIGHTS["water"]),
        _Site(
            "lower_border",
            "rect",
            (min(lower.x, w.x), arena - LOWER_BORDER_CM, max(lower.x, w.x), arena - EDGE_CM),
            BASE_WEIGHTS["lower_border"],
        ),
        _Site("centre", "disc", (arena / 2, arena / 2, CENTRE_RADIUS_CM), BASE_WEIGHTS["centre"]),
        _Site("walls", "walls", WALL_CM, BASE_WEIGHTS["walls"]),
        _Site("fingerprint", "gauss", (*fingerprint, FINGERPRINT_SD_CM), BASE_WEIGHTS["fingerprint"]),
    ]
    return sites


def _sample_site(site: _Site, rng: np.random.Generator, n: int, arena: float) -> np.ndarray:
    """``n`` stop locations (cm) in a site: uniform in rects, discs and wall bands, Gaussian at spots."""
    g = site.geometry
    if site.shape == "rect":
        return rng.uniform((g[0], g[1]), (g[2], g[3]), size=(n, 2))
    if site.shape == "gauss":
        return rng.normal((g[0], g[1]), g[2], size=(n, 2))
    if site.shape == "disc":
        r, a = g[2] * np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
        return np.column_stack([g[0] + r * np.cos(a), g[1] + r * np.sin(a)])
    wall, along, depth = rng.integers(0, 4, n), rng.uniform(0, arena, n), rng.uniform(g[0], g[1], n)
    near = np.where(wall % 2 == 0, depth, arena - depth)  # walls 0/1: left/right, 2/3: top/bottom
    return np.where((wall < 2)[:, None], np.column_stack([near, along]), np.column_stack([along, near]))


EFFECT_SITES = {"female_house": "house", "male_lower_border": "lower_border", "juvenile_centre": "centre"}


def effect_coefficients(mix: float) -> dict[str, dict[str, float]]:
    """Per effect, how much of it each class carries: JM sits between AM and JF by ``mix``."""
    return {
        "female_house": {"AF": 1.0},
        "male_lower_border": {"AM": 1.0, "JM": mix},
        "juvenile_centre": {"JF": 1.0, "JM": 1.0 - mix},
    }


def class_site_multipliers(params: Params) -> dict[str, np.ndarray]:
    """Planted effects: class -> factor on each site's weight, ``1 + strength * effect * coefficient``."""
    eff = params.simulate.effects
    names = site_names(params.cage_layout)
    out = {cls: np.ones(len(names)) for cls in CLASSES}
    for effect, coefficients in effect_coefficients(eff.juvenile_male_mix).items():
        for cls, c in coefficients.items():
            out[cls][names.index(EFFECT_SITES[effect])] *= 1 + eff.strength * getattr(eff, effect) * c
    return out


def _lights_on(interval: int | np.ndarray) -> bool | np.ndarray:
    """The interval index is the hour, so that the demo compresses a day into 24 intervals."""
    hour = (START_HOUR + interval) % 24
    return (hour >= LIGHTS_ON[0]) & (hour < LIGHTS_ON[1])


def _light_phases(n_intervals: int) -> list[tuple[int, bool]]:
    """Runs of intervals with the lights on or off: (end of the run, exclusive; lights on)."""
    runs: list[tuple[int, bool]] = []
    for k in range(n_intervals):
        light = _lights_on(k)
        if runs and runs[-1][1] == light:
            runs[-1] = (k + 1, light)
        else:
            runs.append((k + 1, light))
    return runs


@dataclass
class _Segments:
    """Consecutive pieces of one mouse's path: stops, pauses and straight-ish travel legs."""

    n: np.ndarray  # frames
    kind: np.ndarray  # STOP, PAUSE or MOVE
    site: np.ndarray  # site index of stops, -1 otherwise
    x0: np.ndarray  # start (cm); the location of stops and pauses
    y0: np.ndarray
    x1: np.ndarray  # end of a leg (cm)
    y1: np.ndarray
    heading: np.ndarray  # rad, image coordinates
    bend: np.ndarray  # legs: sideways bulge (cm)
    wobble: np.ndarray  # legs: speed modulation, 0..SPEED_WOBBLE
    sway: np.ndarray  # stops and pauses: amplitude of body sway (cm)
    sway_omega: np.ndarray  # rad/s
    sway_phase: np.ndarray

    def take(self, index: slice | np.ndarray) -> _Segments:
        return _Segments(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list[_Segments]) -> _Segments:
        return _Segments(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Segments)})


def _draw_bouts(
    rng: np.random.Generator,
    sites: list[_Site],
    probs: np.ndarray,
    prev: np.ndarray,
    light: bool,
    m: int,
    fps: float,
    rest_median_s: float,
    arena: float,
) -> tuple[_Segments, np.ndarray]:
    """``m`` bouts, each a hop (leg, pause, leg) from the previous stop and then a stop.

    Returns the segments, four per bout (a pause may have 0 frames), and each bout's
    end location.
    """
    lo, hi = EDGE_CM, arena - EDGE_CM
    site = rng.choice(len(sites), size=m, p=probs)
    b = np.empty((m, 2))
    for i, s in enumerate(sites):
        sel = site == i
        b[sel] = _sample_site(s, rng, int(sel.sum()), arena)
    b = np.clip(b, lo, hi)

    rest = light & (site == 0)
    median = np.where(rest, rest_median_s, STOP_MEDIAN_S[light])
    sigma = np.where(rest, REST_SIGMA, STOP_SIGMA)
    stop_s = np.maximum(median * np.exp(sigma * rng.standard_normal(m)), MIN_STOP_S)

    a = np.vstack([prev[None, :], b[:-1]])
    d = b - a
    dist = np.hypot(d[:, 0], d[:, 1])
    via = a + d * rng.uniform(0.3, 0.7, m)[:, None]  # a point on the way
    toward = np.arctan2(arena / 2 - a[:, 1], arena / 2 - a[:, 0]) + rng.uniform(-np.pi / 2, np.pi / 2, m)
    step = rng.uniform(4.0, 8.0, m)[:, None] * np.column_stack([np.cos(toward), np.sin(toward)])
    via = np.where((dist < MIN_HOP_CM)[:, None], a + step, via)  # short hop: a detour
    explore = rng.random(m) < DETOUR_P[light]
    via = np.where(explore[:, None], rng.uniform(3.0, arena - 3.0, (m, 2)), via)
    via = np.clip(via, lo, hi)

    speed = rng.uniform(*SPEED_CM_S, m)
    len1 = np.hypot(*(via - a).T)
    len2 = np.hypot(*(b - via).T)
    pause_n = np.where(rng.random(m) < PAUSE_P, np.round(rng.uniform(*PAUSE_S, m) * fps), 0)
    n = np.column_stack(
        [
            np.maximum(np.round(len1 / speed * fps), 2),
            pause_n,
            np.maximum(np.round(len2 / speed * fps), 2),
            np.round(stop_s * fps),
        ]
    ).astype(np.int64)
    head1 = np.arctan2(*(via - a).T[::-1])
    head2 = np.arctan2(*(b - via).T[::-1])
    moving = np.array([True, False, True, False])
    z = np.zeros(m)

    def grid(*cols: np.ndarray) -> np.ndarray:
        return np.column_stack(cols).ravel()

    seg = _Segments(
        n=n.ravel(),
        kind=np.tile(np.array([MOVE, PAUSE, MOVE, STOP]), m),
        site=grid(z - 1, z - 1, z - 1, site).astype(np.int64),
        x0=grid(a[:, 0], via[:, 0], via[:, 0], b[:, 0]),
        y0=grid(a[:, 1], via[:, 1], via[:, 1], b[:, 1]),
        x1=grid(via[:, 0], via[:, 0], b[:, 0], b[:, 0]),
        y1=grid(via[:, 1], via[:, 1], b[:, 1], b[:, 1]),
        heading=grid(head1, head1, head2, rng.uniform(-np.pi, np.pi, m)),
        bend=grid(len1, z, len2, z) * rng.uniform(-BEND, BEND, 4 * m) * np.tile(moving, m),
        wobble=rng.uniform(0, SPEED_WOBBLE, 4 * m),
        sway=rng.uniform(0, SWAY_CM, 4 * m) * np.tile(~moving, m),
        sway_omega=2 * np.pi / rng.uniform(*SWAY_PERIOD_S, 4 * m),
        sway_phase=rng.uniform(0, 2 * np.pi, 4 * m),
    )
    return seg, b


@dataclass
class _Track:
    """One mouse's planned path over the whole recording."""

    mouse: SimMouse
    seg: _Segments
    start: np.ndarray  # first frame of each segment (0-based)
    hidden: np.ndarray  # (k, 2) frame ranges [start, end) hidden in the house


def _plan_track(mouse: SimMouse, params: Params, profile: Profile, rng: np.random.Generator, n_frames: int) -> _Track:
    """Bouts drawn light phase by light phase until the recording is covered; each bout keeps the
    phase it starts in. Then hidden runs in the house."""
    fps, arena = params.lmt.fps, params.lmt.arena_size_cm
    sites = _sites(params.cage_layout, arena, mouse.fingerprint_cm)
    names = [s.name for s in sites]
    if len(mouse.site_log_weights) != len(sites):
        raise ValueError(f"site_log_weights needs {len(sites)} values, one per site {names}")
    logw = (
        np.log([s.weight for s in sites])
        + np.log(class_site_multipliers(params)[mouse.label])
        + np.asarray(mouse.site_log_weights)
    )
    rest_median_s = max(REST_MEDIAN_S * profile.interval_s / 3600.0, REST_FLOOR_S)
    per_interval = profile.interval_s * fps
    prev = np.clip(_sample_site(sites[0], rng, 1, arena)[0], EDGE_CM, arena - EDGE_CM)
    t, parts = 0, []
    for stop_interval, light in _light_phases(profile.n_intervals):
        end = min(round(stop_interval * per_interval), n_frames)
        w = np.exp(logw)
        if light:
            w[0] *= LIGHT_HOUSE_FACTOR  # the house is site 0
        bout_frames = (STOP_MEDIAN_S[light] + 1.0) * fps  # a rough guess; more bouts are drawn if short
        while t < end:
            m = int((end - t) / bout_frames) + 2
            seg, ends = _draw_bouts(rng, sites, w / w.sum(), prev, light, m, fps, rest_median_s, arena)
            cum = t + np.cumsum(seg.n.reshape(m, 4).sum(axis=1))
            keep = min(int(np.searchsorted(cum, end)) + 1, m)
            parts.append(seg.take(slice(0, 4 * keep)))
            t, prev = int(cum[keep - 1]), ends[keep - 1]
    seg = _Segments.concat(parts)
    seg = seg.take(seg.n > 0)
    start = np.concatenate([[0], np.cumsum(seg.n)[:-1]])
    inside = start < n_frames
    seg, start = seg.take(inside), start[inside]
    seg.n[-1] = n_frames - start[-1]

    house = np.flatnonzero((seg.kind == STOP) & (seg.site == 0))
    runs = np.repeat(house, rng.poisson(seg.n[house] / fps * HIDE_PER_S))
    length = np.minimum(np.round(rng.uniform(*HIDE_S, len(runs)) * fps).astype(np.int64), seg.n[runs])
    first = start[runs] + (rng.random(len(runs)) * (seg.n[runs] - length + 1)).astype(np.int64)
    return _Track(mouse, seg, start, np.column_stack([first, first + length]))


def _positions(track: _Track, frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre of mass (cm) and heading at ``frames``: legs eased at both ends, stops swaying gently."""
    seg = track.seg
    s = np.searchsorted(track.start, frames, side="right") - 1
    j = frames - track.start[s]
    n = seg.n[s]
    x0, y0, dx, dy = seg.x0[s], seg.y0[s], seg.x1[s] - seg.x0[s], seg.y1[s] - seg.y0[s]
    u = (j + 1) / n  # a leg's last frame is at its end, where the next segment starts
    g = u - seg.wobble[s] * np.sin(2 * np.pi * u) / (2 * np.pi)
    side = seg.bend[s] * np.sin(np.pi * g) / np.maximum(np.hypot(dx, dy), 1e-9)
    env = seg.sway[s] * np.sin(np.pi * (j + 0.5) / n)
    angle = seg.sway_omega[s] * j / fps + seg.sway_phase[s]
    moving = seg.kind[s] == MOVE
    x = x0 + np.where(moving, dx * g - dy * side, env * np.cos(angle))
    y = y0 + np.where(moving, dy * g + dx * side, env * np.sin(angle))
    return x, y, seg.heading[s]


def _hidden(track: _Track, f0: int, f1: int) -> np.ndarray:
    """Frames of [f0, f1) in which the mouse is hidden in the house."""
    runs = track.hidden[(track.hidden[:, 1] > f0) & (track.hidden[:, 0] < f1)]
    edges = np.zeros(f1 - f0 + 1, dtype=np.int64)
    np.add.at(edges, np.clip(runs[:, 0], f0, f1) - f0, 1)
    np.add.at(edges, np.clip(runs[:, 1], f0, f1) - f0, -1)
    return np.cumsum(edges[:-1]) > 0


# --- the database ----------------------------------------------------------------------

ANIMAL_COLUMNS = ("ID", "RFID", "NAME", "GENOTYPE", "IND", "AGE", "SEX", "STRAIN", "SETUP")
"""ANIMAL variants take the first k of these; k=4 is the tracker's own (ID, RFID, GENOTYPE, NAME)."""

EVENT_WITHOUT_METADATA = (
    "CREATE TABLE EVENT (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, NAME TEXT, DESCRIPTION TEXT,"
    " STARTFRAME INTEGER, ENDFRAME INTEGER, IDANIMALA INTEGER, IDANIMALB INTEGER, IDANIMALC INTEGER,"
    " IDANIMALD INTEGER)"
)

_STAGE = "CREATE TEMP TABLE STAGE (F INTEGER, A INTEGER, X REAL, Y REAL, Z REAL, H INTEGER, K INTEGER)"
# K bits: 1 rearing, 2 looking up, 4 looking down, 8 head not found, 16 tail not found.
_DETECTION_FROM_STAGE = """
INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, MASS_Z, FRONT_X, FRONT_Y, FRONT_Z,
                       BACK_X, BACK_Y, BACK_Z, REARING, LOOK_UP, LOOK_DOWN, DATA)
SELECT F, NULLIF(A, 0), X, Y, Z,
       iif(K & 8, -1, round(X + DX, 2)), iif(K & 8, -1, round(Y + DY, 2)), iif(K & 8, -1, round(Z + 2, 1)),
       iif(K & 16, -1, round(X - DX, 2)), iif(K & 16, -1, round(Y - DY, 2)), iif(K & 16, -1, round(Z - 2, 1)),
       K & 1, (K >> 1) & 1, (K >> 2) & 1,
       printf('<root><DATA mass_x="%.2f" mass_y="%.2f"/><ROI><boundsX>%d</boundsX><boundsY>%d</boundsY>'
              || '<boundsW>%d</boundsW><boundsH>%d</boundsH><boolMaskData>%s</boolMaskData></ROI></root>',
              X, Y, CAST(X AS INTEGER) - :half, CAST(Y AS INTEGER) - :half, :side, :side, MASK)
FROM temp.STAGE JOIN temp.POSE USING (H) ORDER BY STAGE.rowid
"""


def _mask_hex(side: int, heading: float) -> str:
    """A mouse-shaped (elliptic) binary mask along ``heading``, zlib-compressed, as the tracker writes it."""
    c = (np.arange(side) - (side - 1) / 2) / (side / 2)
    xx, yy = np.meshgrid(c, c)
    along = xx * np.cos(heading) + yy * np.sin(heading)
    across = -xx * np.sin(heading) + yy * np.cos(heading)
    mask = ((along / 0.95) ** 2 + (across / 0.55) ** 2 <= 1).astype(np.uint8)
    return ":".join(f"{byte:x}" for byte in zlib.compress(mask.tobytes(), 5))


def _create_tables(con: sqlite3.Connection, animal_columns: int, event_metadata: bool, mask_px: int) -> None:
    con.executescript(SCHEMA)
    if animal_columns != 4:
        extra = ", ".join(f"{c} TEXT" for c in ANIMAL_COLUMNS[1:animal_columns])
        con.executescript(
            f"DROP TABLE ANIMAL; CREATE TABLE ANIMAL (ID INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, {extra});"
        )
    if not event_metadata:
        con.executescript(f"DROP TABLE EVENT; {EVENT_WITHOUT_METADATA};")
    con.execute("PRAGMA temp_store = MEMORY")
    con.execute(_STAGE)
    con.execute("CREATE TEMP TABLE POSE (H INTEGER PRIMARY KEY, DX REAL, DY REAL, MASK TEXT)")
    headings = 2 * np.pi * np.arange(N_POSES) / N_POSES
    con.executemany(
        "INSERT INTO temp.POSE VALUES (?, ?, ?, ?)",
        [
            (i, round(BODY_HALF_PX * math.cos(h), 2), round(BODY_HALF_PX * math.sin(h), 2), _mask_hex(mask_px, h))
            for i, h in enumerate(headings.tolist())
        ],
    )


def _animal_rows(mice: list[SimMouse], animal_columns: int) -> tuple[list[str], list[tuple]]:
    cols = ["ID", "RFID", "GENOTYPE", "NAME"] if animal_columns == 4 else list(ANIMAL_COLUMNS[:animal_columns])
    rows = []
    for m in mice:
        values = {
            "ID": m.animal_id,
            "RFID": m.rfid,
            "NAME": m.name,
            "GENOTYPE": "WT",
            "IND": "",
            "AGE": m.age,
            "SEX": m.sex,
            "STRAIN": "C57BL/6J",
            "SETUP": "",
        }
        rows.append(tuple(values[c] for c in cols))
    return cols, rows


def _timestamps(frames: np.ndarray, start_ms: int, jumps: np.ndarray, back_ms: np.ndarray, fps: float) -> np.ndarray:
    """Wall clock (ms) of frames; it jumps back by ``back_ms`` at each of ``jumps`` (a clock correction)."""
    setback = np.concatenate([[0], np.cumsum(back_ms)])[np.searchsorted(jumps, frames, side="right")]
    return start_ms + np.round(frames * 1000.0 / fps).astype(np.int64) - setback


def _write_chunk(
    con: sqlite3.Connection,
    tracks: list[_Track],
    f0: int,
    f1: int,
    n_frames: int,
    clock: tuple[int, np.ndarray, np.ndarray],
    params: Params,
    profile: Profile,
    rng: np.random.Generator,
) -> None:
    """Frames [f0, f1): every animal's detections, anonymous blobs and the FRAME rows."""
    g = params.lmt
    fps, (ox, oy), ppc, arena = g.fps, g.arena_origin_px, g.px_per_cm, g.arena_size_cm
    f = np.arange(f0, f1)
    exists = (rng.random(len(f)) >= DROPPED_FRAME_P) | (f == 0) | (f == n_frames - 1)
    frame, animal, x, y, heading = [], [], [], [], []
    for tr in tracks:
        fv = f[exists & ~_hidden(tr, f0, f1) & (rng.random(len(f)) >= MISSED_P)]
        xc, yc, h = _positions(tr, fv, fps)
        frame.append(fv)
        animal.append(np.full(len(fv), tr.mouse.animal_id))
        x.append(xc)
        y.append(yc)
        heading.append(h)
    n_ident = sum(len(a) for a in frame)
    frac = profile.anonymous_fraction
    n_anon = round(n_ident * frac / (1 - frac))
    frame.append(np.sort(rng.choice(f[exists], n_anon)))
    animal.append(np.zeros(n_anon, dtype=np.int64))
    x.append(rng.uniform(EDGE_CM, arena - EDGE_CM, n_anon))
    y.append(rng.uniform(EDGE_CM, arena - EDGE_CM, n_anon))
    heading.append(rng.uniform(-np.pi, np.pi, n_anon))
    frame, animal = np.concatenate(frame), np.concatenate(animal)
    n = len(frame)
    x_px = ox + np.concatenate(x) * ppc + rng.normal(0, TRACKING_NOISE_PX, n)
    y_px = oy + np.concatenate(y) * ppc + rng.normal(0, TRACKING_NOISE_PX, n)
    junk = (animal > 0) & (rng.random(n) < JUNK_P)
    x_px[junk] = rng.uniform(0, 5, int(junk.sum()))
    pose = np.round(np.concatenate(heading) / (2 * np.pi) * N_POSES).astype(np.int64) % N_POSES
    rearing = rng.random(n) < REARING_P
    flags = (
        rearing
        | (rng.random(n) < LOOK_UP_P) << 1
        | (rng.random(n) < LOOK_DOWN_P) << 2
        | (rng.random(n) < NO_HEAD_P) << 3
        | (rng.random(n) < NO_TAIL_P) << 4
    )
    z = np.round(rng.normal(25.0, 1.5, n) + 15.0 * rearing, 1)
    particles = np.bincount(frame - f0, minlength=len(f))
    rows = np.concatenate([np.arange(n), np.flatnonzero((animal > 0) & (rng.random(n) < DUPLICATE_P))])
    rows = rows[np.argsort(frame[rows], kind="stable")]  # frame order; cage mates, blobs, then duplicates

    con.executemany(
        "INSERT INTO temp.STAGE VALUES (?, ?, ?, ?, ?, ?, ?)",
        zip(
            (frame[rows] + FIRST_FRAME).tolist(),
            animal[rows].tolist(),
            np.round(x_px[rows], 2).tolist(),
            np.round(y_px[rows], 2).tolist(),
            z[rows].tolist(),
            pose[rows].tolist(),
            flags[rows].tolist(),
        ),
    )
    half = profile.data_mask_px // 2
    con.execute(_DETECTION_FROM_STAGE, {"half": half, "side": profile.data_mask_px})
    con.execute("DELETE FROM temp.STAGE")

    fe = f[exists]
    interval = fe / (profile.interval_s * fps)
    hour, light = START_HOUR + interval, _lights_on(np.floor(interval).astype(np.int64))
    m = len(fe)
    con.executemany(
        "INSERT INTO FRAME VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)",
        zip(
            (fe + FIRST_FRAME).tolist(),
            _timestamps(fe, *clock, fps).tolist(),
            particles[exists].tolist(),
            np.round(22.5 + 0.4 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.05, m), 2).tolist(),
            np.round(45.0 + 2.0 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 0.3, m), 2).tolist(),
            np.round(38.0 + 4.0 * ~light + np.abs(rng.normal(0, 3, m)), 2).tolist(),
            np.round(np.where(light, 600.0, 5.0) + rng.normal(0, 2, m), 2).tolist(),
            np.round(np.where(light, 1000.0, 350.0) + rng.normal(0, 3, m), 2).tolist(),
        ),
    )


def _write_events(
    con: sqlite3.Connection,
    tracks: list[_Track],
    clock: tuple[int, np.ndarray, np.ndarray],
    params: Params,
    rng: np.random.Generator,
) -> None:
    """A "Stop" event per planted stop and a few RFID reads (RFIDEVENT + "RFID MATCH" events)."""
    g = params.lmt
    events, reads = [], []
    for tr in tracks:
        stops = np.flatnonzero(tr.seg.kind == STOP)
        first = tr.start[stops] + FIRST_FRAME
        last = first + tr.seg.n[stops] - 1
        events += [("Stop", s, e, tr.mouse.animal_id) for s, e in zip(first.tolist(), last.tolist())]
        for i in rng.choice(stops, min(3, len(stops)), replace=False).tolist():
            frame = int(tr.start[i])
            events.append(("RFID MATCH", frame + FIRST_FRAME, frame + FIRST_FRAME, tr.mouse.animal_id))
            reads.append(
                (
                    frame,
                    tr.mouse.rfid,
                    int(_timestamps(np.array([frame]), *clock, g.fps)[0]),
                    int(g.arena_origin_px[0] + tr.seg.x0[i] * g.px_per_cm),
                    int(g.arena_origin_px[1] + tr.seg.y0[i] * g.px_per_cm),
                )
            )
    events.sort(key=lambda e: (e[1], e[3], e[0]))
    con.executemany(
        "INSERT INTO EVENT (NAME, DESCRIPTION, STARTFRAME, ENDFRAME, IDANIMALA) VALUES (?, ?, ?, ?, ?)",
        [(name, name, s, e, a) for name, s, e, a in events],
    )
    con.executemany("INSERT INTO RFIDEVENT (RFID, TIME, X, Y) VALUES (?, ?, ?, ?)", [r[1:] for r in sorted(reads)])


def simulate_recording(
    path: Path,
    mice: list[SimMouse],
    params: Params,
    profile: Profile,
    rng: np.random.Generator,
    *,
    animal_columns: int = 4,
    event_metadata: bool = True,
) -> None:
    """Writes one LMT database for one cage at one age.

    Generated and inserted ``CHUNK_FRAMES`` at a time, so that memory stays bounded for
    72-h recordings; indexes are built after the inserts (much faster). Written to a
    temporary file beside ``path`` and renamed into place.
    """
    if not 3 <= animal_columns <= len(ANIMAL_COLUMNS):
        raise ValueError(f"animal_columns must be 3..{len(ANIMAL_COLUMNS)}, not {animal_columns}")
    n_frames = round(profile.n_intervals * profile.interval_s * params.lmt.fps)
    tracks = [_plan_track(m, params, profile, rng, n_frames) for m in mice]
    jumps = np.sort(rng.integers(n_frames // 10, n_frames * 9 // 10, rng.integers(1, 3)))
    clock = (START_MS + int(rng.integers(0, 300)) * DAY_MS, jumps, rng.integers(200, 1500, len(jumps)))
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp, isolation_level=None)  # explicit BEGIN/COMMIT
        try:
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            _create_tables(con, animal_columns, event_metadata, profile.data_mask_px)
            con.execute("BEGIN")
            cols, rows = _animal_rows(mice, animal_columns)
            con.executemany(f"INSERT INTO ANIMAL ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
            for f0 in range(0, n_frames, CHUNK_FRAMES):
                _write_chunk(con, tracks, f0, min(f0 + CHUNK_FRAMES, n_frames), n_frames, clock, params, profile, rng)
            _write_events(con, tracks, clock, params, rng)
            con.execute("COMMIT")
            con.executescript("DROP TABLE temp.STAGE; DROP TABLE temp.POSE;" + INDEXES)
        finally:
            con.close()


# --- the cohort ------------------------------------------------------------------------

AGES = ("juvenile", "adult")


@dataclass(frozen=True)
class _RecordingPlan:
    """Everything one worker needs to write one recording, and what the manifest says of it."""

    file: str
    cage: str
    age: str
    mice: tuple[SimMouse, ...]
    entropy: tuple[int, ...]
    animal_columns: int
    event_metadata: bool
    key_by_rfid: bool  # manifest names animals by RFID instead of ANIMAL.ID
    unlabelled_id: int | None  # the mouse whose sex and age the manifest leaves to ANIMAL


def _near(site: _Site, point: np.ndarray, margin: float) -> bool:
    g = site.geometry
    if site.shape == "rect":
        return g[0] - margin <= point[0] <= g[2] + margin and g[1] - margin <= point[1] <= g[3] + margin
    return bool(np.hypot(point[0] - g[0], point[1] - g[1]) <= g[2] + margin)  # disc


def _fingerprint_spot(rng: np.random.Generator, layout: CageLayout, arena: float) -> tuple[float, float]:
    """A cage's own favourite spot, away from the sites of the planted effects: a cage's
    fingerprint should confound the classes by chance only, not mimic a class effect."""
    effect_sites = [s for s in _sites(layout, arena, (0.0, 0.0)) if s.name in EFFECT_SITES.values()]
    while True:
        spot = rng.uniform(0.1 * arena, 0.9 * arena, 2)
        if not any(_near(s, spot, 2 * FINGERPRINT_SD_CM) for s in effect_sites):
            return tuple(np.round(spot, 2).tolist())


def _plan_cohort(params: Params) -> tuple[list[_RecordingPlan], dict[str, list[float]]]:
    """Cages, their mice and fingerprints, and the per-recording variants; cheap (no tracks)."""
    sim = params.simulate
    seed = sim.seed % 2**64  # SeedSequence wants non-negative entropy
    n_sites = len(site_names(params.cage_layout))
    arena = params.lmt.arena_size_cm
    plans, fingerprints = [], {}
    for c in range(sim.n_cages):
        rng = np.random.default_rng([seed, c, 0])
        cage, sex = f"cage{c + 1:02d}", "M" if c < sim.n_cages / 2 else "F"
        fingerprint = _fingerprint_spot(rng, params.cage_layout, arena)
        fingerprints[cage] = list(fingerprint)
        cage_logw = rng.normal(0, sim.cage_variability, n_sites)
        mouse_logw = cage_logw + rng.normal(0, sim.mouse_variability, (4, n_sites))
        rfids = [f"0000041{c + 1:03d}{i + 1:02d}" for i in range(4)]
        for a, age in enumerate(AGES):
            ids = [1, 2, 3, 4] if a == 0 else (rng.permutation(4) + 1).tolist()  # IDs are per recording
            mice = tuple(
                sorted(
                    (
                        SimMouse(
                            animal_id=ids[i],
                            rfid=rfids[i],
                            name=f"{cage}-{'ABCD'[i]}",
                            sex=sex,
                            age=age,
                            fingerprint_cm=fingerprint,
                            site_log_weights=tuple(mouse_logw[i].tolist()),
                        )
                        for i in range(4)
                    ),
                    key=lambda m: m.animal_id,
                )
            )
            r = len(plans)
            k = 3 + r % 7  # every ANIMAL variant over 7 recordings
            plans.append(
                _RecordingPlan(
                    file=f"{cage}_{age}.sqlite",
                    cage=cage,
                    age=age,
                    mice=mice,
                    entropy=(seed, c, 1 + a),
                    animal_columns=k,
                    event_metadata=r % 3 != 2,
                    key_by_rfid=(c + a) % 2 == 1,  # not tied to age: half the cages each way
                    unlabelled_id=1 + r % 4 if k >= ANIMAL_COLUMNS.index("SEX") + 1 else None,
                )
            )
    return plans, fingerprints


def _write_planned(plan: _RecordingPlan, params: Params, profile: Profile, out_dir: Path) -> None:
    """One recording from its plan; a module-level function, so that worker processes can run it."""
    simulate_recording(
        out_dir / plan.file,
        list(plan.mice),
        params,
        profile,
        np.random.default_rng(list(plan.entropy)),
        animal_columns=plan.animal_columns,
        event_metadata=plan.event_metadata,
    )


def _manifest(plans: list[_RecordingPlan]) -> pd.DataFrame:
    rows = []
    for p in plans:
        for m in p.mice:
            blank = m.animal_id == p.unlabelled_id
            rows.append(
                {
                    "recording": p.file,
                    "animal": m.rfid if p.key_by_rfid else str(m.animal_id),
                    "cage": p.cage,
                    "sex": "" if blank else m.sex,
                    "age": "" if blank else m.age,
                }
            )
    return pd.DataFrame(rows, columns=["recording", "animal", "cage", "sex", "age"])


def _region(site: _Site) -> dict:
    g = site.geometry
    keys = {
        "rect": ("x0", "y0", "x1", "y1"),
        "gauss": ("x", "y", "sd"),
        "disc": ("x", "y", "r"),
        "walls": ("min_distance", "max_distance"),
    }[site.shape]
    return {"shape": site.shape, **dict(zip(keys, g, strict=True)), "base_weight": site.weight}


def _description(params: Params, profile_name: str, plans: list[_RecordingPlan], fingerprints: dict) -> dict:
    """simulation.json: what was simulated, in words and numbers, for people and for the skip check."""
    profile = PROFILES[profile_name]
    arena = params.lmt.arena_size_cm
    sites = _sites(params.cage_layout, arena, fingerprint=(0.0, 0.0))
    regions = {s.name: _region(s) for s in sites if s.name != "fingerprint"}
    regions["fingerprint"] = {
        "shape": "gaussian spot per cage (see cage_fingerprints_cm)",
        "sd": FINGERPRINT_SD_CM,
        "base_weight": BASE_WEIGHTS["fingerprint"],
    }
    eff = params.simulate.effects
    words = {
        "female_house": "adult females stop more often in the house (top-left dome)",
        "male_lower_border": "males stop more often on the lower border, between the lower feeder and the water",
        "juvenile_centre": "juveniles stop more often in the open centre",
    }
    multipliers = class_site_multipliers(params)
    names = site_names(params.cage_layout)
    effects = {
        effect: {
            "description": words[effect],
            "site": EFFECT_SITES[effect],
            "region_cm": regions[EFFECT_SITES[effect]],
            "size": getattr(eff, effect),
            "class_coefficients": coefficients,
            "site_weight_multiplier": {c: multipliers[c][names.index(EFFECT_SITES[effect])] for c in CLASSES},
        }
        for effect, coefficients in effect_coefficients(eff.juvenile_male_mix).items()
    }
    return {
        "simulator_version": SIMULATOR_VERSION,
        "simulate": params.simulate.model_dump(mode="json"),
        "profile": {"name": profile_name, **asdict(profile)},
        "interval_s": profile.interval_s,
        "n_intervals": profile.n_intervals,
        "fps": params.lmt.fps,
        "n_frames": round(profile.n_intervals * profile.interval_s * params.lmt.fps),
        "lmt": params.lmt.model_dump(mode="json", include={"fps", "px_per_cm", "arena_origin_px", "arena_size_cm"}),
        "cage_layout": params.cage_layout.model_dump(mode="json"),
        "sites_cm": regions,
        "cage_fingerprints_cm": fingerprints,
        "effects": {
            "rule": "a site's weight is multiplied by 1 + strength * size * class coefficient",
            "strength": eff.strength,
            **effects,
        },
        "site_choice": (
            "categorical over sites; weight = base weight x light factor x class effect"
            " x exp(cage preference, shared at both ages) x exp(own preference)"
        ),
        "day_night": {
            "hour_of_interval_k": f"({START_HOUR} + k) % 24",
            "lights_on_hours": list(LIGHTS_ON),
            "lights_on": f"house weight x{LIGHT_HOUSE_FACTOR}, stops median {STOP_MEDIAN_S[True]} s, house rests"
            f" median max({REST_MEDIAN_S} s x interval_s / 3600, {REST_FLOOR_S} s)",
            "lights_off": f"stops median {STOP_MEDIAN_S[False]} s, more exploring detours",
        },
        "recordings": [
            {
                "recording": p.file,
                "cage": p.cage,
                "age": p.age,
                "animal_columns": p.animal_columns,
                "event_metadata": p.event_metadata,
                "mice": [{"animal_id": m.animal_id, "rfid": m.rfid, "class": m.label} for m in p.mice],
            }
            for p in plans
        ],
    }


def simulate_cohort(params: Params, out_dir: Path, *, progress: bool = True) -> Path:
    """Writes the cohort into out_dir (all DBs, manifest.csv, simulation.json); returns manifest path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulation.json").unlink(missing_ok=True)  # written last: a half-written folder never looks done
    name = params.simulate.profile
    profile = PROFILES[name]
    plans, fingerprints = _plan_cohort(params)
    with (
        tqdm(total=len(plans), desc="simulate", unit="recording", disable=not progress) as bar,
        process_pool(len(plans), min(available_cores(), MAX_WORKERS)) as pool,
    ):
        futures = [pool.submit(_write_planned, p, params, profile, out_dir) for p in plans]
        for future in as_completed(futures):
            future.result()
            bar.update()
    manifest = out_dir / "manifest.csv"
    write_table(_manifest(plans), manifest)
    write_json(_description(params, name, plans, fingerprints), out_dir / "simulation.json")
    return manifest


def write_simulated_cohort(params: Params, out_dir: Path, *, force: bool = False, progress: bool = True) -> bool:
    """Simulate into ``out_dir`` unless it already holds this very simulation; True if written.

    Refuses a folder that holds recordings but no simulation.json: they may be real.
    Recordings of an earlier, larger simulation there are removed.
    """
    out_dir = Path(out_dir)
    marker = out_dir / "simulation.json"
    plans, fingerprints = _plan_cohort(params)
    expected = _description(params, params.simulate.profile, plans, fingerprints)
    if marker.exists():
        complete = all((out_dir / p.file).exists() for p in plans) and (out_dir / "manifest.csv").exists()
        try:
            same = json.loads(marker.read_text()) == json.loads(json.dumps(expected))
        except ValueError:
            same = False
        if same and complete and not force:
            return False
        old = {p.name for p in out_dir.glob("cage*_*.sqlite")}
        for stale in sorted(old - {p.file for p in plans}):
            (out_dir / stale).unlink()
    elif out_dir.exists() and (any(out_dir.glob("*.sqlite")) or (out_dir / "manifest.csv").exists()):
        raise InputError(out_dir, "holds recordings that were not simulated (no simulation.json); not overwriting")
    simulate_cohort(params, out_dir, progress=progress)
    return True
