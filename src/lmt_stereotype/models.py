"""The classifiers: the paper's shallow CNN and the PCA + 1-NN / SVM baselines.

All of them are scikit-learn estimators taking stacks ``X`` of shape (n, T, N, N) and
class indices ``y`` (order of the target's classes, :mod:`~lmt_stereotype.labels`), so one
cross-validation routine evaluates every model the same way.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from lmt_stereotype.config import (
    BaselineParams,
    ClassWeight,
    CNNParams,
    Convolution,
    Device,
    Transform,
    branch_widths,
)
from lmt_stereotype.files import save_npz


def class_weights(y: np.ndarray, kind: ClassWeight, n_classes: int) -> np.ndarray:
    """Per-class loss weights of a training set: ``balanced`` gives each present class n / (k * n_class)
    (scikit-learn's rule: the classes weigh alike, the mean weight per recording stays 1); ``none`` ones."""
    counts = np.bincount(np.asarray(y), minlength=n_classes).astype(np.float64)
    if kind == "none":
        return np.ones(n_classes)
    present = counts > 0
    return np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)


def torch_device(device: Device) -> torch.device:
    """``auto``: the GPU when torch sees one, else the CPU; ``cuda`` without a GPU is an error, not a silent CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("cnn.device is cuda but torch sees no GPU (torch.cuda.is_available() is False)")
    return torch.device(device)


def transform_stacks(X: np.ndarray, kind: Transform) -> np.ndarray:
    """Per-recording input transform (float32); it learns nothing, so it cannot leak a test cage."""
    X = np.asarray(X, dtype=np.float32)
    if kind == "raw":
        return X
    if kind == "log1p":
        return np.log1p(X)
    axes = tuple(range(1, X.ndim))
    mean = X.mean(axis=axes, keepdims=True)
    return X / np.where(mean > 0, mean, 1.0)


SPARSE_BELOW = 0.04
"""``convolution: auto`` trains on sparse patches when at most this share of the patches'
cells is non-zero (:func:`patch_share`; the demo's is 1.6%). Measured on 53 demo-shaped
stacks (benchmarks/first_layer.py): an epoch takes 0.5x the dense time at 1.6%, and the
two break even near 9%; building the patches, once per fit (or per study when tuning),
costs about as much as 3 epochs at 2% and 7 at 5%, so a 40-epoch fit breaks even near 5%."""

RecordingPatches = dict[int, tuple[torch.Tensor, torch.Tensor]]
"""One recording's patches: per kernel size k, its im2col matrix (out², T k²) and that
matrix's transpose (T k², out²), both sparse CSR, where out = N - k + 1."""


def patch_share(inputs: torch.Tensor, kernel_sizes: Sequence[int], widths: Sequence[int]) -> float:
    """Non-zero share of the im2col matrices of ``inputs`` (n, T, N, N), over the branches
    weighted by their work: the sparse convolution's work relative to the dense one's.

    A cell counts once per window that covers it, so cells on the border (where mice
    stop most) count less than the stacks' own non-zero share would say.
    """
    n, T, N, _ = inputs.shape
    occupied = (inputs != 0).sum(dim=(0, 1)).double()
    index = torch.arange(N)
    sparse = dense = 0.0
    for k, width in zip(kernel_sizes, widths):
        out = N - k + 1
        cover = (index.clamp(max=out - 1) - (index - k + 1).clamp(min=0) + 1).double()
        sparse += width * float(cover @ occupied @ cover)
        dense += width * n * T * k * k * out * out
    return sparse / dense


def sparse_patches(inputs: torch.Tensor, kernel_sizes: Sequence[int]) -> list[RecordingPatches]:
    """Each recording's non-zero cells as sparse im2col matrices, one per kernel size.

    Row p * out + q of a matrix is the k x k window at (p, q) of every interval; column
    t k² + a k + b its cell (t, p + a, q + b), the order of a convolution weight's
    (T, k, k). A convolution is then this matrix times the weights, and its weight
    gradient the transpose times the output gradient: work in proportion to the non-zero
    cells (2.4% on the demo), where a dense convolution touches every cell. Built once for
    a set of recordings, vectorised; a recording's patches depend on it alone, so any
    subset of recordings (a fold) can take its rows of the list.
    """
    n, T, N, _ = inputs.shape
    sample, interval, i, j = inputs.nonzero(as_tuple=True)
    values = inputs[sample, interval, i, j]
    patches: list[RecordingPatches] = [{} for _ in range(n)]
    for k in kernel_sizes:
        out = N - k + 1
        a, b = torch.arange(k).repeat_interleave(k), torch.arange(k).repeat(k)
        p, q = i[:, None] - a, j[:, None] - b
        inside = (p >= 0) & (p < out) & (q >= 0) & (q < out)
        s = sample[:, None].expand_as(p)[inside]
        window = (p * out + q)[inside]
        cell = (interval[:, None] * k * k + a * k + b)[inside]
        v = values[:, None].expand_as(p)[inside]
        rows = _csr_blocks(s, window, cell, v, n, (out * out, T * k * k))
        columns = _csr_blocks(s, cell, window, v, n, (T * k * k, out * out))
        for recording, block, transposed in zip(patches, rows, columns):
            recording[k] = (block, transposed)
    return patches


def _csr_blocks(
    sample: torch.Tensor, row: torch.Tensor, col: torch.Tensor, value: torch.Tensor, n: int, shape: tuple[int, int]
) -> list[torch.Tensor]:
    """One CSR matrix of ``shape`` per sample from the (sample, row, col, value) entries (no duplicates)."""
    R, C = shape
    order = torch.argsort((sample * R + row) * C + col)
    col, value = col[order], value[order]
    crow = torch.zeros(n * R + 1, dtype=torch.long)
    crow[1:] = torch.bincount(sample * R + row, minlength=n * R).cumsum(0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": used knowingly, tested against dense
        warnings.simplefilter("ignore", UserWarning)
        return [
            torch.sparse_csr_tensor(
                (crow[s * R : (s + 1) * R + 1] - crow[s * R]).int(),
                col[crow[s * R] : crow[(s + 1) * R]].int(),
                value[crow[s * R] : crow[(s + 1) * R]],
                shape,
                check_invariants=False,
            )
            for s in range(n)
        ]


def _check_patches(patches: Sequence[RecordingPatches], X: np.ndarray) -> None:
    """Patches handed in beside stacks must be theirs, one per recording."""
    if len(patches) != len(X):
        raise ValueError(f"{len(patches)} recordings' patches for {len(X)} stacks")


class PatchConvolution(torch.autograd.Function):
    """A valid convolution (no bias) over a batch's sparse patches, returning (B, out², C).

    Forward: each recording's im2col matrix times the weights; backward: the weight's
    gradient only, the transposed matrices times the output gradient, summed over the batch
    in batch order (so deterministic). The input is data, so it gets no gradient.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, rows: list[torch.Tensor], columns: list[torch.Tensor]) -> torch.Tensor:
        ctx.columns, ctx.shape = columns, weight.shape
        w = weight.reshape(weight.shape[0], -1).t().contiguous()
        return torch.stack([block @ w for block in rows])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous()
        total = ctx.columns[0] @ grad[0]
        for block, g in zip(ctx.columns[1:], grad[1:]):
            total.addmm_(block, g)
        return total.t().reshape(ctx.shape), None, None


class Branch(nn.Module):
    """Conv -> ReLU -> max-pool, each its own module so hooks and Captum can reach every output."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, pool: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, kernel_size)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.conv(x)))

    def forward_patches(self, patches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """:meth:`forward` over a batch's sparse patches for this kernel (the same function)."""
        rows, columns = zip(*patches)
        out = PatchConvolution.apply(self.conv.weight, list(rows), list(columns)) + self.conv.bias
        side = int(round(out.shape[1] ** 0.5))
        return self.pool(self.relu(out.view(len(rows), side, side, -1).permute(0, 3, 1, 2)))


class StopCNN(nn.Module):
    """The paper's network: parallel conv branches over a (T, N, N) stack, concatenated, one linear layer.

    The T time intervals are the input channels. For T = 72, N = 30 and kernels 3 and 9
    the classifier sees 16*14*14 + 16*11*11 = 5072 features.
    """

    def __init__(
        self,
        n_intervals: int,
        grid: int,
        n_classes: int,
        channels: int | Sequence[int] = 16,
        kernel_sizes: tuple[int, ...] = (3, 9),
        pool: int = 2,
    ):
        super().__init__()
        if min(kernel_sizes) < 1 or max(kernel_sizes) > grid or (grid - max(kernel_sizes) + 1) < pool:
            raise ValueError(f"kernels {kernel_sizes} with pool {pool} do not fit a {grid} x {grid} grid")
        widths = branch_widths(channels, kernel_sizes)
        self.kernel_sizes = tuple(kernel_sizes)
        self.branches = nn.ModuleList(Branch(n_intervals, c, k, pool) for c, k in zip(widths, kernel_sizes))
        self.n_features = sum(c * ((grid - k + 1) // pool) ** 2 for c, k in zip(widths, kernel_sizes))
        self.classifier = nn.Linear(self.n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([branch(x).flatten(1) for branch in self.branches], dim=1))

    def forward_patches(self, patches: Sequence[RecordingPatches]) -> torch.Tensor:
        """:meth:`forward` over a batch of recordings' :func:`sparse_patches` (training on sparse stacks)."""
        features = [
            branch.forward_patches([recording[k] for recording in patches]).flatten(1)
            for branch, k in zip(self.branches, self.kernel_sizes)
        ]
        return self.classifier(torch.cat(features, dim=1))


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """:class:`StopCNN` trained with cross-entropy and SGD for a fixed number of epochs.

    A fixed epoch count (no early stopping) means nothing is chosen by looking at the
    held-out cage. ``class_weight: balanced`` weights the cross-entropy by inverse class
    frequency in the training set, so a class with fewer training recordings is not
    predicted less for that alone. Same ``seed``, same weights and predictions on the CPU
    (on a GPU, identical from run to run with cuDNN's deterministic algorithms, which
    ``fit`` selects, but not to the last bit equal to the CPU's). On the CPU, sparse stacks
    train through :func:`sparse_patches` (``convolution``): the same network and gradients,
    summed in another order, so equal to the dense fit within float rounding, not bit for bit.
    ``loss_curve_`` holds the mean (weighted) training loss of each epoch.

    ``X`` is a stack per recording, (n, T, N, N), not a feature matrix: the estimator's
    tags say it takes no 2-D input, and it has no ``n_features_in_``. ``classes_`` is
    always every class index of the ``n_classes`` (None: those up to the largest in the
    training labels), whichever the training labels hold.
    """

    def __init__(
        self,
        channels: int | tuple[int, ...] = 16,
        kernel_sizes: tuple[int, ...] = (3, 9),
        pool: int = 2,
        transform: Transform = "log1p",
        epochs: int = 40,
        batch_size: int = 8,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        class_weight: ClassWeight = "balanced",
        seed: int = 0,
        threads: int = 0,
        device: Device = "cpu",
        convolution: Convolution = "auto",
        n_classes: int | None = None,
    ):
        self.channels = channels
        self.kernel_sizes = kernel_sizes
        self.pool = pool
        self.transform = transform
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.seed = seed
        self.threads = threads
        self.device = device
        self.convolution = convolution
        self.n_classes = n_classes

    @classmethod
    def from_params(cls, params: CNNParams, n_classes: int) -> CNNClassifier:
        fields = cls._get_param_names()
        return cls(**{k: v for k, v in params.model_dump().items() if k in fields}, n_classes=n_classes)

    def to_tensor(self, X: np.ndarray) -> torch.Tensor:
        """Stacks as the network's input: transformed, float32, channels-last."""
        return torch.from_numpy(transform_stacks(X, self.transform)).contiguous(memory_format=torch.channels_last)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # stacks (n, T, N, N)
        return tags

    @contextmanager
    def torch_threads(self) -> Iterator[None]:
        """Run torch on ``threads`` CPU threads inside (0: torch's setting), restored on the way out."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads or before)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def trains_sparse(self, inputs: torch.Tensor) -> bool:
        """Whether a fit on these (transformed) inputs convolves sparse patches: ``convolution``
        sparse, or auto with a :func:`patch_share` of at most :data:`SPARSE_BELOW`; on the CPU only."""
        if torch_device(self.device).type != "cpu" or self.convolution == "dense":
            return False
        widths = branch_widths(self.channels, self.kernel_sizes)
        return self.convolution == "sparse" or patch_share(inputs, self.kernel_sizes, widths) <= SPARSE_BELOW

    def fit(self, X: np.ndarray, y: np.ndarray) -> CNNClassifier:
        with self.torch_threads():
            for _ in self.fit_epochs(X, y):
                pass
        return self

    def fit_epochs(
        self, X: np.ndarray, y: np.ndarray, patches: Sequence[RecordingPatches] | None = None
    ) -> Iterator[int]:
        """Train as :meth:`fit` does, pausing after each epoch (yielding how many are done) with
        a usable model, so that a tuning trial can score it midway and stop a poor setting early.

        Each fit draws only from its own seeded generator, so fits advanced in turn (a
        trial's inner folds) give exactly what each gives alone, under the same
        :meth:`torch_threads` as :meth:`fit` (the caller's to enter). ``patches``:
        :func:`sparse_patches` of ``X`` under this ``transform``, row for row, built once by
        a caller that fits the same recordings many times (a tuning study); else built here
        when :meth:`trains_sparse`.
        """
        _, T, N, _ = X.shape
        n_classes = self.n_classes or int(np.max(y)) + 1
        self.classes_ = np.arange(n_classes)
        device = torch_device(self.device)
        if device.type == "cuda":  # deterministic convolutions; the 2 x 2 pools never overlap, so no atomics race
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)  # on the CPU: the same batches on any device
        model = StopCNN(T, N, n_classes, self.channels, tuple(self.kernel_sizes), self.pool)
        model = model.to(device, memory_format=torch.channels_last)
        optimiser = torch.optim.SGD(
            model.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        inputs = self.to_tensor(X).to(device)
        if not self.trains_sparse(inputs):
            patches = None
        elif patches is None:
            patches = sparse_patches(inputs, self.kernel_sizes)
        else:
            _check_patches(patches, X)
        targets = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
        weights = torch.as_tensor(class_weights(y, self.class_weight, n_classes), dtype=torch.float32, device=device)
        loss_fn = nn.CrossEntropyLoss(weight=weights, reduction="sum")
        self.loss_curve_: list[float] = []
        self.module_ = model
        for epoch in range(1, self.epochs + 1):
            model.train()
            total = torch.zeros((), dtype=torch.float64, device=device)
            for batch in torch.randperm(len(targets), generator=generator).split(self.batch_size):
                batch = batch.to(device)
                optimiser.zero_grad(set_to_none=True)
                if patches is None:
                    logits = model(inputs[batch])
                else:
                    logits = model.forward_patches([patches[i] for i in batch.tolist()])
                loss = loss_fn(logits, targets[batch])
                (loss / len(batch)).backward()
                optimiser.step()
                total += loss.detach()
            self.loss_curve_.append(total.item() / len(targets))
            model.eval()
            yield epoch

    def predict_proba(self, X: np.ndarray, patches: Sequence[RecordingPatches] | None = None) -> np.ndarray:
        """Class probabilities; through ``patches`` of ``X`` (:meth:`fit_epochs`'), if given, on the CPU."""
        check_is_fitted(self)
        device = next(self.module_.parameters()).device
        with self.torch_threads(), torch.inference_mode():
            if patches is not None and device.type == "cpu":
                _check_patches(patches, X)
                logits = self.module_.forward_patches(patches)
            else:
                logits = self.module_(self.to_tensor(X).to(device))
            return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)

    def predict(self, X: np.ndarray, patches: Sequence[RecordingPatches] | None = None) -> np.ndarray:
        return self.predict_proba(X, patches).argmax(axis=1)


def model_settings(classifier: CNNClassifier) -> dict:
    """What defines a CNN, as plain JSON values: its settings with one width per branch, without
    ``threads``, ``device`` and ``convolution`` (how the machine computes, not the model) and
    ``n_classes`` (the target's, kept beside)."""
    settings = classifier.get_params()
    for how in ("threads", "device", "convolution"):
        settings.pop(how)
    settings.pop("n_classes")
    settings["channels"] = list(branch_widths(settings["channels"], settings["kernel_sizes"]))
    settings["kernel_sizes"] = list(settings["kernel_sizes"])
    return settings


def save_cnn(classifier: CNNClassifier, grid: tuple[int, int], classes: Sequence[str], path: Path | str) -> None:
    """A fitted CNN as one ``.npz``: its settings, the stack size (T, N), its classes and the network's weights.

    Plain arrays (no pickle), byte-identical for an identical model, so DVC sees an
    unchanged model as unchanged.
    """
    if len(classes) != len(classifier.classes_):
        raise ValueError(f"the CNN has {len(classifier.classes_)} outputs, not one per class of {list(classes)}")
    header = {"settings": model_settings(classifier), "shape": list(grid), "classes": list(classes)}
    weights = {f"weight:{k}": v.cpu().contiguous().numpy() for k, v in classifier.module_.state_dict().items()}
    save_npz(path, header=np.array(json.dumps(header, sort_keys=True)), **weights)


def load_cnn(path: Path | str) -> tuple[CNNClassifier, tuple[str, ...]]:
    """A fitted CNN back from :func:`save_cnn`, and the names of its classes in output order."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        weights = {k.removeprefix("weight:"): torch.from_numpy(z[k]) for k in z.files if k.startswith("weight:")}
    settings, classes = header["settings"], tuple(header["classes"])
    classifier = CNNClassifier(
        **{**settings, "channels": tuple(settings["channels"]), "kernel_sizes": tuple(settings["kernel_sizes"])},
        n_classes=len(classes),
    )
    T, N = header["shape"]
    module = StopCNN(T, N, len(classes), classifier.channels, classifier.kernel_sizes, classifier.pool)
    module.load_state_dict(weights)
    classifier.classes_ = np.arange(len(classes))
    classifier.module_ = module.to(memory_format=torch.channels_last).eval()
    return classifier, classes


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """An SVM whose class probabilities come from sigmoid calibration on internal folds.

    scikit-learn's replacement for ``SVC(probability=True)``: the SVM is calibrated on up
    to 3 stratified folds of the training data (fewer when a class is that small) and
    predicts the most probable class. A class with a single training recording leaves
    nothing to calibrate on; the plain SVM then predicts, with 0/1 probabilities.
    ``class_weight: balanced`` scales each class's penalty C by its inverse frequency;
    a dict {class: weight} scales it by that weight (as :class:`~sklearn.svm.SVC`'s does).
    The weights move the SVM's margin only: the sigmoid calibration is fitted on the
    unweighted held-out folds, so the probabilities, and the predictions, lean back
    towards the training class frequencies.
    """

    def __init__(
        self,
        kernel: str = "rbf",
        C: float = 1.0,
        class_weight: ClassWeight | dict = "balanced",
        random_state: int = 0,
    ):
        self.kernel = kernel
        self.C = C
        self.class_weight = class_weight
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> CalibratedSVC:
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        weight = None if self.class_weight == "none" else self.class_weight
        svm = SVC(kernel=self.kernel, C=self.C, class_weight=weight, random_state=self.random_state)
        self.classes_, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2:
            self.model_ = CalibratedClassifierCV(svm, cv=int(min(3, counts.min())), ensemble=False).fit(X, y)
        else:
            self.model_ = svm.fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        if isinstance(self.model_, CalibratedClassifierCV):
            return self.model_.predict_proba(X)
        return (self.model_.predict(X)[:, None] == self.classes_[None, :]).astype(float)

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        return self.model_.predict(validate_data(self, X, reset=False))


def _flatten(X: np.ndarray, transform: Transform) -> np.ndarray:
    return transform_stacks(X, transform).reshape(len(X), -1)


def make_baseline(kind: str, params: BaselineParams) -> Pipeline:
    """Flatten -> [standardise] -> PCA -> 1-NN or SVM, as one pipeline fitted on training cages only.

    Every step before the last ignores the labels, so
    :class:`~lmt_stereotype.evaluation.FoldedModel` may fit them once per training set and
    reuse them across label permutations. The SVM weights its classes
    (``baselines.class_weight``); 1-NN has no weights to give: its prediction is the class
    of the single nearest training recording, which no class weight changes, so the
    balanced folds are what keep its training sets fair.
    """
    steps: list[tuple[str, object]] = [
        ("flatten", FunctionTransformer(_flatten, kw_args={"transform": params.transform})),
    ]
    if params.scaling == "standard":
        steps.append(("scale", StandardScaler()))
    steps.append(("pca", PCA(n_components=params.pca_components, random_state=params.seed)))
    if kind == "knn":
        steps.append(("knn", KNeighborsClassifier(n_neighbors=params.knn_neighbors)))
    elif kind == "svm":
        svm = CalibratedSVC(params.svm_kernel, params.svm_c, params.class_weight, random_state=params.seed)
        steps.append(("svm", svm))
    else:
        raise ValueError(f"unknown baseline {kind!r} (knn or svm)")
    return Pipeline(steps)
