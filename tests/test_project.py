"""The project's files agree with each other: one set of dependencies, one CLI behind every entry."""

from __future__ import annotations

import hashlib
import shlex
import tomllib
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from lmt_stereotype.cli import app
from lmt_stereotype.config import Params, load_params

ROOT = Path(__file__).parents[1]


def test_conda_env_has_the_same_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(pyproject)
    assert "torch==2.13.0" in pyproject
    assert "python=3.11" in conda["dependencies"]


def test_params_yaml_is_valid_and_complete():
    params = load_params(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(raw) == set(Params.model_fields)  # every section spelled out for users
    assert params.stops.speed_threshold_cm_s == 5.0 and params.stops.min_duration_s == 1.0
    assert params.histograms.grid == 30 and params.cnn.kernel_sizes == (3, 9) and params.cnn.lr == 1e-3
    assert params.baselines.pca_components == 3 and params.baselines.knn_neighbors == 1
    # the demo histograms cover its whole recording, so the simulate guard accepts them
    assert params.histograms.n_intervals * params.histograms.interval_s == 72 * 30


def _commands() -> list[list[str]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    entries = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    commands = [s["cmd"] for s in stages.values()] + [e["command"] for e in entries.values()]
    return [shlex.split(c) for c in commands]


def test_dvc_stages_and_mlflow_entry_points_call_the_cli():
    names = set(typer.main.get_command(app).commands)
    for argv in _commands():
        assert argv[0] == "lmt-stereotype" and argv[1] in names


def test_every_subcommand_has_readable_help():
    runner = CliRunner()
    for name in typer.main.get_command(app).commands:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output and len(result.output.splitlines()) > 4


def test_dvc_lock_is_up_to_date_with_the_code_it_depends_on():
    """A fresh clone's `make run` then leaves git clean: re-run `dvc repro` after changing a stage's code."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    for stage in lock.values():
        for dep in stage["deps"]:
            if dep["path"].endswith(".py"):
                assert hashlib.md5((ROOT / dep["path"]).read_bytes()).hexdigest() == dep["md5"], dep["path"]
