"""MLflow in one place: where runs go, how a stage becomes a run, what it logs.

The default store is ``sqlite:///mlflow.db`` resolved against the project root, not
the working directory, so runs made inside ``dvc exp run`` temp copies (which live
under ``.dvc/tmp/exps/``) land in the same database as everything else.
``MLFLOW_TRACKING_URI`` in the environment wins, as MLflow users expect.

A tracking server (``http(s)://``) is asked for its ``/health`` once, before a stage
starts, with a timeout of :data:`REACH_TIMEOUT_S`: MLflow's own client retries a
refused connection for minutes, so a server that is down, a wrong port or a URL that
is not an MLflow server is a :class:`~lmt_stereotype.errors.ServiceError` (exit code 3)
in seconds instead, naming the URL and what went wrong.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmt_stereotype.config import MlflowParams, Params
from lmt_stereotype.errors import ServiceError

_SQLITE = "sqlite:///"
REACH_TIMEOUT_S = 5.0
"""Seconds to wait for the tracking server's answer to the up-front check."""


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
    return rooted(os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri, root)


def rooted(uri: str, root: Path | None = None) -> str:
    """A relative ``sqlite:///`` URL made absolute against the project root; other URLs unchanged."""
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        uri = _SQLITE + str((root or project_root()) / uri[len(_SQLITE) :])
    return uri


def check_reachable(uri: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Make sure an ``http(s)://`` tracking server answers, quickly; other stores need no server.

    Asks ``GET <uri>/health`` once, without retries, with MLflow's TLS settings
    (``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``). A refused or
    timed-out connection, a TLS failure or an answer other than 200 (or 401/403: a server
    that wants credentials is there; MLflow sends them) is a :class:`ServiceError`.
    """
    if not uri.lower().startswith(("http://", "https://")):
        return
    import requests

    verify: bool | str = True
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true"):
        verify = False
    elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        verify = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout, verify=verify)
    except requests.Timeout:
        raise ServiceError(uri, f"MLflow tracking server did not answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        reason = _first_reason(exc)
        raise ServiceError(uri, f"MLflow tracking server cannot be reached ({reason})") from None
    if response.status_code not in (200, 401, 403):
        raise ServiceError(
            uri, f"does not answer as an MLflow tracking server (GET /health: HTTP {response.status_code})"
        )


def use_tracking(cfg: MlflowParams) -> str:
    """Point MLflow at the project's tracking store (checked reachable) without starting a run; its URI."""
    import mlflow

    uri = tracking_uri(cfg)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def _first_reason(exc: BaseException) -> str:
    """The innermost cause's message, e.g. "[Errno 111] Connection refused", not urllib3's nesting."""
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc)
    return text.split(": ", 1)[-1] if "Failed to establish" in text else text


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = obj
    return out


def provenance_tags(params: Params, root: Path | None = None) -> dict[str, str]:
    """Where a result comes from: data version (the hash in ``data.dvc``), data source, git commit."""
    import yaml

    root = root or project_root()
    try:
        outs = yaml.safe_load((root / "data.dvc").read_text())["outs"][0]
        data_version = str(outs.get("md5") or outs.get("hash") or "unknown")
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        data_version = "untracked"
    raw = params.data.raw if params.data.raw.is_absolute() else root / params.data.raw
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return {
        "data_version": data_version,
        "data_source": "synthetic" if (raw / "simulation.json").exists() else "LMT",
        "git_commit": git.stdout.strip() if git.returncode == 0 else "unknown",
    }


class StageRun:
    """What a stage may log: metrics, series, files, tags, nested runs. Thin on purpose."""

    def __init__(self, mlflow_module: Any, run: Any):
        self._mlflow = mlflow_module
        self.run = run

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Log finite values; NaN (a metric undefined here, e.g. males of a female cage) is left out."""
        finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        self._mlflow.log_metrics(finite, run_id=self.run.info.run_id)

    def log_series(self, key: str, values: Sequence[float]) -> None:
        """One value per step (epoch 1, 2, ...), drawn as a curve by the MLflow UI."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(v), now, step) for step, v in enumerate(values, start=1)]
        self._mlflow.MlflowClient().log_batch(self.run.info.run_id, metrics=metrics)

    def log_params(self, values: Mapping[str, Any]) -> None:
        self._mlflow.log_params(dict(values), run_id=self.run.info.run_id)

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path, run_id=self.run.info.run_id)

    def log_artifacts(self, folder: Path | str, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifacts(str(folder), artifact_path, run_id=self.run.info.run_id)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        client = self._mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_tag(self.run.info.run_id, key, str(value))

    @contextmanager
    def child(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[StageRun]:
        """A run nested in this one (a model under a stage, a fold under a model), tagged with its question
        (``target``) like every run."""
        with _ending(self._mlflow):
            inherited = {"target": self.run.data.tags["target"]} if "target" in self.run.data.tags else {}
            tags = {**inherited, **{k: str(v) for k, v in (tags or {}).items()}}  # a server takes strings only
            run = self._mlflow.start_run(run_name=name, nested=True, tags=tags)
            yield StageRun(self._mlflow, run)


@contextmanager
def _ending(mlflow: Any) -> Iterator[None]:
    """End the active run FINISHED, or KILLED by Ctrl-C, or FAILED by an exception."""
    try:
        yield
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run()


@contextmanager
def stage_run(stage: str, params: Params, sections: tuple[str, ...] = ()) -> Iterator[StageRun]:
    """Run ``stage`` as an MLflow run (nested when another is active) logging ``params[sections]``.

    Under ``mlflow run`` the outer run is the one MLflow created (``MLFLOW_RUN_ID``). A run
    left by an exception ends FAILED, by Ctrl-C KILLED, never RUNNING forever. A tracking
    server that cannot be reached stops the stage before it starts (:func:`check_reachable`).
    """
    import mlflow  # deferred: importing mlflow costs ~1 s that --help should not pay

    root = project_root()
    uri = tracking_uri(params.mlflow, root)
    if mlflow.active_run() is None:  # a nested stage's server was checked by its parent
        check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    if mlflow.active_run() is None and "MLFLOW_RUN_ID" not in os.environ:
        experiment = mlflow.get_experiment_by_name(params.mlflow.experiment)
        if experiment is None:  # a local store keeps artifacts next to it; a server decides itself
            local = not uri.lower().startswith(("http://", "https://"))
            artifacts = (root / "mlartifacts").as_uri() if local else None
            mlflow.create_experiment(params.mlflow.experiment, artifact_location=artifacts)
        mlflow.set_experiment(params.mlflow.experiment)
    nested = mlflow.active_run() is not None
    with _ending(mlflow):
        run = mlflow.start_run(run_name=stage, nested=nested, tags={"stage": stage, "target": params.target.column})
        flat = flat_params(params, sections)
        if flat:
            mlflow.log_params(flat)
        yield StageRun(mlflow, run)


def flat_params(params: Params, sections: tuple[str, ...]) -> dict[str, Any]:
    """``{"cnn.lr": 0.001, ...}`` for the given top-level sections."""
    dumped = params.model_dump(mode="json")
    flat: dict[str, Any] = {}
    for section in sections:
        _flatten(section, dumped[section], flat)
    return flat
