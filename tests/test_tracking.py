"""MLflow's default store is the project root's mlflow.db, also from `dvc exp run` copies."""

from __future__ import annotations

from helpers.params import DEMO, varied

from lmt_stereotype.tracking import project_root, tracking_uri


def test_project_root_is_found_above_dvc_experiment_copies(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    exp_copy = tmp_path / ".dvc/tmp/exps/tmpab12/src"
    exp_copy.mkdir(parents=True)
    (tmp_path / ".dvc/tmp/exps/tmpab12/params.yaml").write_text("{}\n")
    assert project_root(exp_copy) == tmp_path
    assert project_root(tmp_path / "src") == tmp_path


def test_relative_sqlite_store_resolves_to_the_root_and_env_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(DEMO.mlflow, tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    absolute = varied(DEMO.mlflow, tracking_uri="sqlite:////srv/mlflow.db")
    assert tracking_uri(absolute, tmp_path) == "sqlite:////srv/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(DEMO.mlflow, tmp_path) == "http://127.0.0.1:5000"
