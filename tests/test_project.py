"""The project's files agree with each other: one set of dependencies, one name per stage on
every surface, DVC that sees every line a stage runs, one source of parameters."""

from __future__ import annotations

import ast
import hashlib
import importlib
import pkgutil
import re
import shlex
import tomllib
from pathlib import Path

import typer
import yaml
from mlflow.projects._project_spec import load_project
from typer.testing import CliRunner

import lmt_stereotype
from lmt_stereotype import stages
from lmt_stereotype.cli import app
from lmt_stereotype.config import RUNTIME_KEYS, Params, load_params

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src"
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
ENTRY_POINTS = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]


def test_conda_env_has_the_same_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(pyproject)
    assert "torch==2.13.0" in pyproject
    assert "python=3.11" in conda["dependencies"]


def _keys(raw: dict, prefix: str = "") -> set[str]:
    """Every key of a parameter file, dotted, sections included."""
    keys = set()
    for key, value in raw.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def test_params_yaml_is_the_one_source_of_every_setting_and_the_paper_file_differs_only_where_the_paper_does():
    """config.py declares types and ranges, no defaults: a key missing from a parameter file is an error."""
    params = load_params(ROOT / "params.yaml")
    paper = load_params(ROOT / "configs/paper.yaml")
    raw, raw_paper = (yaml.safe_load((ROOT / f).read_text()) for f in ("params.yaml", "configs/paper.yaml"))
    assert set(raw) == set(Params.model_fields) and _keys(raw) == _keys(raw_paper)
    differ = {k for k in _keys(raw) if "." in k and _get(raw, k) != _get(raw_paper, k)}
    assert differ == {"histograms.n_intervals", "histograms.interval_s", "histograms.align", "simulate.profile"}
    assert (paper.histograms.n_intervals, paper.histograms.interval_s) == (72, 3600)  # the paper: T = 72 hours
    assert params.stops.speed_threshold_cm_s == 5.0 and params.stops.min_duration_s == 1.0
    assert params.histograms.grid == 30 and params.cnn.kernel_sizes == (3, 9) and params.cnn.lr == 1e-3
    assert params.baselines.pca_components == 3 and params.baselines.knn_neighbors == 1
    # the demo histograms cover its whole recording, so the simulate guard accepts them
    assert params.histograms.n_intervals * params.histograms.interval_s == 72 * 30


def test_the_genotype_example_differs_from_the_demo_only_in_its_question_and_its_places():
    raw, raw_genotype = (yaml.safe_load((ROOT / f).read_text()) for f in ("params.yaml", "configs/genotype.yaml"))
    genotype = load_params(ROOT / "configs/genotype.yaml")
    assert _keys(raw) == _keys(raw_genotype)
    differ = {k for k in _keys(raw) if "." in k and _get(raw, k) != _get(raw_genotype, k)}
    places = {f"data.{k}" for k in raw["data"]} | {"data", "simulate", "simulate.genotype", "target", "mlflow"}
    assert differ - places == {
        "target.column",
        "simulate.genotype.housing",
        "simulate.genotype.strength",
        "mlflow.experiment",
    }
    assert all(str(getattr(genotype.data, k)).split("/")[1] == "genotype" for k in raw["data"])
    assert genotype.registry_of_target.model_name == "lmt-stereotype-cnn-genotype"


def _get(raw: dict, key: str):
    for part in key.split("."):
        raw = raw[part]
    return raw


def test_a_stage_has_one_name_module_subcommand_entry_point_and_dvc_stage():
    modules = {m.name.replace("_", "-") for m in pkgutil.iter_modules(stages.__path__) if not m.name.startswith("_")}
    commands = set(typer.main.get_command(app).commands)
    assert modules == commands == set(ENTRY_POINTS) - {"main"}
    assert set(DVC) <= modules
    for name, entry in ENTRY_POINTS.items():
        argv = shlex.split(entry["command"])
        assert name == "main" or argv[:2] == ["lmt-stereotype", name]
    for name, stage in DVC.items():
        assert shlex.split(stage["cmd"]) == ["lmt-stereotype", name]


def test_every_entry_point_makes_its_command_and_passes_an_undeclared_option_on(tmp_path):
    """MLflow formats an entry point's command with ``str.format``: no shell ``${x:+...}`` there."""
    project = load_project(ROOT)
    (tmp_path / "m.csv").touch()
    given = {"db": tmp_path / "m.csv", "input": tmp_path / "m.csv", "manifest": tmp_path / "m.csv"}
    for name in ENTRY_POINTS:
        entry = project.get_entry_point(name)
        values = {k: str(v) for k, v in given.items() if k in entry.parameters}
        argv = shlex.split(entry.compute_command({**values, "model": "models:/m/2"}, str(tmp_path)))
        assert argv[-2:] == ["--model", "models:/m/2"], name


def _module_path(name: str) -> Path | None:
    path = SRC / Path(*name.split("."))
    return (
        path / "__init__.py"
        if (path / "__init__.py").exists()
        else path.with_suffix(".py")
        if path.with_suffix(".py").exists()
        else None
    )


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {n for n in names if n.split(".")[0] == "lmt_stereotype"}


def _runs(modules: set[str]) -> set[Path]:
    """The project's files that importing ``modules`` runs (with their packages and every import, deferred or not)."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))] + sorted(_imports(path))
    return seen


def _resolved(path: str) -> str:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    return re.sub(r"\$\{([\w.]+)\}", lambda m: str(_get(data, m.group(1))), path)


def test_dvc_stages_depend_on_every_module_they_run():
    """`lmt-stereotype STAGE` runs cli.py's top level, then the stage module and all it imports."""
    cli = SRC / "lmt_stereotype/cli.py"
    for name, stage in DVC.items():
        runs = {cli} | _runs(_imports(cli, top_level_only=True)) | _runs({f"lmt_stereotype.stages.{name}"})
        deps = {ROOT / _resolved(d) for d in stage["deps"]}
        missing = sorted(str(p.relative_to(ROOT)) for p in runs - deps)
        stale = sorted(str(p.relative_to(ROOT)) for p in deps if p.suffix == ".py" and p not in runs)
        assert (missing, stale) == ([], []), f"dvc.yaml stage {name}"


def test_no_stage_reruns_when_only_how_fast_or_where_it_runs_changes():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in DVC.items():
        for key in stage.get("params", []):
            _get(params, key)  # every key exists
            assert not any(runtime == key or runtime.startswith(f"{key}.") for runtime in RUNTIME_KEYS), (name, key)


def test_every_module_of_the_package_imports():
    """Also those only the CLI runs (the stages, predict, report, the tuning workers), which the
    tests not marked slow (`make test-fast`) would otherwise leave out."""
    names = {m.name for m in pkgutil.walk_packages(lmt_stereotype.__path__, "lmt_stereotype.")}
    for name in sorted(names - {"lmt_stereotype.__main__"}):  # __main__ runs the CLI
        importlib.import_module(name)
    assert {"lmt_stereotype.stages.train", "lmt_stereotype.predict", "lmt_stereotype.tuning_workers"} <= names


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
