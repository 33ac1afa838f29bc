"""Optuna tuning nested in the cage folds: no trial ever sees the outer test cage."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import optuna
import pytest
from helpers.cohort import tiny_cohort
from helpers.params import DEMO, varied

from lmt_stereotype.design import cage_strata
from lmt_stereotype.evaluation import make_folds
from lmt_stereotype.labels import PAPER_CLASSES, Target
from lmt_stereotype.models import CNNClassifier
from lmt_stereotype.tuning import (
    Objective,
    fixed_trial_params,
    inner_folds,
    n_finished,
    nested_cross_validate,
    outside_space,
    study_name,
    trial_records,
    tune,
)

CNN = varied(DEMO.cnn, channels=(4, 4), kernel_sizes=(3, 5), epochs=2, batch_size=4, threads=1)
TUNING = varied(DEMO.tuning, n_trials=2, inner_folds=2, space=varied(DEMO.tuning.space, epochs=(1, 3)))


@pytest.fixture
def storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


BALANCED = varied(DEMO.evaluation, matchings=1)
PAPER = Target.of("class", PAPER_CLASSES)
SEX = Target.of("sex", ["M", "F"])


def as_sex(y: np.ndarray) -> np.ndarray:
    """The paper's class indices as the sex target's (M 0, F 1)."""
    return SEX.indices(PAPER.factor_levels(y)["sex"])


def sexes_held_out(index: np.ndarray, target: Target, y: np.ndarray, cages: np.ndarray) -> list[str]:
    """The strata of the cages at ``index``, one entry per cage (folds hold whole cages)."""
    strata, mixed = cage_strata(target, y, cages)
    held = set(cages[index])
    return sorted(
        [s for s, members in strata.items() for c in members if c in held] + ["mixed" for c in mixed if c in held]
    )


@pytest.mark.parametrize("target", [PAPER, SEX], ids=["class", "sex"])
def test_inner_folds_split_the_training_cages_without_sharing_one_and_balance_the_sexes(target):
    _, y, cages = tiny_cohort(6)
    y = y if target.is_paper else as_sex(y)
    folds = inner_folds(cages, target, y, 3)
    assert len(folds) == 3
    for fold in folds:
        assert not set(cages[fold.train]) & set(cages[fold.test])
        assert sexes_held_out(fold.test, target, y, cages) == ["F", "M"]  # a trial never learns a sex imbalance
        assert set(y[fold.train]) == set(range(len(target.classes)))
    assert sorted(np.concatenate([f.test for f in folds])) == list(range(len(cages)))
    assert len(inner_folds(cages, target, y, 5)) == 3  # never more folds than a sex has cages


def test_inner_folds_of_a_target_within_every_cage_leave_cages_out_with_every_class_in_training():
    _, y, cages = tiny_cohort(6)
    age = Target.of("age", ["adult", "juvenile"])
    y_age = age.indices(PAPER.factor_levels(y)["age"])
    folds = inner_folds(cages, age, y_age, 4)
    assert len(folds) == 4
    for fold in folds:
        assert not set(cages[fold.train]) & set(cages[fold.test])
        assert set(y_age[fold.train]) == {0, 1}
    assert sorted(np.concatenate([f.test for f in folds])) == list(range(len(cages)))


@pytest.mark.parametrize("target", [PAPER, SEX], ids=["class", "sex"])
def test_inner_folds_refuse_training_cages_with_a_single_cage_of_a_sex(target):
    _, y, cages = tiny_cohort(6)
    y = y if target.is_paper else as_sex(y)
    three = np.isin(cages, ["c0", "c1", "c3"])  # two male cages, one female
    with pytest.raises(ValueError, match="at least 2 training cages of each stratum for its inner folds, got 2 M, 1 F"):
        inner_folds(cages[three], target, y[three], 2)


def test_nested_tuning_never_shows_a_trial_the_outer_test_cages(storage):
    X, y, cages = tiny_cohort()
    for outer in make_folds("balanced", cages, BALANCED, PAPER, y):
        name = study_name("cnn", X[outer.train], y[outer.train], cages[outer.train], CNN, TUNING)
        study = tune(X[outer.train], y[outer.train], cages[outer.train], PAPER, CNN, TUNING, storage, name)
        assert n_finished(study) == 2
        for trial in study.trials:
            assert not set(cages[outer.test]) & set(trial.user_attrs["cages"])
            assert set(trial.user_attrs["cages"]) == set(cages[outer.train])


@pytest.mark.slow
def test_nested_cross_validation_predicts_each_cage_with_settings_tuned_without_it(storage):
    X, y, cages = tiny_cohort()
    outer = make_folds("balanced", cages, BALANCED, PAPER, y)
    cnn = CNN.model_copy(update={"epochs": 20, "lr": 0.01})
    tuning = TUNING.model_copy(update={"space": varied(DEMO.tuning.space, epochs=(15, 25), lr=(0.005, 0.02))})
    result, studies = nested_cross_validate(X, y, cages, PAPER, outer, cnn, tuning, storage)
    assert set(studies) == {fold.name for fold in outer} and len(outer) == 3
    for fold in outer:
        assert (result.fold[fold.test] == fold.name).all()
        held_out = set(cages[fold.test])
        assert all(not held_out & set(trial.user_attrs["cages"]) for trial in studies[fold.name].trials)
    assert (result.y_pred >= 0).all()
    np.testing.assert_allclose(result.proba.sum(axis=1), 1, rtol=1e-5)
    assert result.accuracy > 0.5  # the planted quadrants are easy


def test_the_fixed_settings_are_the_first_trial(storage):
    X, y, cages = tiny_cohort()
    study = tune(X, y, cages, PAPER, CNN, TUNING, storage, "first")
    assert study.trials[0].params == fixed_trial_params(CNN)
    assert len(study.trials) == 2 and study.trials[1].params != study.trials[0].params


@pytest.mark.parametrize("convolution", ["dense", "sparse"])
def test_a_trial_scores_its_inner_folds_as_cnns_trained_fold_by_fold_would(storage, convolution):
    """Sparse: the study's patches, built once and shared by its folds, train what each fold's own would."""
    X, y, cages = tiny_cohort()
    cnn = CNN.model_copy(update={"convolution": convolution})
    tuning = varied(TUNING, n_trials=1, min_epochs=1)
    objective = Objective(X, y, cages, PAPER, cnn, tuning)
    study = tune(X, y, cages, PAPER, cnn, tuning, storage, "fold-by-fold", folds=objective.folds)
    by_hand = []
    for fold in objective.folds:
        model = CNNClassifier.from_params(cnn, 4).fit(X[fold.train], y[fold.train])
        by_hand.append(np.mean(model.predict(X[fold.test]) == y[fold.test]))
    assert study.trials[0].value == float(np.mean(by_hand))
    assert study.trials[0].user_attrs["epochs_trained"] == CNN.epochs


def test_successive_halving_stops_poor_trials_after_min_epochs_and_records_their_epochs(storage):
    X, y, cages = tiny_cohort()
    space = varied(TUNING.space, epochs=(6, 6))
    tuning = varied(TUNING, n_trials=8, min_epochs=2, reduction_factor=3, space=space)
    study = tune(X, y, cages, PAPER, varied(CNN, epochs=6), tuning, storage, "halving")
    records = trial_records(study)
    pruned = [r for r in records if r["state"] == "PRUNED"]
    assert pruned and all(r["epochs_trained"] in (2, 4) for r in pruned)
    for r in pruned:  # a pruned trial's value: its inner accuracy at the epoch it stopped
        assert r["value"] == study.trials[r["number"]].intermediate_values[r["epochs_trained"]]
    assert {r["epochs_trained"] for r in records if r["state"] == "COMPLETE"} == {6}
    assert records[0]["state"] == "COMPLETE"  # the first trial, the fixed settings, has nothing to lose to
    unpruned = tune(X, y, cages, PAPER, varied(CNN, epochs=6), varied(tuning, pruner="none"), storage, "all")
    assert {r["epochs_trained"] for r in trial_records(unpruned)} == {6}


def test_a_two_class_target_is_tuned_on_sex_balanced_folds_with_a_two_output_network(storage):
    X, y, cages = tiny_cohort()
    y = as_sex(y)
    objective = Objective(X, y, cages, SEX, CNN, TUNING)
    assert objective.n_classes == 2 and len(objective.folds) == TUNING.inner_folds
    for fold in objective.folds:
        held_out = sexes_held_out(fold.test, SEX, y, cages)
        assert held_out.count("F") == held_out.count("M") >= 1  # as many male as female cages
    study = tune(X, y, cages, SEX, CNN, TUNING, storage, "sex")
    assert n_finished(study) == 2 and all(0 <= t.value <= 1 for t in study.trials)


def test_an_interrupted_study_resumes_from_its_storage(storage, monkeypatch):
    X, y, cages = tiny_cohort()
    tuning = TUNING.model_copy(update={"n_trials": 3})
    original = Objective.__call__
    calls = {"n": 0}

    def ctrl_c_in_the_second_trial(self, trial):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, trial)

    monkeypatch.setattr(Objective, "__call__", ctrl_c_in_the_second_trial)
    with pytest.raises(KeyboardInterrupt):
        tune(X, y, cages, PAPER, CNN, tuning, storage, "resumable")
    monkeypatch.undo()
    assert n_finished(optuna.load_study(study_name="resumable", storage=storage)) == 1
    study = tune(X, y, cages, PAPER, CNN, tuning, storage, "resumable")
    assert n_finished(study) == 3  # 1 kept + 2 new, not 3 new
    assert [t.state for t in study.trials].count(optuna.trial.TrialState.FAIL) == 1
    assert study.trials[0].params == fixed_trial_params(CNN)


def test_a_changed_cohort_or_search_space_gets_a_new_study_name():
    X, y, cages = tiny_cohort()
    name = study_name("cnn", X, y, cages, CNN, TUNING)
    assert name == study_name("cnn", X.copy(), y, cages, CNN, TUNING)
    assert name != study_name("cnn", X + 1, y, cages, CNN, TUNING)
    assert name != study_name(
        "cnn", X, y, cages, CNN, TUNING.model_copy(update={"space": varied(DEMO.tuning.space, lr=(1e-3, 1e-2))})
    )
    assert name == study_name("cnn", X, y, cages, CNN, TUNING.model_copy(update={"n_trials": 5}))  # extends it
    other_storage = TUNING.model_copy(update={"storage": "postgresql://elsewhere/db"})
    assert name == study_name("cnn", X, y, cages, CNN, other_storage)
    dense = CNN.model_copy(update={"convolution": "dense", "threads": 2})  # how it computes, not what
    assert name == study_name("cnn", X, y, cages, dense, TUNING)


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study_and_train_only_reads_it(tmp_path, monkeypatch):
    """README's scaling out, on loopback: Optuna and the MLflow tracking server on one PostgreSQL."""
    import psycopg
    from helpers.cohort import BIN, cli, tiny_project
    from helpers.mlflow_server import running_mlflow
    from helpers.postgres import running_postgres

    with running_postgres(tmp_path) as url:
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as con:
            con.execute("CREATE DATABASE mlflow")
        backend = url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/mlflow"
        server = [BIN / "mlflow", "server", "--backend-store-uri", backend]
        server += ["--artifacts-destination", str(tmp_path / "mlartifacts"), "--workers", "1"]
        with running_mlflow(server, tmp_path / "mlflow_server.log") as tracking:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
            space = {"epochs": [20, 40], "lr": [0.005, 0.02], "channels": [2, 8]}
            tuning = {"n_trials": 4, "inner_folds": 2, "storage": url, "study": "shared", "space": space}
            tiny_project(tmp_path, {"tuning": tuning, "registry": {"model_name": "workers-test"}})
            cli("tune", "--workers", "2", cwd=tmp_path)
            summaries = optuna.get_all_study_summaries(url)
            assert len(summaries) == 3 + 1  # an outer fold per pair of cages, and the final model's study
            workers = set()
            for summary in summaries:
                study = optuna.load_study(study_name=summary.study_name, storage=url)
                assert n_finished(study) >= 4
                workers |= {t.user_attrs["worker"] for t in study.trials}
                settings = [tuple(sorted(t.params.items())) for t in study.trials]
                assert len(set(settings)) == len(settings)  # workers do not draw each other's settings
            assert len(workers) == 2  # both processes took trials from the shared studies
            before = sum(len(optuna.load_study(study_name=s.study_name, storage=url).trials) for s in summaries)
            cli("train", cwd=tmp_path)
            after = sum(len(optuna.load_study(study_name=s.study_name, storage=url).trials) for s in summaries)
            assert after == before  # the studies were finished: train only read their best settings
            client = mlflow.MlflowClient(tracking, registry_uri=tracking)
            version = client.get_model_version_by_alias("workers-test", "champion")
            assert client.get_run(version.run_id).info.artifact_uri.startswith("mlflow-artifacts:")  # the server's
            assert any((tmp_path / "mlartifacts").rglob("MLmodel"))  # stored where the server keeps artifacts
    assert (tmp_path / "reports/registered_model.json").exists() and (tmp_path / "reports/tuning_studies.csv").exists()


@pytest.mark.slow
def test_flat_tuning_is_tagged_selection_biased_and_never_promoted(tmp_path):
    from helpers.cohort import cli, tiny_project

    tuning = {
        "mode": "flat",
        "n_trials": 2,
        "storage": f"sqlite:///{tmp_path / 'optuna.db'}",
        "space": {"epochs": [5, 10]},
    }
    tiny_project(tmp_path, {"tuning": tuning, "registry": {"model_name": "flat-test"}})
    cli("train", cwd=tmp_path)
    final = json.loads((tmp_path / "reports/registered_model.json").read_text())
    assert (final["name"], final["version"], final["alias"]) == ("flat-test", "1", "challenger")  # even the first
    runs = mlflow.search_runs(experiment_names=["lmt-stereotype"], filter_string="tags.tuning = 'flat'")
    assert len(runs) > 0 and (runs["tags.selection_biased"] == "true").all()
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert summary.study_name.startswith("cnn-flat-") and summary.n_trials == 2  # one study for everything
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials[0].user_attrs["folds"]) == 3  # scored on the 3 balanced folds themselves


def test_fixed_settings_outside_the_search_space_are_named():
    cnn = CNN.model_copy(update={"epochs": 10, "transform": "raw", "channels": (64, 4)})
    tuning = TUNING.model_copy(update={"space": varied(DEMO.tuning.space, epochs=(20, 60), transform=("log1p",))})
    problems = outside_space(cnn, tuning)
    assert len(problems) == 3 and "cnn.epochs = 10" in problems[0] and "tuning.space.transform" in problems[1]
    assert outside_space(DEMO.cnn, DEMO.tuning) == []  # the defaults: the paper's settings are in the space


@pytest.mark.slow
def test_studies_run_in_parallel_processes_pick_exactly_what_one_process_picks(tmp_path, monkeypatch):
    from helpers.cohort import tiny_project

    from lmt_stereotype.config import load_params
    from lmt_stereotype.tuning_workers import run_studies

    trials = {}
    for processes in (1, 2):
        folder = tmp_path / f"p{processes}"
        storage = f"sqlite:///{folder / 'optuna.db'}"
        tiny_project(folder, {"tuning": {"n_trials": 3, "inner_folds": 2, "storage": storage}})
        monkeypatch.chdir(folder)
        run_studies(load_params(folder / "params.yaml"), processes=processes)
        trials[processes] = {
            s.study_name: [
                (t.params, t.value) for t in optuna.load_study(study_name=s.study_name, storage=storage).trials
            ]
            for s in optuna.get_all_study_summaries(storage)
        }
    assert len(trials[1]) == 3 + 1 and all(len(t) == 3 for t in trials[1].values())
    assert trials[2] == trials[1]
