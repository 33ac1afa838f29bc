"""The behaviour model: where and when a simulated mouse stops, and how it travels.

Each mouse alternates stops at sites of the cage with travel in between; the site it
picks depends on the light phase, on its class (the planted effects), on its genotype
(KO mice may favour the upper feeder: ``simulate.genotype``), on its cage (a fingerprint
shared by cage mates, the reason for leave-one-cage-out CV) and on itself.
The simulator's clock runs ``interval_s`` seconds of recording per hour (the demo
compresses a day into 24 x 30 s); a recording starts at its own clock time
(``start_hour``, a different one per recording, as labs start recordings when they
can), and the lights are on as the room's ``room.lights_on`` says, by that clock.
A recording lasts its profile's ``n_intervals`` hours plus one stack interval
(:func:`recording_frames`).

This module plans paths in cm (:func:`plan_track`, :func:`positions`); it writes nothing.
:mod:`~lmt_stereotype.simulation.lmt_writer` turns them into LMT rows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from lmt_stereotype.config import CageLayout, Circle, Params
from lmt_stereotype.labels import PAPER_CLASSES


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
    """One mouse in one recording: identity, class, genotype and its site preferences."""

    animal_id: int
    rfid: str
    name: str
    sex: str  # "M" or "F"
    age: str  # "juvenile" or "adult"
    fingerprint_cm: tuple[float, float]  # its cage's own favourite spot
    site_log_weights: tuple[float, ...]  # cage + individual log preference, by site_names()
    genotype: str = "WT"  # "WT" or "KO" (GENOTYPES); ANIMAL.GENOTYPE. KO mice carry the genotype effect

    @property
    def label(self) -> str:
        return ("A" if self.age == "adult" else "J") + self.sex


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

# Runs of missing detections, lognormal lengths. In the house (under the dome, in nest material) while
# resting there: median 2 s, one in 40 over 15 s; a run starts during the rest and may outlast it (the
# mouse leaves unseen). While travelling (tracking lost, under another mouse): median 0.5 s.
HIDE_PER_S, HIDE_MEDIAN_S, HIDE_SIGMA = 0.2, 2.0, 1.0
HIDE_MOVE_PER_S, HIDE_MOVE_MEDIAN_S = 0.05, 0.5

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
class Site:
    """A place where mice stop: ``shape`` rect (x0, y0, x1, y1), gauss (x, y, sd), disc (x, y, r), walls."""

    name: str
    shape: str
    geometry: tuple[float, ...]
    weight: float


def site_names(layout: CageLayout) -> tuple[str, ...]:
    """Sites in the order of :attr:`SimMouse.site_log_weights`."""
    feeders = tuple(f"feeder{i + 1}" for i in range(len(layout.feeders)))
    return ("house", *feeders, "water", "lower_border", "centre", "walls", "fingerprint")


def cage_sites(layout: CageLayout, arena: float, fingerprint: tuple[float, float]) -> list[Site]:
    h, w = layout.house, layout.water
    lower = max(layout.feeders, key=lambda c: c.y, default=Circle(x=0.0, y=arena, r=1.0))
    sites = [Site("house", "rect", (h.x, h.y, h.x + h.width, h.y + h.height), BASE_WEIGHTS["house"])]
    for i, f in enumerate(layout.feeders):
        sites.append(Site(f"feeder{i + 1}", "gauss", (f.x, f.y, f.r / 2), BASE_WEIGHTS["feeder"]))
    sites += [
        Site("water", "gauss", (w.x, w.y, w.r / 2), BASE_WEIGHTS["water"]),
        Site(
            "lower_border",
            "rect",
            (min(lower.x, w.x), arena - LOWER_BORDER_CM, max(lower.x, w.x), arena - EDGE_CM),
            BASE_WEIGHTS["lower_border"],
        ),
        Site("centre", "disc", (arena / 2, arena / 2, CENTRE_RADIUS_CM), BASE_WEIGHTS["centre"]),
        Site("walls", "walls", WALL_CM, BASE_WEIGHTS["walls"]),
        Site("fingerprint", "gauss", (*fingerprint, FINGERPRINT_SD_CM), BASE_WEIGHTS["fingerprint"]),
    ]
    return sites


def _sample_site(site: Site, rng: np.random.Generator, n: int, arena: float) -> np.ndarray:
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
    out = {cls: np.ones(len(names)) for cls in PAPER_CLASSES}
    for effect, coefficients in effect_coefficients(eff.juvenile_male_mix).items():
        for cls, c in coefficients.items():
            out[cls][names.index(EFFECT_SITES[effect])] *= 1 + eff.strength * getattr(eff, effect) * c
    return out


GENOTYPES = ("WT", "KO")


def upper_feeder(layout: CageLayout) -> str:
    """The site of the upper feeder (smallest y; the first on a tie), where KO mice stop more often."""
    if not layout.feeders:
        raise ValueError("a genotype effect needs a feeder in cage_layout.feeders (KO mice favour the upper one)")
    upper = min(range(len(layout.feeders)), key=lambda i: layout.feeders[i].y)
    return f"feeder{upper + 1}"


def genotype_site_multipliers(params: Params) -> dict[str, np.ndarray]:
    """The planted genotype effect: genotype -> factor on each site's weight. KO mice's weight at the
    upper feeder is multiplied by ``1 + simulate.genotype.strength``, in both sexes and at both ages
    alike (so that the genotype is not confounded with the class); WT mice and other sites: 1."""
    genotype = params.simulate.genotype
    names = site_names(params.cage_layout)
    out = {g: np.ones(len(names)) for g in GENOTYPES}
    if genotype.housing != "none" and genotype.strength > 0:
        out["KO"][names.index(upper_feeder(params.cage_layout))] *= 1 + genotype.strength
    return out


def lights_on(hour: float | np.ndarray, cycle: tuple[float, float]) -> bool | np.ndarray:
    """Whether the room's lights (``room.lights_on``: on from, until) are on at clock ``hour`` (counting past 24)."""
    hour = np.mod(hour, 24)
    on, off = cycle
    return (hour >= on) & (hour < off) if on <= off else (hour >= on) | (hour < off)


def frame_hours(frames: np.ndarray, start_hour: float, fps: float, seconds_per_hour: float) -> np.ndarray:
    """Clock hour (counting past 24) of frames (0-based) of a recording that starts at ``start_hour``."""
    return start_hour + np.asarray(frames) / (fps * seconds_per_hour)


def _light_phases(
    n_frames: int, start_hour: float, fps: float, seconds_per_hour: float, cycle: tuple[float, float]
) -> list[tuple[int, bool]]:
    """Runs of frames with the lights on or off: (end of the run, exclusive; lights on)."""
    light = lights_on(frame_hours(np.arange(n_frames), start_hour, fps, seconds_per_hour), cycle)
    ends = np.append(np.flatnonzero(np.diff(light)) + 1, n_frames)
    return [(int(e), bool(light[e - 1])) for e in ends]


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
    sites: list[Site],
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
class Track:
    """One mouse's planned path over the whole recording."""

    mouse: SimMouse
    seg: _Segments
    start: np.ndarray  # first frame of each segment (0-based)
    hidden: np.ndarray  # (k, 2) frame ranges [start, end) hidden in the house


def plan_track(
    mouse: SimMouse, params: Params, profile: Profile, rng: np.random.Generator, n_frames: int, start_hour: float
) -> Track:
    """Bouts drawn light phase by light phase (of the recording's clock, from ``start_hour``) until the
    recording is covered; each bout keeps the phase it starts in. Then hidden runs in the house."""
    fps, arena = params.lmt.fps, params.lmt.arena_size_cm
    sites = cage_sites(params.cage_layout, arena, mouse.fingerprint_cm)
    names = [s.name for s in sites]
    if len(mouse.site_log_weights) != len(sites):
        raise ValueError(f"site_log_weights needs {len(sites)} values, one per site {names}")
    logw = (
        np.log([s.weight for s in sites])
        + np.log(class_site_multipliers(params)[mouse.label])
        + np.log(genotype_site_multipliers(params)[mouse.genotype])  # 0 for WT mice: draws as without
        + np.asarray(mouse.site_log_weights)
    )
    rest_median_s = max(REST_MEDIAN_S * profile.interval_s / 3600.0, REST_FLOOR_S)
    prev = np.clip(_sample_site(sites[0], rng, 1, arena)[0], EDGE_CM, arena - EDGE_CM)
    t, parts = 0, []
    for end, light in _light_phases(n_frames, start_hour, fps, profile.interval_s, params.room.lights_on):
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
    legs = np.flatnonzero(seg.kind == MOVE)
    runs = np.concatenate(
        [
            np.repeat(house, rng.poisson(seg.n[house] / fps * HIDE_PER_S)),
            np.repeat(legs, rng.poisson(seg.n[legs] / fps * HIDE_MOVE_PER_S)),
        ]
    )
    median = np.where(seg.kind[runs] == STOP, HIDE_MEDIAN_S, HIDE_MOVE_MEDIAN_S)
    length = np.maximum(np.round(median * np.exp(HIDE_SIGMA * rng.standard_normal(len(runs))) * fps), 1)
    first = start[runs] + (rng.random(len(runs)) * seg.n[runs]).astype(np.int64)  # may run past the segment
    last = np.minimum(first + length.astype(np.int64), n_frames)
    return Track(mouse, seg, start, np.column_stack([first, last]))


def positions(track: Track, frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def hidden_frames(track: Track, f0: int, f1: int) -> np.ndarray:
    """Frames of [f0, f1) in which the mouse is hidden in the house."""
    runs = track.hidden[(track.hidden[:, 1] > f0) & (track.hidden[:, 0] < f1)]
    edges = np.zeros(f1 - f0 + 1, dtype=np.int64)
    np.add.at(edges, np.clip(runs[:, 0], f0, f1) - f0, 1)
    np.add.at(edges, np.clip(runs[:, 1], f0, f1) - f0, -1)
    return np.cumsum(edges[:-1]) > 0


def recording_frames(profile: Profile, params: Params) -> int:
    """Frames of a recording: its profile's ``n_intervals`` hours and one stack interval
    (``histograms.interval_s``) of margin, so that a stack window that starts at
    ``histograms.clock_start`` fits in a recording that starts within the interval before it
    (as :mod:`~lmt_stereotype.simulation.cohort` starts them)."""
    return round((profile.n_intervals * profile.interval_s + params.histograms.interval_s) * params.lmt.fps)
