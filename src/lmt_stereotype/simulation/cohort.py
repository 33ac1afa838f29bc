"""The cohort design: cages, mice, recordings, and what is written beside the databases.

The paper's design: ``n_cages`` same-sex cages of 4 mice (the first half male), each
recorded twice, as juveniles and as adults (``cageNN_juvenile.sqlite``,
``cageNN_adult.sqlite``); ANIMAL.IDs are per recording, RFIDs per mouse. Each cage has
its own random stream, so adding cages leaves the first ones as they were. Every
recording starts at its own clock time, a whole minute in the stack interval before
``histograms.clock_start`` (the demo: between 6:00 and 12:00 of the simulator's clock)
and lasts one stack interval more than the window. Across the cohort the recordings
take every ANIMAL layout lmt-analysis can open (4, 5, 7, 8 and 9 columns), EVENT with
and without METADATA, files processed by lmt-analysis (a LOG table), an extra all-NULL
ANIMAL row and animals identified late; the manifest names animals by ID in some
recordings and by RFID in others, and leaves one mouse's sex and age to the ANIMAL
table where it has them.

A genotype (``simulate.genotype``) may be planted: ``housing: mixed`` makes 2 mice of
every cage KO and 2 WT (which ones: the cage's own genotype stream), ``per_cage`` makes
half of the cages of each sex KO and half WT (a cohort stream; with an odd number of
cages of a sex, WT has the extra one), ``none`` (the demo) leaves every mouse WT as
before. A mouse keeps its genotype at both ages; KO mice favour the upper feeder by
``strength`` (:func:`~lmt_stereotype.simulation.behaviour.genotype_site_multipliers`).
The genotype is written to ANIMAL.GENOTYPE (every simulated layout has it) and, unless
housing is ``none``, to the manifest's ``genotype`` column.

Beside the recordings, :func:`simulate_cohort` writes

- ``manifest.csv``: recording, animal, cage, sex, age (what a lab would write), and
  genotype when one is planted;
- ``planted_stops/<recording>.parquet``: the ground truth, every planted stop of every
  mouse (:func:`~lmt_stereotype.simulation.truth.planted_stops`; never in the databases, whose EVENT holds only what the
  tracker computes);
- ``simulation.json``, last, so that a half-written folder never looks done: what was
  simulated (profile, sites, planted effects, the genotype of every mouse, cage
  fingerprints, each recording's mice and classes), for people and for
  :func:`write_simulated_cohort`'s up-to-date check.
  Its ``clock`` object is the simulator's clock, which later stages need to place
  intervals in the day::

      "clock": {"seconds_per_hour": 30.0, "lights_on": [8, 20], "start": "..."}

  an hour of the simulator's day lasts ``seconds_per_hour`` seconds of recording (the
  profile's ``interval_s``, 30 in the demo, 3600 in the paper); a recording's first
  frame is at its ``start_hour`` (in ``recordings``, and in FRAME.TIMESTAMP, whose hour of
  the day it is), and the lights are on (the rest phase) from ``lights_on[0]`` to
  ``lights_on[1]`` o'clock.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lmt_stereotype.config import CageLayout, Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.files import write_json, write_table
from lmt_stereotype.labels import PAPER_CLASSES
from lmt_stereotype.parallel import available_cores, process_pool
from lmt_stereotype.schema import ANIMAL_LAYOUTS
from lmt_stereotype.simulation.behaviour import (
    BASE_WEIGHTS,
    EFFECT_SITES,
    FINGERPRINT_SD_CM,
    LIGHT_HOUSE_FACTOR,
    PROFILES,
    REST_FLOOR_S,
    REST_MEDIAN_S,
    STOP_MEDIAN_S,
    Profile,
    SimMouse,
    Site,
    cage_sites,
    class_site_multipliers,
    effect_coefficients,
    genotype_site_multipliers,
    recording_frames,
    site_names,
    upper_feeder,
)
from lmt_stereotype.simulation.lmt_writer import FileVariant, simulate_recording
from lmt_stereotype.simulation.truth import truth_file

SIMULATOR_VERSION = 2
"""Bump when the simulated data change, so an existing simulation is not taken as up to date."""
log = logging.getLogger(__name__)

MAX_WORKERS = 4  # recordings written at once
IN_PROGRESS = ".simulation-in-progress"
"""Marks a raw folder whose simulation has started and not finished: a re-run may overwrite it."""

AGES = ("juvenile", "adult")

GENOTYPE_STREAM = 0x47454E4F  # ("GENO") entropy of the per_cage genotype draw, apart from any cage's streams
MIXED_STREAM = 3  # a cage's streams: 0 its mice, 1 and 2 its recordings, 3 its mixed genotypes, 4 its clock
CLOCK_STREAM = 4

SIMULATED_LAYOUTS = ("4", "5", "7", "8", "9-IND")
"""The ANIMAL layouts of FORMAT.md that lmt-analysis's loader opens (the 3-column one and the
9-column one with TREATMENT are read by our reader, tested on hand-built files)."""


@dataclass(frozen=True)
class _RecordingPlan:
    """Everything one worker needs to write one recording, and what the manifest says of it."""

    file: str
    cage: str
    age: str
    mice: tuple[SimMouse, ...]
    entropy: tuple[int, ...]
    variant: FileVariant
    start_hour: float  # clock hour of the first frame
    key_by_rfid: bool  # manifest names animals by RFID instead of ANIMAL.ID
    unlabelled_id: int | None  # the mouse whose sex and age the manifest leaves to ANIMAL


def _near(site: Site, point: np.ndarray, margin: float) -> bool:
    g = site.geometry
    if site.shape == "rect":
        return g[0] - margin <= point[0] <= g[2] + margin and g[1] - margin <= point[1] <= g[3] + margin
    return bool(np.hypot(point[0] - g[0], point[1] - g[1]) <= g[2] + margin)  # disc


def _fingerprint_spot(rng: np.random.Generator, layout: CageLayout, arena: float) -> tuple[float, float]:
    """A cage's own favourite spot, away from the sites of the planted effects: a cage's
    fingerprint should confound the classes by chance only, not mimic a class effect."""
    effect_sites = [s for s in cage_sites(layout, arena, (0.0, 0.0)) if s.name in EFFECT_SITES.values()]
    while True:
        spot = rng.uniform(0.1 * arena, 0.9 * arena, 2)
        if not any(_near(s, spot, 2 * FINGERPRINT_SD_CM) for s in effect_sites):
            return tuple(np.round(spot, 2).tolist())


def _sex(c: int, n_cages: int) -> str:
    """The sex of cage ``c`` (0-based): the first half male."""
    return "M" if c < n_cages / 2 else "F"


def _genotypes(params: Params, seed: int) -> list[tuple[str, ...]]:
    """Each cage's mice's genotypes (mice A to D), from streams of their own, so that the
    other draws are the same whatever the housing."""
    sim = params.simulate
    housing = sim.genotype.housing
    if housing == "none":
        return [("WT",) * 4] * sim.n_cages
    if housing == "mixed":
        out = []
        for c in range(sim.n_cages):
            ko = set(np.random.default_rng([seed, c, MIXED_STREAM]).choice(4, 2, replace=False).tolist())
            out.append(tuple("KO" if i in ko else "WT" for i in range(4)))
        return out
    rng = np.random.default_rng([seed, GENOTYPE_STREAM])  # per_cage: half the cages of each sex KO
    ko_cages: set[int] = set()
    for sex in ("M", "F"):
        cages = [c for c in range(sim.n_cages) if _sex(c, sim.n_cages) == sex]
        ko_cages |= {cages[i] for i in rng.permutation(len(cages))[: len(cages) // 2].tolist()}  # WT: the extra
    return [("KO" if c in ko_cages else "WT",) * 4 for c in range(sim.n_cages)]


def _start_hour(rng: np.random.Generator, params: Params) -> float:
    """A recording's clock hour at its first frame: a whole minute in the stack interval before
    ``histograms.clock_start``, so that a window aligned on the clock fits in the recording's margin."""
    h = params.histograms
    margin_h = h.interval_s / PROFILES[params.simulate.profile].interval_s  # one stack interval, in clock hours
    minutes = int(rng.integers(0, max(round(margin_h * 60), 1)))
    return (h.clock_start - margin_h + minutes / 60) % 24


def _plan_cohort(params: Params) -> tuple[list[_RecordingPlan], dict[str, list[float]]]:
    """Cages, their mice and fingerprints, and the per-recording variants; cheap (no tracks)."""
    sim = params.simulate
    seed = sim.seed % 2**64  # SeedSequence wants non-negative entropy
    n_sites = len(site_names(params.cage_layout))
    arena = params.lmt.arena_size_cm
    genotypes = _genotypes(params, seed)
    plans, fingerprints = [], {}
    for c in range(sim.n_cages):
        rng = np.random.default_rng([seed, c, 0])
        cage, sex = f"cage{c + 1:02d}", _sex(c, sim.n_cages)
        fingerprint = _fingerprint_spot(rng, params.cage_layout, arena)
        fingerprints[cage] = list(fingerprint)
        cage_logw = rng.normal(0, sim.cage_variability, n_sites)
        mouse_logw = cage_logw + rng.normal(0, sim.mouse_variability, (4, n_sites))
        rfids = [f"0000041{c + 1:03d}{i + 1:02d}" for i in range(4)]
        clock = np.random.default_rng([seed, c, CLOCK_STREAM])
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
                            genotype=genotypes[c][i],
                        )
                        for i in range(4)
                    ),
                    key=lambda m: m.animal_id,
                )
            )
            r, v = len(plans), c + a  # variants by v take every value at both ages: none tells the age
            processed = v % 4 == 1
            variant = FileVariant(
                animal_layout=SIMULATED_LAYOUTS[r % len(SIMULATED_LAYOUTS)],
                event_metadata=r % 3 != 2 or processed,
                processed=processed,
                null_animal=v % 6 == 3,
                late_animals=(0, 0, 1, 0, 0, 0, 2, 0)[v % 8],
            )
            start_hour = _start_hour(clock, params)
            plans.append(
                _RecordingPlan(
                    file=f"{cage}_{age}.sqlite",
                    cage=cage,
                    age=age,
                    mice=mice,
                    entropy=(seed, c, 1 + a),
                    variant=variant,
                    start_hour=start_hour,
                    key_by_rfid=(c + a) % 2 == 1,  # not tied to age: half the cages each way
                    unlabelled_id=1 + r % 4 if "SEX" in ANIMAL_LAYOUTS[variant.animal_layout] else None,
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
        variant=plan.variant,
        start_hour=plan.start_hour,
        truth=out_dir / truth_file(plan.file),
    )


def _manifest(plans: list[_RecordingPlan], genotype: bool) -> pd.DataFrame:
    """One row per mouse-recording; a ``genotype`` column if ``genotype``. The unlabelled mouse's
    labels are left to ANIMAL, which has SEX, AGE and GENOTYPE where it is chosen."""
    columns = ["recording", "animal", "cage", "sex", "age"] + (["genotype"] if genotype else [])
    rows = []
    for p in plans:
        for m in p.mice:
            blank = m.animal_id == p.unlabelled_id
            row = {
                "recording": p.file,
                "animal": m.rfid if p.key_by_rfid else str(m.animal_id),
                "cage": p.cage,
                "sex": "" if blank else m.sex,
                "age": "" if blank else m.age,
                "genotype": "" if blank else m.genotype,
            }
            rows.append([row[c] for c in columns])
    return pd.DataFrame(rows, columns=columns)


def _region(site: Site) -> dict:
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
    sites = cage_sites(params.cage_layout, arena, fingerprint=(0.0, 0.0))
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
            "site_weight_multiplier": {c: multipliers[c][names.index(EFFECT_SITES[effect])] for c in PAPER_CLASSES},
        }
        for effect, coefficients in effect_coefficients(eff.juvenile_male_mix).items()
    }
    planted = params.simulate.genotype.housing != "none"
    n_frames = recording_frames(profile, params)
    return {
        "simulator_version": SIMULATOR_VERSION,
        "simulate": params.simulate.model_dump(mode="json"),
        "profile": {"name": profile_name, **asdict(profile)},
        "interval_s": profile.interval_s,
        "n_intervals": profile.n_intervals,
        "fps": params.lmt.fps,
        "n_frames": n_frames,
        "recording_s": n_frames / params.lmt.fps,
        "recording_words": "the profile's n_intervals x interval_s, and one stack interval (histograms.interval_s) of"
        " margin so that a window aligned on the clock fits",
        "lmt": params.lmt.model_dump(mode="json", include={"fps", "px_per_cm", "arena_origin_px", "arena_size_cm"}),
        "cage_layout": params.cage_layout.model_dump(mode="json"),
        "sites_cm": regions,
        "cage_fingerprints_cm": fingerprints,
        "effects": {
            "rule": "a site's weight is multiplied by 1 + strength * size * class coefficient",
            "strength": eff.strength,
            **effects,
        },
        "genotype": _genotype_description(params, plans, regions),
        "site_choice": (
            "categorical over sites; weight = base weight x light factor x class effect x genotype effect"
            " x exp(cage preference, shared at both ages) x exp(own preference)"
        ),
        "clock": {
            "seconds_per_hour": profile.interval_s,
            "lights_on": list(params.room.lights_on),
            "start": "each recording's start_hour (recordings[]), the hour of the day of its first FRAME.TIMESTAMP",
        },
        "day_night": {
            "hour_of_frame_f": "(start_hour + f / (fps x seconds_per_hour)) % 24",
            "lights_on_hours": list(params.room.lights_on),
            "lights_on": f"house weight x{LIGHT_HOUSE_FACTOR}, stops median {STOP_MEDIAN_S[True]} s, house rests"
            f" median max({REST_MEDIAN_S} s x interval_s / 3600, {REST_FLOOR_S} s)",
            "lights_off": f"stops median {STOP_MEDIAN_S[False]} s, more exploring detours",
        },
        "recordings": [
            {
                "recording": p.file,
                "cage": p.cage,
                "age": p.age,
                "start_hour": p.start_hour,
                "animal_layout": list(ANIMAL_LAYOUTS[p.variant.animal_layout]),
                "event_metadata": p.variant.event_metadata,
                "processed_by_lmt_analysis": p.variant.processed,
                "null_animal": p.variant.null_animal,
                "animals_identified_late": p.variant.late_animals,
                "planted_stops": truth_file(p.file),
                "mice": [
                    {
                        "animal_id": m.animal_id,
                        "rfid": m.rfid,
                        "class": m.label,
                        **({"genotype": m.genotype} if planted else {}),
                    }
                    for m in p.mice
                ],
            }
            for p in plans
        ],
    }


def _genotype_description(params: Params, plans: list[_RecordingPlan], regions: dict) -> dict:
    """simulation.json's ``genotype``: the planted genotype effect and every mouse's genotype."""
    genotype = params.simulate.genotype
    if genotype.housing == "none":
        return {
            "housing": "none",
            "description": "no genotype planted: ANIMAL.GENOTYPE is WT for every mouse, the manifest has no genotype",
        }
    site = upper_feeder(params.cage_layout)
    multipliers = genotype_site_multipliers(params)
    index = site_names(params.cage_layout).index(site)
    housing = {
        "mixed": "2 WT and 2 KO mice in every cage (drawn per cage)",
        "per_cage": "one genotype per cage, half the cages of each sex KO (WT has the extra one of an odd count)",
    }[genotype.housing]
    return {
        "housing": genotype.housing,
        "housing_description": housing,
        "description": "KO mice stop more often at the upper feeder, in both sexes and at both ages alike",
        "site": site,
        "region_cm": regions[site],
        "strength": genotype.strength,
        "rule": "a KO mouse's weight of the site is multiplied by 1 + strength; WT mice and the other sites: 1",
        "site_weight_multiplier": {g: multipliers[g][index] for g in multipliers},
        "genotypes": {
            p.cage: {m.name: m.genotype for m in sorted(p.mice, key=lambda m: m.name)}
            for p in plans
            if p.age == AGES[0]
        },
        "genotypes_by": "cage -> mouse (ANIMAL.NAME, the same at both ages) -> genotype; also in recordings' mice",
    }


def simulate_cohort(params: Params, out_dir: Path, *, progress: bool = True) -> Path:
    """Writes the cohort into out_dir (all DBs, manifest.csv, simulation.json); returns manifest path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / IN_PROGRESS).touch()  # an interrupted simulation is ours to overwrite, not real recordings
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
    write_table(_manifest(plans, params.simulate.genotype.housing != "none"), manifest)
    write_json(_description(params, name, plans, fingerprints), out_dir / "simulation.json")
    (out_dir / IN_PROGRESS).unlink()
    return manifest


def write_simulated_cohort(params: Params, out_dir: Path, *, force: bool = False, progress: bool = True) -> bool:
    """Simulate into ``out_dir`` unless it already holds this very simulation; True if written.

    Refuses a folder that holds recordings but no simulation.json: they may be real, unless
    it holds :data:`IN_PROGRESS`, left by a simulation that was interrupted.
    Recordings of an earlier, larger simulation there are removed.
    """
    out_dir = Path(out_dir)
    marker = out_dir / "simulation.json"
    plans, fingerprints = _plan_cohort(params)
    expected = _description(params, params.simulate.profile, plans, fingerprints)
    if marker.exists():
        files = [p.file for p in plans] + [truth_file(p.file) for p in plans] + ["manifest.csv"]
        complete = all((out_dir / f).exists() for f in files)
        try:
            same = json.loads(marker.read_text()) == json.loads(json.dumps(expected))
        except ValueError:
            same = False
        if same and complete and not force:
            return False
        old = {p.name for p in out_dir.glob("cage*_*.sqlite")}
        for stale in sorted(old - {p.file for p in plans}):
            (out_dir / stale).unlink()
            (out_dir / truth_file(stale)).unlink(missing_ok=True)
    elif (out_dir / IN_PROGRESS).exists():
        log.info("%s: finishing an interrupted simulation", out_dir)
    elif out_dir.exists() and (any(out_dir.glob("*.sqlite")) or (out_dir / "manifest.csv").exists()):
        raise InputError(out_dir, "holds recordings that were not simulated (no simulation.json); not overwriting")
    simulate_cohort(params, out_dir, progress=progress)
    return True
