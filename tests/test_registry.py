"""The model registry: what is registered predicts classes and probabilities and gives back its
network, and ``champion`` moves to a new version only when it is significantly above chance and
its cross-validated metric improves."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from helpers.cohort import TINY_CNN, tiny_stacks
from helpers.params import DEMO, varied

from lmt_stereotype.histograms import Stacks
from lmt_stereotype.labels import PAPER_CLASSES
from lmt_stereotype.models import CNNClassifier
from lmt_stereotype.registry import (
    describe,
    fingerprint,
    load_classifier,
    log_model,
    prediction_frame,
    promote,
    promotion,
    register,
    registered_already,
    stack_params,
)

REGISTRY = varied(DEMO.registry, model_name="registry-test", metric="balanced_accuracy")
PARAMS = DEMO.model_copy(
    update={"cnn": varied(DEMO.cnn, **TINY_CNN), "histograms": varied(DEMO.histograms, n_intervals=2, interval_s=60)}
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A registry of its own, so versions and aliases start from scratch."""
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}")
    yield
    mlflow.set_tracking_uri(before)


def tiny_cnn(stacks: Stacks, **changes) -> CNNClassifier:
    """The tiny CNN fitted on ``stacks`` for their target."""
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_CNN.items()}
    return CNNClassifier(**settings, **changes, n_classes=len(stacks.classes)).fit(stacks.X, stacks.y)


@pytest.fixture(scope="module")
def fitted() -> tuple[CNNClassifier, Stacks]:
    stacks = tiny_stacks()
    return tiny_cnn(stacks), stacks


@pytest.fixture(scope="module")
def fitted_sex() -> tuple[CNNClassifier, Stacks]:
    """The same cohort asked one question only: sex."""
    stacks = tiny_stacks(column="sex")
    return tiny_cnn(stacks), stacks


ABOVE = (True, "permutation p = 0.01 <= 0.05")
AT_CHANCE = (False, "cage-bootstrap interval [0.120, 0.400] reaches chance 0.25")


def log_and_register(
    classifier: CNNClassifier,
    stacks: Stacks,
    value: float,
    significant=ABOVE,
    selection_biased: bool = False,
    registry=REGISTRY,
):
    with mlflow.start_run():
        info = log_model(classifier, PARAMS, stacks)
    metrics = {"accuracy": value, "balanced_accuracy": value}
    tags = {"tuning": "nested", "cv_scheme": "balanced", "target": stacks.target_column}
    version = register(info.model_uri, registry, metrics, tags, "a test model")
    return promote(registry, version, significant, selection_biased)


def champion() -> str:
    return str(mlflow.MlflowClient().get_model_version_by_alias(REGISTRY.model_name, "champion").version)


@pytest.fixture(scope="module")
def null_first(store, fitted):
    """A first version whose cross-validation is not above chance (a cohort with nothing to learn)."""
    return log_and_register(*fitted, 0.30, significant=AT_CHANCE)


@pytest.fixture(scope="module")
def first(null_first, fitted):
    """The first version significantly above chance: champion, there being none before it."""
    return log_and_register(*fitted, 1 / 7)


def test_a_first_version_not_above_chance_is_challenger_with_the_reason_recorded(null_first):
    assert (null_first.version, null_first.alias) == ("1", "challenger")
    assert null_first.reason == f"not significantly above chance ({AT_CHANCE[1]})"
    version = mlflow.MlflowClient().get_model_version(REGISTRY.model_name, null_first.version)
    assert version.tags["promotion_reason"] == null_first.reason and version.tags["cv.scheme"] == "balanced"


def test_the_first_version_above_chance_is_champion(first):
    assert (first.version, first.alias, first.previous_champion) == ("2", "champion", None)
    assert first.reason == f"significantly above chance ({ABOVE[1]}); no champion before"


def test_champion_moves_only_when_the_cross_validated_metric_improves(first, fitted):
    assert champion() == "2"
    worse = log_and_register(*fitted, 0.10)
    assert worse.alias == "challenger" and champion() == "2"
    assert "0.100 does not beat champion version 2's 0.143" in worse.reason
    tie = log_and_register(*fitted, 1 / 7)
    assert tie.alias == "challenger" and champion() == "2"  # a tie is not an improvement, to the last digit
    better = log_and_register(*fitted, 0.70)
    assert (better.alias, better.previous_champion, better.previous_value) == ("champion", "2", 1 / 7)
    assert better.reason.endswith("balanced_accuracy 0.700 beats champion version 2's 0.143")
    assert champion() == better.version
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(REGISTRY.model_name, "challenger").version) == tie.version
    version = client.get_model_version(REGISTRY.model_name, better.version)
    assert version.tags["cv.balanced_accuracy"] == "0.7" and version.tags["tuning"] == "nested"
    assert version.description == f"a test model Registered as champion: {better.reason}."


def test_a_higher_metric_not_above_chance_never_makes_a_champion(first, fitted):
    before = champion()
    lucky = log_and_register(*fitted, 0.95, significant=AT_CHANCE)
    assert lucky.alias == "challenger" and champion() == before


def test_a_selection_biased_score_never_makes_a_champion(first, fitted):
    before = champion()
    biased = log_and_register(*fitted, 0.99, selection_biased=True)
    assert biased.alias == "challenger" and champion() == before
    reason = mlflow.MlflowClient().get_model_version(REGISTRY.model_name, biased.version).tags["promotion_reason"]
    assert reason == "selection-biased score (flat tuning): never champion"


def test_a_champion_from_another_scheme_is_not_comparable_and_gives_way():
    old = {"version": "4", "cv.scheme": "loco", "cv.balanced_accuracy": "0.9"}
    alias, reason = promotion(0.5, "balanced_accuracy", "balanced", ABOVE, False, old)
    assert alias == "champion" and "champion version 4 has no balanced balanced_accuracy to compare" in reason
    same = {**old, "cv.scheme": "balanced"}
    assert promotion(0.5, "balanced_accuracy", "balanced", ABOVE, False, same)[0] == "challenger"


def test_a_champion_that_answers_another_question_is_not_weighed_against(store, fitted, fitted_sex):
    registry = REGISTRY.model_copy(update={"model_name": "registry-target-test"})
    paper = log_and_register(*fitted, 0.90, registry=registry)
    assert paper.alias == "champion"
    sex = log_and_register(*fitted_sex, 0.60, registry=registry)  # lower, but of another target
    assert (sex.alias, sex.reason) == ("champion", f"significantly above chance ({ABOVE[1]}); no champion before")
    again = log_and_register(*fitted_sex, 0.55, registry=registry)  # the same target: weighed as ever
    assert again.alias == "challenger" and "0.550 does not beat champion version 2's 0.600" in again.reason


def test_the_registered_model_predicts_classes_and_probabilities(first, fitted):
    classifier, stacks = fitted
    X = stacks.X
    model = mlflow.pyfunc.load_model(f"models:/{REGISTRY.model_name}/{first.version}")
    out = model.predict(X)
    assert list(out.columns) == ["predicted"] + [f"p_{c}" for c in PAPER_CLASSES]
    proba = out[[f"p_{c}" for c in PAPER_CLASSES]].to_numpy()
    np.testing.assert_allclose(proba, classifier.predict_proba(X), rtol=1e-6)
    assert (out["predicted"] == np.array(PAPER_CLASSES)[classifier.predict(X)]).all()
    assert model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, *X.shape[1:])
    assert model.metadata.metadata["target"] == "class" and model.metadata.metadata["classes"] == list(PAPER_CLASSES)


def test_a_two_class_model_predicts_its_own_classes_through_pyfunc(store, fitted_sex):
    classifier, stacks = fitted_sex
    with mlflow.start_run():
        info = log_model(classifier, PARAMS, stacks)
    model = mlflow.pyfunc.load_model(info.model_uri)
    out = model.predict(stacks.X)
    assert list(out.columns) == ["predicted", "p_M", "p_F"]
    np.testing.assert_allclose(out[["p_M", "p_F"]].to_numpy(), classifier.predict_proba(stacks.X), rtol=1e-6)
    assert (out["predicted"] == np.array(["M", "F"])[classifier.predict(stacks.X)]).all()
    assert [c["name"] for c in model.metadata.signature.outputs.to_dict()] == ["predicted", "p_M", "p_F"]
    assert (model.metadata.metadata["target"], model.metadata.metadata["classes"]) == ("sex", ["M", "F"])
    assert load_classifier(model).classes_.tolist() == [0, 1]


def test_the_prediction_frame_names_a_column_per_class_in_output_order():
    frame = prediction_frame(np.array([[0.2, 0.8], [0.6, 0.4]]), ("KO", "WT"))
    assert list(frame.columns) == ["predicted", "p_KO", "p_WT"]
    assert frame["predicted"].tolist() == ["WT", "KO"]


def test_the_description_names_the_target_its_classes_and_what_only_a_two_class_target_has(fitted, fitted_sex):
    metrics = {
        "accuracy": 0.5,
        "accuracy_ci_low": 0.4,
        "accuracy_ci_high": 0.6,
        "balanced_accuracy": 0.5,
        "chance_level": 0.25,
        "accuracy_female": 0.7,
        "accuracy_male": 0.3,
    }
    tags = {"tuning": "off", "data_version": "abc", "data_source": "simulated", "git_commit": "1234"}
    paper = describe(metrics, "balanced", tags, fitted[1])
    assert "classifying class (AM/JM/AF/JF)" in paper and "females 0.700, males 0.300" in paper
    assert "ROC AUC" not in paper
    two = {k: v for k, v in metrics.items() if not k.startswith("accuracy_") or "_ci_" in k}
    sex = describe({**two, "chance_level": 0.5, "roc_auc": 0.81}, "balanced", tags, fitted_sex[1])
    assert "classifying sex (M/F)" in sex and "ROC AUC 0.810 per fold" in sex and "females" not in sex


def test_a_target_other_than_the_papers_registers_under_a_name_of_its_own():
    assert DEMO.target.column == "class" and DEMO.registry_of_target == DEMO.registry
    genotype = DEMO.model_copy(update={"target": varied(DEMO.target, column="genotype")})
    assert genotype.registry_of_target.model_name == f"{DEMO.registry.model_name}-genotype"
    assert genotype.registry_of_target.metric == DEMO.registry.metric


def test_the_registered_model_gives_back_its_network_and_stack_parameters(first, fitted):
    classifier, _ = fitted
    model = mlflow.pyfunc.load_model(f"models:/{REGISTRY.model_name}/{first.version}")
    restored = load_classifier(model)
    assert [b.conv.kernel_size for b in restored.module_.branches] == [(3, 3), (5, 5)]
    for mine, theirs in zip(restored.module_.state_dict().values(), classifier.module_.state_dict().values()):
        assert np.array_equal(mine.numpy(), theirs.numpy())  # activation maps can be computed from it
    trained = stack_params(model)
    assert (trained.histograms, trained.stops, trained.lmt) == (PARAMS.histograms, PARAMS.stops, PARAMS.lmt)


def test_the_same_model_trained_again_is_found_by_its_fingerprint_not_registered_twice(store, fitted):
    classifier, stacks = fitted
    digest = fingerprint(classifier, {})
    assert registered_already(REGISTRY.model_name, digest) is None
    with mlflow.start_run():
        info = log_model(classifier, PARAMS, stacks)
    metrics = {"accuracy": 0.2, "balanced_accuracy": 0.2}
    version = register(info.model_uri, REGISTRY, metrics, {"fingerprint": digest}, "fingerprinted")
    new = promote(REGISTRY, version, AT_CHANCE)
    again = registered_already(
        REGISTRY.model_name, fingerprint(load_classifier(mlflow.pyfunc.load_model(info.model_uri)), {})
    )
    assert (again.version, again.alias, again.value) == (new.version, "challenger", 0.2)
    assert again.reason == new.reason  # the reason it was given then
    other = tiny_cnn(stacks, seed=1)
    assert registered_already(REGISTRY.model_name, fingerprint(other, {})) is None
    assert registered_already(REGISTRY.model_name, fingerprint(classifier, {"tuning": "flat"})) is None
