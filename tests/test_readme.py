"""Every command README.md shows is run: by a test (named here) or by CI (.ci/run).

A command added to the README without a place that runs it fails
:func:`test_every_readme_command_is_run_by_a_test_or_by_ci`; the commands no other test
runs are run here.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import pytest
from helpers.cohort import BIN, ROOT
from helpers.mlflow_server import running_mlflow

README = ROOT / "README.md"

RUN_BY = {
    # README command (``.venv/bin/`` dropped) -> (file that runs it, text that file must hold)
    "make run": (".ci/run", "make run"),
    "make test": (".ci/run", "make test"),
    "mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000": (
        "tests/test_readme.py",
        '"mlflow", "ui", "--backend-store-uri"',
    ),
    "mlflow run . -e main --experiment-name lmt-stereotype --env-manager local": (
        "tests/test_pipeline.py",
        '"mlflow", "run", ".", "-e", "main", "--experiment-name", "lmt-stereotype", "--env-manager", "local"',
    ),
    "lmt-stereotype predict new_recording.sqlite": ("tests/test_predict.py", 'cli("predict", db, cwd=planted)'),
    "lmt-stereotype predict recordings/ other.sqlite --out predictions.parquet": (
        "tests/test_predict.py",
        'cli("predict", str(new_recordings), str(files[0]), "--model", uri, "--out", out',
    ),
    "lmt-stereotype predict cohort/manifest.csv --model models:/lmt-stereotype-cnn/3 --out predictions.csv": (
        "tests/test_predict.py",
        'cli("predict", manifest, "--model", uri, "--out"',
    ),
    "lmt-stereotype simulate --seed 7 --out data/external/second": (
        "tests/test_validate.py",
        '"simulate", "--seed", "12", "--cages", "4", "--out", "data/external/second"',
    ),
    "lmt-stereotype validate data/external/second/manifest.csv": (
        "tests/test_validate.py",
        'validate(planted, "data/external/second/manifest.csv"',
    ),
    "make serve": ("tests/test_predict.py", '"make", "-C", str(ROOT), "serve"'),
    "make serve MODEL=models:/lmt-stereotype-cnn/2 PORT=5002": (
        "tests/test_predict.py",
        '"serve", f"MODEL={registered(planted)}", f"PORT={port}"',
    ),
    "pip install -e '.[postgres]'": ("tests/test_readme.py", '"install", "--dry-run"'),
    "createdb optuna && createdb mlflow": ("tests/test_tuning.py", "CREATE DATABASE mlflow"),  # + postgres.py
    "mlflow server --backend-store-uri postgresql+psycopg://user:pw@dbhost/mlflow "
    "--artifacts-destination s3://bucket/mlartifacts --host 0.0.0.0": (
        "tests/test_tuning.py",
        '"--artifacts-destination", str(tmp_path / "mlartifacts")',  # a folder for the bucket, loopback for the host
    ),
    "export MLFLOW_TRACKING_URI=http://trackinghost:5000": (
        "tests/test_tuning.py",
        'monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)',
    ),
    "lmt-stereotype tune --workers 2": ("tests/test_tuning.py", 'cli("tune", "--workers", "2"'),
    "lmt-stereotype train": ("tests/test_tuning.py", 'cli("train", cwd=tmp_path)'),
    "dvc remote add -d storage /path/or/s3/bucket": (
        "tests/test_pipeline.py",
        '"dvc", "remote", "add", "-d", "storage"',
    ),
    "dvc push": ("tests/test_pipeline.py", 'run("dvc", "push")'),
    **{
        f"lmt-stereotype {stage} --params configs/genotype.yaml": (
            "tests/test_target.py",
            '"simulate", "stops", "histograms", "train", "baselines", "explain", "report"',
        )
        for stage in ("simulate", "stops", "histograms", "train", "baselines", "explain", "report")
    },
    "lmt-stereotype predict data/genotype/raw/cage01_adult.sqlite --params configs/genotype.yaml": (
        "tests/test_target.py",
        'cli("predict", recording, "--params", CONFIG',
    ),
}


def readme_commands() -> list[str]:
    """The commands of README's ``bash`` blocks: comments dropped, continued lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip().removeprefix(".venv/bin/")
            if command:
                commands.append(re.sub(r"\s+", " ", command))
    return commands


def test_every_readme_command_is_run_by_a_test_or_by_ci():
    commands = readme_commands()
    assert len(commands) == len(set(commands)) and set(commands) == set(RUN_BY)
    for command, (where, text) in RUN_BY.items():
        source = " ".join((ROOT / where).read_text().split()).replace("( ", "(").replace(", )", ")")
        assert text in source, f"{command!r}: {where} does not run it"


@pytest.mark.slow
def test_the_mlflow_ui_command_serves_the_store(tmp_path):
    store = tmp_path / "mlflow.db"
    command = [BIN / "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store}"]  # the port is a free one
    with running_mlflow(command, tmp_path / "ui.log") as url:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(f"{url}/api/2.0/mlflow/experiments/search?max_results=5", timeout=30) as answer:
            assert [e["name"] for e in json.load(answer)["experiments"]] == ["Default"]
    assert store.exists()


@pytest.mark.slow
def test_the_postgres_extra_resolves():
    proc = subprocess.run(
        [
            BIN / "python",
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-index",
            "--no-build-isolation",
            "-e",
            ".[postgres]",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr  # every requirement of the extra is already installed here
