"""MLflow in one place: where runs go, how a stage becomes a run, what it logs.

The default store is ``sqlite:///mlflow.db`` resolved against the project root, not
the working directory, so runs made inside ``dvc exp run`` temp copies (which live
under ``.dvc/tmp/exps/``) land in the same database as everything else.
``MLFLOW_TRACKING_URI`` in the environment wins, as MLflow users expect.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmt_stereotype.config import MlflowParams, Params

_SQLITE = "sqlite:///"


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``params.yaml``, above any ``.dvc/tmp`` experiment copy."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    if ".dvc" in parts:
        here = Path(*parts[: parts.index(".dvc")])
    for folder in (here, *here.parents):
        if (folder / "params.yaml").exists():
            return folder
    return here


def tracking_uri(cfg: MlflowParams, root: Path | None = None) -> str:
    """The tracking URI to use: the environment's, else ``cfg`` with relative SQLite paths made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        uri = _SQLITE + str((root or project_root()) / uri[len(_SQLITE) :])
    return uri


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = obj
    return out


class StageRun:
    """What a stage may log: metrics, files, tags. Thin on purpose."""

    def __init__(self, mlflow_module: Any, run: Any):
        self._mlflow = mlflow_module
        self.run = run

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()})

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._mlflow.set_tags(dict(tags))


@contextmanager
def stage_run(stage: str, params: Params, sections: tuple[str, ...] = ()) -> Iterator[StageRun]:
    """Run ``stage`` as an MLflow run (nested when another is active) logging ``params[sections]``.

    Under ``mlflow run`` the outer run is the one MLflow created (``MLFLOW_RUN_ID``). A run
    left by an exception ends FAILED, by Ctrl-C KILLED, never RUNNING forever.
    """
    import mlflow  # deferred: importing mlflow costs ~1 s that --help should not pay

    root = project_root()
    mlflow.set_tracking_uri(tracking_uri(params.mlflow, root))
    if mlflow.active_run() is None and "MLFLOW_RUN_ID" not in os.environ:
        experiment = mlflow.get_experiment_by_name(params.mlflow.experiment)
        if experiment is None:
            artifacts = (root / "mlartifacts").as_uri()
            mlflow.create_experiment(params.mlflow.experiment, artifact_location=artifacts)
        mlflow.set_experiment(params.mlflow.experiment)
    nested = mlflow.active_run() is not None
    run = mlflow.start_run(run_name=stage, nested=nested, tags={"stage": stage})
    try:
        dumped = params.model_dump(mode="json")
        flat: dict[str, Any] = {}
        for section in sections:
            _flatten(section, dumped[section], flat)
        if flat:
            mlflow.log_params(flat)
        yield StageRun(mlflow, run)
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run()
