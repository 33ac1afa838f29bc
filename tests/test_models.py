"""The paper's shallow CNN (shapes, hooks, reproducible training) and the PCA + 1-NN / SVM baselines."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from helpers.params import DEMO, varied
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_estimators_unfitted,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
    parametrize_with_checks,
)
from sklearn.utils.validation import check_is_fitted
from torch import nn

from lmt_stereotype.labels import PAPER_CLASSES
from lmt_stereotype.models import (
    CalibratedSVC,
    CNNClassifier,
    StopCNN,
    class_weights,
    load_cnn,
    make_baseline,
    patch_share,
    save_cnn,
    sparse_patches,
    torch_device,
    transform_stacks,
)

TINY = dict(kernel_sizes=(3, 5), channels=4, epochs=3, batch_size=4, threads=1)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """``threads=1`` keeps these tiny fits fast on a busy machine; other tests get torch's setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_data(seed: int = 0, n: int = 16, n_classes: int = len(PAPER_CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.poisson(1.0, size=(n, 4, 12, 12)).astype(np.float32), np.arange(n) % n_classes


def expected_features(grid: int, kernel_sizes: tuple[int, ...], channels: int, pool: int = 2) -> int:
    return sum(channels * ((grid - k + 1) // pool) ** 2 for k in kernel_sizes)


# --- the network ----------------------------------------------------------------------


def test_paper_network_sees_5072_features_and_gives_four_logits():
    model = StopCNN(72, 30, len(PAPER_CLASSES))
    assert model.n_features == 16 * 14 * 14 + 16 * 11 * 11 == 5072
    assert model.classifier.in_features == 5072
    assert model(torch.zeros(2, 72, 30, 30)).shape == (2, len(PAPER_CLASSES)) == (2, 4)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_the_network_gives_one_logit_per_class_of_the_target(n_classes):
    model = StopCNN(72, 30, n_classes)
    assert model.classifier.out_features == n_classes and model.n_features == 5072
    assert model(torch.zeros(2, 72, 30, 30)).shape == (2, n_classes)


@pytest.mark.parametrize(
    "T, N, kernel_sizes, channels",
    [(12, 30, (3, 9), 16), (5, 12, (3, 9), 16), (3, 20, (3, 5, 7), 4), (1, 4, (3,), 2)],
)
def test_other_stack_sizes_work_with_the_feature_count_of_the_formula(T, N, kernel_sizes, channels):
    model = StopCNN(T, N, 4, channels=channels, kernel_sizes=kernel_sizes)
    assert model.n_features == expected_features(N, kernel_sizes, channels)
    assert len(model.branches) == len(kernel_sizes)
    assert model(torch.rand(3, T, N, N)).shape == (3, 4)


@pytest.mark.parametrize("kernel_sizes", [(3, 31), (0, 3), (30,)])
def test_kernels_that_do_not_fit_the_grid_are_refused(kernel_sizes):
    with pytest.raises(ValueError, match="do not fit"):
        StopCNN(72, 30, 4, kernel_sizes=kernel_sizes)


def test_every_branch_has_its_own_conv_relu_and_pool_modules():
    model = StopCNN(72, 30, 4)
    first, second = model.branches
    for branch, k in ((first, 3), (second, 9)):
        assert isinstance(branch.conv, nn.Conv2d) and branch.conv.kernel_size == (k, k)
        assert isinstance(branch.relu, nn.ReLU)
        assert isinstance(branch.pool, nn.MaxPool2d)
    assert first.conv is not second.conv
    assert first.relu is not second.relu
    assert first.pool is not second.pool


def test_a_forward_hook_on_the_second_branch_relu_sees_its_activation_map():
    model = StopCNN(72, 30, 4)
    seen: list[torch.Size] = []
    handle = model.branches[1].relu.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    model(torch.rand(3, 72, 30, 30))
    handle.remove()
    assert seen == [torch.Size([3, 16, 22, 22])]  # 30 - 9 + 1 = 22, before pooling


# --- training -------------------------------------------------------------------------


def test_same_seed_gives_identical_probabilities_and_loss_curve():
    X, y = tiny_data()
    a = CNNClassifier(seed=3, **TINY).fit(X, y)
    b = CNNClassifier(seed=3, **TINY).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_


def test_fits_advanced_epoch_by_epoch_in_turn_equal_each_fit_alone():
    """A tuning trial trains its inner folds side by side, so it can be scored (and pruned) after any epoch."""
    (X1, y1), (X2, y2) = tiny_data(1), tiny_data(2)
    a, b = CNNClassifier(**TINY), CNNClassifier(**{**TINY, "lr": 0.01})
    with a.torch_threads():  # as fit runs them
        fits = [a.fit_epochs(X1, y1), b.fit_epochs(X2, y2)]
        for epoch in range(1, TINY["epochs"] + 1):
            assert [next(fit) for fit in fits] == [epoch, epoch]
            assert a.predict_proba(X1).shape == (len(X1), 4)  # usable midway
    alone_a, alone_b = CNNClassifier(**TINY).fit(X1, y1), CNNClassifier(**{**TINY, "lr": 0.01}).fit(X2, y2)
    np.testing.assert_array_equal(a.predict_proba(X1), alone_a.predict_proba(X1))
    np.testing.assert_array_equal(b.predict_proba(X2), alone_b.predict_proba(X2))
    assert a.loss_curve_ == alone_a.loss_curve_


def test_a_different_seed_gives_different_probabilities():
    X, y = tiny_data()
    a = CNNClassifier(seed=0, **TINY).fit(X, y)
    b = CNNClassifier(seed=1, **TINY).fit(X, y)
    assert not np.allclose(a.predict_proba(X), b.predict_proba(X))


def test_loss_curve_has_one_entry_per_epoch_and_probabilities_are_rows_summing_to_one():
    X, y = tiny_data()
    model = CNNClassifier(**TINY).fit(X, y)
    assert len(model.loss_curve_) == TINY["epochs"]
    assert all(np.isfinite(model.loss_curve_))
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 4)
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    np.testing.assert_array_equal(model.classes_, np.arange(len(PAPER_CLASSES)))


def test_a_two_class_cnn_gives_two_probabilities_and_n_classes_keeps_a_class_absent_from_training():
    X, y = tiny_data(n_classes=2)
    model = CNNClassifier(**TINY).fit(X, y)
    assert model.predict_proba(X).shape == (len(X), 2) and model.classes_.tolist() == [0, 1]
    X, y = tiny_data(n_classes=3)  # classes 0, 1, 2 of a 4-class target: the last one never trained on
    model = CNNClassifier(**TINY, n_classes=4).fit(X, y)
    assert model.predict_proba(X).shape == (len(X), 4) and model.classes_.tolist() == [0, 1, 2, 3]
    assert CNNClassifier(**TINY).fit(X, y).classes_.tolist() == [0, 1, 2]  # None: up to the largest label


def test_balanced_class_weights_weigh_the_classes_alike_and_zero_an_absent_one():
    y = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(class_weights(y, "balanced", 2), [4 / 6, 4 / 2])
    np.testing.assert_allclose(class_weights(y, "balanced", 3), [4 / 6, 4 / 2, 0.0])  # class 2 absent
    np.testing.assert_allclose(class_weights(y, "none", 3), [1.0, 1.0, 1.0])
    weights = class_weights(y, "balanced", 2)
    assert (weights[y]).mean() == pytest.approx(1.0)  # the mean weight per recording stays 1


def planted(seed: int, n: int = 40, T: int = 4, N: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Poisson stacks where class k stops more often in its own quadrant of the cage."""
    rng = np.random.default_rng(seed)
    h = N // 2
    y = np.arange(n) % len(PAPER_CLASSES)
    X = rng.poisson(1.0, size=(n, T, N, N)).astype(np.float32)
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        X[i, :, r * h : (r + 1) * h, c * h : (c + 1) * h] += rng.poisson(4.0, size=(T, h, h))
    return X, y


def test_cnn_learns_a_planted_quadrant_signal_with_the_paper_learning_rate():
    X, y = planted(seed=0)
    model = CNNClassifier(kernel_sizes=(3, 5), channels=4, epochs=30, seed=0, threads=1).fit(X, y)
    assert np.mean(model.predict(X) == y) > 0.9
    assert model.loss_curve_[-1] < model.loss_curve_[0] / 10
    X_new, y_new = planted(seed=1)  # fresh recordings of the same design
    assert np.mean(model.predict(X_new) == y_new) > 0.9


def test_from_params_takes_the_network_and_training_settings_of_the_cnn_section():
    params = varied(DEMO.cnn, channels=(4, 4), kernel_sizes=(3, 5), epochs=7, lr=0.05, seed=11, n_permutations=3)
    model = CNNClassifier.from_params(params, 2)
    assert (model.channels, model.kernel_sizes, model.epochs, model.lr, model.seed) == ((4, 4), (3, 5), 7, 0.05, 11)
    assert model.n_classes == 2
    assert not hasattr(model, "n_permutations")


def test_the_device_auto_is_the_gpu_only_when_torch_sees_one():
    assert torch_device("cpu").type == "cpu"
    assert torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cnn.device is cuda but torch sees no GPU"):
            torch_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_a_cnn_trained_on_the_gpu_repeats_itself_exactly_and_agrees_with_the_cpu_closely(tmp_path):
    X, y = tiny_data()
    a, b = (CNNClassifier(device="cuda", **TINY).fit(X, y) for _ in range(2))
    cpu = CNNClassifier(device="cpu", **TINY).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))  # cuDNN's deterministic algorithms
    np.testing.assert_allclose(a.predict_proba(X), cpu.predict_proba(X), atol=1e-4)  # not bit-identical
    save_cnn(a, (4, 12), PAPER_CLASSES, tmp_path / "gpu.npz")  # saved from the GPU, loaded on the CPU
    np.testing.assert_allclose(load_cnn(tmp_path / "gpu.npz")[0].predict_proba(X), a.predict_proba(X), atol=1e-6)


# --- the sparse first layer -----------------------------------------------------------


def sparse_data(seed: int = 0, n: int = 16, share: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Stacks where few cells hold stops, as the demo's (2.4% of cells)."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, 4, 12, 12)) < share) * rng.poisson(2.0, size=(n, 4, 12, 12)).clip(1)
    return X.astype(np.float32), np.arange(n) % len(PAPER_CLASSES)


def test_sparse_patches_times_the_weights_is_the_convolution_and_give_its_weight_gradient():
    X, _ = sparse_data()
    x = torch.from_numpy(X)
    model = StopCNN(4, 12, 4, channels=3, kernel_sizes=(3, 5))
    patches = sparse_patches(x, (3, 5))
    for branch, k in zip(model.branches, (3, 5)):
        dense = branch(x)
        dense.square().sum().backward()
        grad, branch.conv.weight.grad, branch.conv.bias.grad = branch.conv.weight.grad, None, None
        sparse = branch.forward_patches([p[k] for p in patches])
        sparse.square().sum().backward()
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(branch.conv.weight.grad, grad, rtol=1e-5, atol=1e-5)
    assert model.forward_patches(patches).shape == (len(X), 4)


def test_the_patch_share_counts_a_cell_once_per_window_covering_it():
    corner = torch.zeros(1, 1, 12, 12)
    corner[0, 0, 0, 0] = 1.0  # in one 5 x 5 window of 8 x 8
    assert patch_share(corner, (5,), (1,)) == pytest.approx(1 / (25 * 64))
    centre = torch.zeros(1, 1, 12, 12)
    centre[0, 0, 6, 6] = 1.0  # in 25 of them
    assert patch_share(centre, (5,), (1,)) == pytest.approx(25 / (25 * 64))
    nnz = sum(p[5][0].values().numel() for p in sparse_patches(centre + corner, (5,)))
    assert nnz == 26
    X, _ = sparse_data(share=0.03)
    assert 0.01 < patch_share(torch.from_numpy(X), (3, 5), (4, 4)) < 0.03  # border cells count less


def test_sparse_training_equals_dense_training_within_float_rounding_and_repeats_itself_exactly():
    """Summed in another order, not bit for bit: the tolerance is float32 rounding grown over 3 epochs."""
    X, y = sparse_data()
    dense = CNNClassifier(convolution="dense", **TINY).fit(X, y)
    a, b = (CNNClassifier(convolution="sparse", **TINY).fit(X, y) for _ in range(2))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_allclose(a.predict_proba(X), dense.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(a.loss_curve_, dense.loss_curve_, rtol=1e-5)
    for p, q in zip(a.module_.parameters(), dense.module_.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    patches = sparse_patches(a.to_tensor(X), TINY["kernel_sizes"])
    np.testing.assert_allclose(a.predict_proba(X, patches), a.predict_proba(X), atol=1e-6)


def test_auto_trains_sparse_stacks_sparse_and_dense_ones_dense_on_the_cpu():
    sparse_X, _ = sparse_data()
    dense_X, _ = tiny_data()
    auto = CNNClassifier(**TINY)
    assert auto.trains_sparse(auto.to_tensor(sparse_X))
    assert not auto.trains_sparse(auto.to_tensor(dense_X))
    assert CNNClassifier(convolution="sparse", **TINY).trains_sparse(auto.to_tensor(dense_X))
    assert not CNNClassifier(convolution="dense", **TINY).trains_sparse(auto.to_tensor(sparse_X))


def test_patches_built_once_for_many_recordings_serve_any_subset_of_them():
    """As a tuning study builds them once and hands each inner fold its rows."""
    X, y = sparse_data(n=24)
    subset = np.arange(0, 24, 2)
    patches = sparse_patches(CNNClassifier(**TINY).to_tensor(X), TINY["kernel_sizes"])
    shared = CNNClassifier(convolution="sparse", **TINY)
    with shared.torch_threads():
        for _ in shared.fit_epochs(X[subset], y[subset], [patches[i] for i in subset]):
            pass
    alone = CNNClassifier(convolution="sparse", **TINY).fit(X[subset], y[subset])
    np.testing.assert_array_equal(shared.predict_proba(X), alone.predict_proba(X))
    with pytest.raises(ValueError, match="12 recordings' patches for 24 stacks"):
        next(CNNClassifier(convolution="sparse", **TINY).fit_epochs(X, y, [patches[i] for i in subset]))
    with pytest.raises(ValueError, match="12 recordings' patches for 24 stacks"):
        shared.predict_proba(X, [patches[i] for i in subset])


# --- input transforms -----------------------------------------------------------------


def test_raw_transform_leaves_counts_unchanged_as_float32():
    X = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    out = transform_stacks(X, "raw")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, X)


def test_log1p_transform_is_numpy_log1p():
    X = np.random.default_rng(0).poisson(3.0, size=(2, 3, 4, 4))
    out = transform_stacks(X, "log1p")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.log1p(X), rtol=1e-6)


def test_per_recording_transform_gives_each_recording_mean_one_and_leaves_an_empty_one_empty():
    rng = np.random.default_rng(0)
    X = rng.poisson(2.0, size=(3, 3, 4, 4)).astype(np.float32)
    X[1] *= 10  # a busier recording: scaled back to the same mean
    X[2] = 0
    out = transform_stacks(X, "per_recording")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:2].mean(axis=(1, 2, 3)), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)
    np.testing.assert_allclose(out[0], X[0] / X[0].mean(), rtol=1e-6)


# --- baselines ------------------------------------------------------------------------


def test_knn_baseline_is_pca_with_three_components_then_one_nearest_neighbour():
    pipe = make_baseline("knn", DEMO.baselines)
    assert isinstance(pipe, Pipeline)
    assert [name for name, _ in pipe.steps] == ["flatten", "pca", "knn"]
    assert isinstance(pipe[-2], PCA) and pipe[-2].n_components == 3
    assert isinstance(pipe[-1], KNeighborsClassifier) and pipe[-1].n_neighbors == 1


def test_svm_baseline_is_pca_then_a_calibrated_svc():
    pipe = make_baseline("svm", DEMO.baselines)
    assert [name for name, _ in pipe.steps] == ["flatten", "pca", "svm"]
    assert isinstance(pipe[-2], PCA) and pipe[-2].n_components == 3
    assert isinstance(pipe[-1], CalibratedSVC)
    assert (pipe[-1].kernel, pipe[-1].C) == ("rbf", 1.0)


def test_the_svm_calibrates_on_as_many_folds_as_its_smallest_class_allows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)) + np.repeat(np.eye(4, 3) * 4, 10, axis=0)
    y = np.repeat(np.arange(4), 10)
    big = CalibratedSVC().fit(X, y)
    assert isinstance(big.model_, CalibratedClassifierCV) and big.model_.cv == 3
    assert (big.predict(X) == y).mean() > 0.9
    np.testing.assert_allclose(big.predict_proba(X).sum(axis=1), 1)
    keep = np.r_[0:10, 10:12, 20:30, 30:40]  # JM has two training recordings
    assert CalibratedSVC().fit(X[keep], y[keep]).model_.cv == 2
    keep = np.r_[0:10, 10:11, 20:30, 30:40]  # JM has one: no calibration, 0/1 probabilities
    lone = CalibratedSVC().fit(X[keep], y[keep])
    assert isinstance(lone.model_, SVC)
    assert set(np.unique(lone.predict_proba(X))) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", ["knn", "svm"])
def test_standard_scaling_inserts_a_scaler_before_pca(kind):
    pipe = make_baseline(kind, varied(DEMO.baselines, scaling="standard"))
    assert [name for name, _ in pipe.steps] == ["flatten", "scale", "pca", kind]
    assert isinstance(pipe.named_steps["scale"], StandardScaler)


@pytest.mark.parametrize("kind", ["knn", "svm"])
def test_baselines_fit_stacks_and_predict_class_indices(kind):
    X, y = tiny_data(n=24)
    pipe = make_baseline(kind, DEMO.baselines).fit(X, y)
    assert set(pipe.predict(X)) <= set(range(len(PAPER_CLASSES)))
    np.testing.assert_allclose(pipe.predict_proba(X).sum(axis=1), 1.0)
    if kind == "knn":  # 1-NN on its own training points
        np.testing.assert_array_equal(pipe.predict(X), y)


def test_an_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("forest", DEMO.baselines)


@pytest.mark.parametrize("classes", [PAPER_CLASSES, ("KO", "WT")], ids=["class", "genotype"])
def test_a_saved_cnn_loads_back_with_its_classes_and_the_same_predictions(tmp_path, classes):
    X, y = tiny_data(seed=3, n_classes=len(classes))
    model = CNNClassifier(channels=(4, 6), kernel_sizes=(3, 5), epochs=3, threads=1, n_classes=len(classes)).fit(X, y)
    save_cnn(model, X.shape[1:3], classes, tmp_path / "cnn.npz")
    loaded, loaded_classes = load_cnn(tmp_path / "cnn.npz")
    assert loaded_classes == classes
    assert loaded.get_params() == {**model.get_params(), "threads": 0}
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    save_cnn(loaded, X.shape[1:3], loaded_classes, tmp_path / "again.npz")  # byte-identical: DVC sees no change
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "cnn.npz").read_bytes()


def test_a_cnn_is_not_saved_with_classes_it_has_no_output_for(tmp_path):
    X, y = tiny_data(n_classes=2)
    model = CNNClassifier(**TINY).fit(X, y)
    with pytest.raises(ValueError, match="the CNN has 2 outputs, not one per class of"):
        save_cnn(model, X.shape[1:3], PAPER_CLASSES, tmp_path / "cnn.npz")


# --- scikit-learn's estimator contract ------------------------------------------------

SVC_EXPECTED_FAILURES = {
    "check_class_weight_classifiers": "the calibration, fitted on unweighted held-out folds, undoes an extreme class "
    "weight: under {0: 1000, 1: 1e-4} the SVM's scores barely vary and the majority class wins",
}


@parametrize_with_checks([CalibratedSVC()], expected_failed_checks=lambda _: SVC_EXPECTED_FAILURES, xfail_strict=True)
def test_the_calibrated_svc_passes_sklearns_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("class_weight, svm_weight", [("balanced", "balanced"), ("none", None), ({0: 2}, {0: 2})])
def test_the_svm_gets_the_class_weight(class_weight, svm_weight):
    X, y = np.random.default_rng(0).normal(size=(12, 2)), np.arange(12) % 2
    assert CalibratedSVC(class_weight=class_weight).fit(X, y).model_.estimator.class_weight == svm_weight


# check_estimator feeds 2-D feature matrices (n, d); the CNN takes stacks (n, T, N, N), so its tags say
# two_d_array=False and check_estimator runs nothing on it. These checks need no data (the get_params /
# set_params / clone contract, tags, repr) or call predict unfitted only: they apply as they are. The
# tests after them ask what the data-fed checks ask of fit (returns self, leaves its parameters alone,
# fitted attributes end in "_", idempotent, picklable) on tiny stacks. Not applicable: n_features_in_
# (there is no feature axis), 1-D / 2-D / sparse / non-array / NaN / complex / object input, label
# encoding (y holds class indices and classes_ is always every class) and sample weights (fit takes none).
CNN_CHECKS = [
    check_estimator_cloneable,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_valid_tag_types,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_get_params_invariance,
    check_set_params,
    check_do_not_raise_errors_in_init_or_set_params,
    check_mixin_order,
    check_estimators_unfitted,
]


@pytest.mark.parametrize("check", CNN_CHECKS, ids=lambda check: check.__name__)
def test_the_cnn_passes_sklearns_checks_that_need_no_feature_matrix(check):
    check("CNNClassifier", CNNClassifier(**TINY))


def test_cnn_fit_returns_the_model_adds_only_fitted_attributes_and_leaves_its_parameters_alone():
    X, y = tiny_data()
    model = CNNClassifier(**TINY)
    params = model.get_params()
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert model.fit(X, y) is model
    check_is_fitted(model)
    assert model.get_params() == params
    assert all(name.endswith("_") for name in set(vars(model)) - set(params))


def test_a_refitted_cnn_is_a_fresh_fit_and_survives_pickling():
    X, y = tiny_data()
    model = CNNClassifier(**TINY).fit(*tiny_data(seed=1)).fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), clone(model).fit(X, y).predict_proba(X))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(X), model.predict_proba(X))
