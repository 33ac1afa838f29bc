"""The MLflow Model Registry: the final CNN as a model that predicts classes, and its promotion.

MLflow 3's native PyTorch flavour loads back as a bare graph module: no classes, no
probabilities, no input transform. The CNN is therefore logged as a pyfunc
(:class:`StopClassifier`) holding the network's weights, settings and classes, which
predicts a class and one probability per class (``p_AM`` ... or ``p_WT``, ``p_KO``) per
stack, and from which :func:`load_classifier` rebuilds the fitted
:class:`~lmt_stereotype.models.CNNClassifier` (for activation maps). The
parameters that turn a recording into stacks travel in the model's metadata, so
prediction never depends on today's ``params.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from lmt_stereotype.config import Params, RegistryParams, StackParams
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier, load_cnn, model_settings, save_cnn

CHAMPION, CHALLENGER = "champion", "challenger"
REQUIREMENTS = ("torch", "numpy", "pandas", "scikit-learn", "pydantic", "pyyaml", "pyarrow", "tqdm", "typer")
PACKAGE = Path(__file__).parent


def prediction_frame(proba: np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    """Class and class probabilities per stack: the columns every prediction output shares."""
    frame = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
    frame.insert(0, "predicted", np.asarray(classes)[proba.argmax(axis=1)])
    return frame


class StopClassifier(mlflow.pyfunc.PythonModel):
    """Pyfunc of the CNN: stacks (n, T, N, N) float32 in, ``predicted`` and ``p_<class>`` per class out."""

    def load_context(self, context: Any) -> None:
        self.classifier, self.classes = load_cnn(context.artifacts["cnn"])

    def predict(self, context: Any, model_input: np.ndarray, params: dict | None = None) -> pd.DataFrame:
        proba = self.classifier.predict_proba(np.asarray(model_input, dtype=np.float32))
        return prediction_frame(proba, self.classes)


MODEL_CODE = """\
import mlflow
from lmt_stereotype.registry import StopClassifier

mlflow.models.set_model(StopClassifier())
"""


def log_model(classifier: CNNClassifier, params: Params, stacks: Stacks) -> Any:
    """Log the fitted CNN to the active run as a pyfunc with signature, input example (a stack of
    ``stacks``), its target and classes, the identities of the recordings it was trained on (so that
    an external validation can refuse them) and the parameters that make a stack."""
    dumped = params.model_dump(mode="json")
    classes = stacks.classes
    metadata = {
        "target": stacks.target_column,
        "classes": list(classes),
        "training_recordings": sorted(set(stacks.identity.tolist())),
    }
    metadata.update({s: dumped[s] for s in StackParams.model_fields})
    example = np.asarray(stacks.X[:1], dtype=np.float32)
    signature = infer_signature(example, prediction_frame(np.full((1, len(classes)), 1 / len(classes)), classes))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "stop_classifier.py").write_text(MODEL_CODE)
        save_cnn(classifier, example.shape[1:3], classes, Path(tmp) / "cnn.npz")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(tmp) / "stop_classifier.py"),  # models from code: nothing pickled
            artifacts={"cnn": str(Path(tmp) / "cnn.npz")},
            signature=signature,
            input_example=example,
            metadata=metadata,
            code_paths=[str(PACKAGE)],
            pip_requirements=[f"{name}=={version(name)}" for name in ("mlflow", *REQUIREMENTS)],
        )


@dataclass(frozen=True)
class Registration:
    """What registering did: the new version, the alias it got and why, and the champion it was weighed against."""

    name: str
    version: str
    alias: str
    metric: str
    value: float
    previous_champion: str | None
    previous_value: float | None
    run_id: str
    reason: str = ""


def _tag_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list | tuple) else str(value)


def promotion(
    value: float,
    metric: str,
    scheme: str,
    significant: tuple[bool, str],
    selection_biased: bool,
    champion: dict[str, str] | None,
) -> tuple[str, str]:
    """The alias a new version earns, and why, in words.

    ``champion`` only for a version whose cross-validated accuracy is significantly above
    chance (``significant``: the verdict and its evidence) and whose ``metric`` beats the
    current champion's (``champion``: its version and tags). A champion whose evidence
    came from another scheme is not comparable and does not stand in the way; a
    selection-biased score never promotes.
    """
    above, evidence = significant
    if selection_biased:
        return CHALLENGER, "selection-biased score (flat tuning): never champion"
    if not above:
        return CHALLENGER, f"not significantly above chance ({evidence})"
    if champion is None:
        return CHAMPION, f"significantly above chance ({evidence}); no champion before"
    best = float(champion.get(f"cv.{metric}", "nan"))
    if champion.get("cv.scheme") != scheme or not math.isfinite(best):
        return CHAMPION, (
            f"significantly above chance ({evidence}); champion version {champion['version']} has no {scheme} "
            f"{metric} to compare"
        )
    if value > best:
        return CHAMPION, (
            f"significantly above chance ({evidence}); {metric} {value:.3f} beats champion version "
            f"{champion['version']}'s {best:.3f}"
        )
    return CHALLENGER, (
        f"significantly above chance ({evidence}), but {metric} {value:.3f} does not beat champion version "
        f"{champion['version']}'s {best:.3f}"
    )


def register(
    model_uri: str, cfg: RegistryParams, metrics: dict[str, float], tags: dict[str, Any], description: str
) -> str:
    """Register ``model_uri`` as a new version of ``cfg.model_name``; its version, with no alias yet.

    ``metrics`` are the version's cross-validated metrics (in the scheme ``tags["cv_scheme"]``),
    kept as ``cv.*`` tags so that a later version can be weighed against it (:func:`promote`).
    """
    version_tags = {
        **{k: _tag_value(v) for k, v in tags.items()},
        **{f"cv.{k}": repr(float(v)) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)},
        "cv.metric": cfg.metric,
        "cv.scheme": str(tags.get("cv_scheme", "")),
    }
    registered = mlflow.register_model(model_uri, cfg.model_name, tags=version_tags)
    mlflow.MlflowClient().update_model_version(cfg.model_name, registered.version, description=description)
    return str(registered.version)


def promote(
    cfg: RegistryParams, version: str, significant: tuple[bool, str], selection_biased: bool = False
) -> Registration:
    """Give ``version`` the alias :func:`promotion` decides against the current champion, and say why.

    The reason goes to the version's ``promotion_reason`` tag and the end of its description.
    Two trainings promoting at the same instant could both read the old champion; the
    later alias then wins, so run one ``train`` per registered name at a time.
    """
    client = mlflow.MlflowClient()
    candidate = client.get_model_version(cfg.model_name, version)
    value = float(candidate.tags[f"cv.{cfg.metric}"])
    current = client.get_registered_model(cfg.model_name).aliases.get(CHAMPION)
    champion = client.get_model_version(cfg.model_name, current) if current is not None else None
    champion_tags = {**champion.tags, "version": str(champion.version)} if champion is not None else None
    if champion_tags is not None and champion_tags.get("target", "class") != candidate.tags.get("target", "class"):
        champion_tags = None  # a champion that answers another question is not weighed against
    scheme = candidate.tags.get("cv.scheme", "")
    alias, reason = promotion(value, cfg.metric, scheme, significant, selection_biased, champion_tags)
    client.set_model_version_tag(cfg.model_name, version, "promotion_reason", reason)
    described = f"{candidate.description} Registered as {alias}: {reason}."
    client.update_model_version(cfg.model_name, version, description=described)
    client.set_registered_model_alias(cfg.model_name, alias, version)
    best = float(champion.tags.get(f"cv.{cfg.metric}", "nan")) if champion is not None else None
    return Registration(
        cfg.model_name,
        version,
        alias,
        cfg.metric,
        value,
        str(champion.version) if champion is not None else None,
        best,
        candidate.run_id,
        reason,
    )


def fingerprint(classifier: CNNClassifier, evidence: dict[str, Any]) -> str:
    """A digest of a fitted CNN's settings and weights and of the ``evidence`` it is registered with
    (its cross-validated metrics, its tuning mode): the same model and evidence again give the same one."""
    digest = hashlib.sha256(json.dumps([model_settings(classifier), evidence], sort_keys=True).encode())
    for name, tensor in sorted(classifier.module_.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def registered_already(name: str, digest: str) -> Registration | None:
    """The version of ``name`` holding exactly this model (``fingerprint`` tag), if there is one.

    Re-running an unchanged pipeline then registers nothing new and moves no alias.
    """
    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for candidate in versions:
        if candidate.tags.get("fingerprint") == digest:
            metric = candidate.tags.get("cv.metric", "")
            aliases = client.get_registered_model(name).aliases
            alias = next((a for a, v in aliases.items() if str(v) == str(candidate.version)), "none")
            value = float(candidate.tags.get(f"cv.{metric}", "nan"))
            reason = candidate.tags.get("promotion_reason", "")
            return Registration(
                name, str(candidate.version), alias, metric, value, None, None, candidate.run_id, reason
            )
    return None


def describe(metrics: dict[str, float], scheme: str, tags: dict[str, Any], stacks: Stacks) -> str:
    """The model version's description: what it is and how well it is expected to do."""
    biased = " (selection-biased: the settings were chosen by this score)" if tags.get("selection_biased") else ""
    sexes = (
        f", females {metrics['accuracy_female']:.3f}, males {metrics['accuracy_male']:.3f}"
        if "accuracy_female" in metrics and "accuracy_male" in metrics
        else ""
    )
    auc = f", ROC AUC {metrics['roc_auc']:.3f} per fold" if math.isfinite(metrics.get("roc_auc", math.nan)) else ""
    return (
        f"Shallow CNN (two parallel conv branches, one linear layer) classifying {stacks.target_column} "
        f"({'/'.join(stacks.classes)}) from stacks of stop histograms. Cross-validated ({scheme}){biased}: "
        f"accuracy {metrics['accuracy']:.3f} [{metrics['accuracy_ci_low']:.3f}, {metrics['accuracy_ci_high']:.3f}], "
        f"balanced accuracy {metrics['balanced_accuracy']:.3f}{sexes}{auc}, chance {metrics['chance_level']:.2f}. "
        f"Tuning: {tags.get('tuning')}. "
        f"Data version {tags.get('data_version')} ({tags.get('data_source')}), git commit {tags.get('git_commit')}."
    )


def attach(record: dict[str, Any], folder: Path, artifact_path: str) -> str:
    """Add ``folder`` to the artifacts of the run that logged a registered version, and point the version at it.

    ``record`` is what ``train`` wrote about its registration (name, version).
    Returns the artifact URI now tagged on the version as ``artifact_path``.
    """
    client = mlflow.MlflowClient()
    run_id = client.get_model_version(record["name"], record["version"]).run_id
    client.log_artifacts(run_id, str(folder), artifact_path)
    uri = f"runs:/{run_id}/{artifact_path}"
    client.set_model_version_tag(record["name"], record["version"], artifact_path, uri)
    return uri


def load_classifier(model: mlflow.pyfunc.PyFuncModel) -> CNNClassifier:
    """The fitted CNN inside a loaded registry model (for activation maps and attribution)."""
    return model.unwrap_python_model().classifier


def stack_params(model: mlflow.pyfunc.PyFuncModel) -> StackParams | None:
    """The stop and histogram parameters the model was trained with (from its metadata), if it has them."""
    metadata = model.metadata.metadata or {}
    if not all(section in metadata for section in StackParams.model_fields):
        return None
    return StackParams.model_validate({s: metadata[s] for s in StackParams.model_fields})


def training_recordings(model: mlflow.pyfunc.PyFuncModel) -> set[str]:
    """Identities (:meth:`~lmt_stereotype.lmt.LMTDatabase.identity`) of the recordings the model was trained on."""
    return set((model.metadata.metadata or {}).get("training_recordings", []))


def model_version(uri: str) -> tuple[str, str] | None:
    """The registered name and version a ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` URI points at
    (None for any other URI: a run's model is no version)."""
    if not uri.startswith("models:/"):
        return None
    reference = uri.removeprefix("models:/")
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return name, str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    name, _, version = reference.rpartition("/")
    return (name, version) if name and version.isdigit() else None


def cross_validated_confusion(name: str, version: str) -> np.ndarray | None:
    """The confusion matrix of the version's own cross-validation (its ``cv.confusion`` tag), if it has one."""
    tag = mlflow.MlflowClient().get_model_version(name, version).tags.get("cv.confusion")
    return np.array(json.loads(tag)) if tag else None


EXTERNAL_TAGS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "balanced_accuracy", "chance_level")


def tag_external(name: str, version: str, cohort: str, metrics: dict[str, float], run_id: str) -> dict[str, str]:
    """Tag the version with its result on an external ``cohort`` (``external.<cohort>.accuracy`` ...,
    the p-value above chance and the run that measured it); the tags set."""
    tags = {f"external.{cohort}.{k}": f"{metrics[k]:.4f}" for k in EXTERNAL_TAGS}
    tags[f"external.{cohort}.permutation_p_value"] = f"{metrics['permutation_p_value']:.4g}"
    tags[f"external.{cohort}.n_recordings"] = str(int(metrics["n_recordings"]))
    tags[f"external.{cohort}.run_id"] = run_id
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return tags
