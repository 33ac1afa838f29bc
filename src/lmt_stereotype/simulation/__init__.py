"""Synthetic LMT recordings with planted, known class effects (the paper's cohort design).

No real LMT database is public, so the pipeline is exercised on simulated ones. Four
modules, one job each:

- :mod:`~lmt_stereotype.simulation.behaviour`: the behaviour model. Each mouse
  alternates stops at sites of the cage with travel in between; the site it picks
  depends on the light phase, on its class (the planted effects), on its genotype (a
  planted genotype effect, ``simulate.genotype``), on its cage (a fingerprint shared by
  cage mates, the reason for leave-one-cage-out CV) and on itself.
- :mod:`~lmt_stereotype.simulation.lmt_writer`: the LMT writer. Databases with the
  tracker's own schema (:mod:`lmt_stereotype.schema`) and every quirk FORMAT.md lists
  (anonymous blobs, animals identified late, duplicated and junk rows, missing head/tail,
  dropped frames, a clock that jumps back, long stretches hidden in the house, ANIMAL,
  EVENT and LOG variants), so that the reader meets what real files hold; EVENT holds the
  tracker's own events, the planted stops go to a file beside the recording.
- :mod:`~lmt_stereotype.simulation.cohort`: the cohort design (cages, ages, genotypes,
  file variants, start times), ``manifest.csv``, the planted stops and ``simulation.json``,
  whose ``clock`` object records the simulator's clock (seconds per hour, lights-on hours;
  each recording's start hour) for later stages.
- :mod:`~lmt_stereotype.simulation.truth`: the planted stops (:func:`planted_stops`) and
  how detected stops score against them (:func:`score_stops`), for tests and benchmarks.

Everything derives from ``params.simulate.seed``: same seed, same bytes.
"""

from lmt_stereotype.simulation.behaviour import (
    GENOTYPES,
    PROFILES,
    Profile,
    SimMouse,
    class_site_multipliers,
    effect_coefficients,
    genotype_site_multipliers,
    site_names,
    upper_feeder,
)
from lmt_stereotype.simulation.cohort import SIMULATOR_VERSION, simulate_cohort, write_simulated_cohort
from lmt_stereotype.simulation.lmt_writer import FIRST_FRAME, FileVariant, simulate_recording
from lmt_stereotype.simulation.truth import StopScore, planted_stops, score_stops

__all__ = [
    "FIRST_FRAME",
    "GENOTYPES",
    "PROFILES",
    "SIMULATOR_VERSION",
    "FileVariant",
    "StopScore",
    "Profile",
    "SimMouse",
    "class_site_multipliers",
    "effect_coefficients",
    "genotype_site_multipliers",
    "planted_stops",
    "score_stops",
    "simulate_cohort",
    "simulate_recording",
    "site_names",
    "upper_feeder",
    "write_simulated_cohort",
]
