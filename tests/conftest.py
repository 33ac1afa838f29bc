"""Shared fixtures (used by name, never imported): the throw-away MLflow store, hand-built LMT
databases with known tracks, and the trained cohort that training, predict and report tests read.
Plain helpers live in ``tests/helpers``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.cohort import PLANTED_EXPERIMENT, cli, simulated_cohort
from helpers.lmt_files import track, write_lmt

PLANTED_MODULES = ("test_predict.py", "test_report.py", "test_training.py", "test_validate.py")
"""The modules that read :func:`planted`: one work unit under ``--dist loadfile``."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that :data:`PLANTED_MODULES` are one work unit, run by one
    worker one after the other: a session fixture is built once per worker that needs it, and
    :func:`planted` takes minutes to build."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class PlantedTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "the planted cohort's modules" if path.rsplit("/", 1)[-1] in PLANTED_MODULES else path

    return PlantedTogether(config, log)


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory) -> Iterator[str]:
    """Every test (and CLI subprocess) tracks into a throw-away SQLite store, not the project's."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if old is None:
        del os.environ["MLFLOW_TRACKING_URI"]
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


class ModuleFolders:
    """``mktemp`` for a module's fixtures, whose folders are removed when the module's tests are
    done, unless one of them failed: a simulated cohort weighs up to 4 GB, and a suite that kept
    them all to its end held 24 GB of a CI machine's disk."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.made: list[Path] = []

    def mktemp(self, name: str) -> Path:
        self.made.append(self.factory.mktemp(name))
        return self.made[-1]


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Iterator[ModuleFolders]:
    """Folders for one module's cohorts (see :class:`ModuleFolders`)."""
    folders, failed_before = ModuleFolders(tmp_path_factory), request.session.testsfailed
    yield folders
    if request.session.testsfailed == failed_before:
        for folder in folders.made:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> Path:
    """8 cages with the demo's moderate class effects and cage fingerprints, trained (CNN and
    baselines) and registered through the CLI; its runs in an experiment of their own
    (:data:`~helpers.cohort.PLANTED_EXPERIMENT`), whatever other tests log meanwhile."""
    folder = simulated_cohort(
        tmp_path_factory, "planted", {"seed": 1}, sections={"mlflow": {"experiment": PLANTED_EXPERIMENT}}
    )
    cli("train", cwd=folder)
    cli("baselines", cwd=folder)
    return folder


@pytest.fixture
def two_stop_db(tmp_path: Path) -> Path:
    """Animal 1: 2 s still, 2 s moving at 20 cm/s, 3 s still, 1 s moving. Animal 2 always moving."""
    x, y = track([("stay", 2, 0, 0), ("move", 2, 20, 0), ("stay", 3, 0, 0), ("move", 1, 0, 20)])
    frames = np.arange(1, len(x) + 1)
    x2, y2 = track([("move", 4, 8, 0), ("move", 4, 0, 8)])
    return write_lmt(tmp_path / "rec.sqlite", {1: (frames, x, y), 2: (np.arange(1, len(x2) + 1), x2, y2)}, anonymous=50)
