"""Optuna tuning nested in the cage folds: no trial ever sees the outer test cage."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from lmt_stereotype.config import CNNParams, SearchSpace, TuningParams
from lmt_stereotype.evaluation import leave_one_cage_out
from lmt_stereotype.tuning import (
    Objective,
    fixed_setting,
    inner_folds,
    n_finished,
    nested_cross_validate,
    study_name,
    tune,
)

CNN = CNNParams(channels=4, kernel_sizes=(3, 5), epochs=2, batch_size=4, threads=1)
TUNING = TuningParams(n_trials=2, inner_folds=2, space=SearchSpace(epochs=(1, 3)))


def tiny_cohort(n_cages: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cages of 8 recordings (4 mice x 2 ages), half the cages male, with a planted quadrant per class."""
    rng = np.random.default_rng(0)
    cages = np.repeat([f"c{c}" for c in range(n_cages)], 8)
    female = np.repeat(np.arange(n_cages) >= n_cages // 2, 8)
    y = 2 * female.astype(int) + np.tile([0, 1], 4 * n_cages)
    X = rng.poisson(0.3, size=(len(y), 2, 10, 10)).astype(np.float32)
    for k, label in enumerate(y):
        r, c = divmod(label, 2)
        X[k, :, 5 * r : 5 * r + 5, 5 * c : 5 * c + 5] += 2
    return X, y, cages


@pytest.fixture
def storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def test_inner_folds_split_the_training_cages_without_sharing_one():
    _, _, cages = tiny_cohort(5)
    folds = inner_folds(cages, 3)
    assert len(folds) == 3
    for fold in folds:
        assert not set(cages[fold.train]) & set(cages[fold.test])
    assert sorted(np.concatenate([f.test for f in folds])) == list(range(len(cages)))


def test_nested_tuning_never_shows_a_trial_the_outer_test_cage(storage):
    X, y, cages = tiny_cohort()
    for outer in leave_one_cage_out(cages):
        name = study_name("cnn", X[outer.train], y[outer.train], cages[outer.train], CNN, TUNING)
        study = tune(X[outer.train], y[outer.train], cages[outer.train], CNN, TUNING, storage, name)
        assert n_finished(study) == 2
        for trial in study.trials:
            assert outer.name not in trial.user_attrs["cages"]
            assert set(trial.user_attrs["cages"]) == set(cages[outer.train])


def test_nested_cross_validation_predicts_each_cage_with_settings_tuned_without_it(storage):
    X, y, cages = tiny_cohort()
    outer = leave_one_cage_out(cages)
    cnn = CNN.model_copy(update={"epochs": 20, "lr": 0.01})
    tuning = TUNING.model_copy(update={"space": SearchSpace(epochs=(15, 25), lr=(0.005, 0.02))})
    result, studies = nested_cross_validate(X, y, cages, outer, cnn, tuning, storage)
    assert set(studies) == set(np.unique(cages))
    for fold in outer:
        assert (result.fold[fold.test] == fold.name).all()
        assert all(fold.name not in trial.user_attrs["cages"] for trial in studies[fold.name].trials)
    assert (result.y_pred >= 0).all()
    np.testing.assert_allclose(result.proba.sum(axis=1), 1, rtol=1e-5)
    assert result.accuracy > 0.5  # the planted quadrants are easy


def test_the_fixed_setting_is_the_first_trial(storage):
    X, y, cages = tiny_cohort()
    study = tune(X, y, cages, CNN, TUNING, storage, "first")
    assert study.trials[0].params == fixed_setting(CNN)
    assert len(study.trials) == 2 and study.trials[1].params != study.trials[0].params


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
        tune(X, y, cages, CNN, tuning, storage, "resumable")
    monkeypatch.undo()
    assert n_finished(optuna.load_study(study_name="resumable", storage=storage)) == 1
    study = tune(X, y, cages, CNN, tuning, storage, "resumable")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3  # 1 kept + 2 new, not 3 new
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert study.trials[0].params == fixed_setting(CNN)


def test_a_changed_cohort_or_search_space_gets_a_new_study_name():
    X, y, cages = tiny_cohort()
    name = study_name("cnn", X, y, cages, CNN, TUNING)
    assert name == study_name("cnn", X.copy(), y, cages, CNN, TUNING)
    assert name != study_name("cnn", X + 1, y, cages, CNN, TUNING)
    assert name != study_name("cnn", X, y, cages, CNN, TUNING.model_copy(update={"n_trials": 5}))
    other_storage = TUNING.model_copy(update={"storage": "postgresql://elsewhere/db"})
    assert name == study_name("cnn", X, y, cages, CNN, other_storage)
