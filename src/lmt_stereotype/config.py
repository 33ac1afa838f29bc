"""Typed configuration, read from ``params.yaml`` and validated once at the edge.

Every stage receives a :class:`Params` object; nothing downstream re-reads the YAML
or guesses defaults. A wrong type, an out-of-range value or an unknown key is an
:class:`~lmt_stereotype.errors.InputError` that names the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmt_stereotype.errors import InputError

RUNTIME_KEYS: tuple[str, ...] = ("lmt.chunk_rows", "cnn.threads", "tuning.storage")
"""Keys that change how fast or where a stage runs, never what it computes: no ``dvc.yaml``
stage depends on them, so changing one reruns nothing."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataPaths(_Section):
    """Where each stage reads and writes, relative to the project root."""

    raw: Path
    manifest: Path
    stops: Path
    samples: Path
    stacks: Path
    models: Path
    reports: Path


class LMTGeometry(_Section):
    """Camera geometry and tracking conventions of an LMT set-up (FORMAT.md)."""

    fps: float = Field(gt=0)
    px_per_cm: float = Field(gt=0, description="57 px per 10 cm (lmt-analysis scaleFactor)")
    arena_origin_px: tuple[float, float]
    arena_size_cm: float = Field(gt=0)
    min_mass_x_px: float = Field(ge=0, description="detections with MASS_X below are junk")
    chunk_rows: int = Field(gt=0, description="rows fetched from SQLite at a time")


class StopParams(_Section):
    """The paper's stop: centre-of-mass speed <= 5 cm/s held for >= 1 s (the rule: :mod:`lmt_stereotype.stops`)."""

    speed_threshold_cm_s: float = Field(gt=0, description="a detection is stopped at or below this speed (cm/s)")
    min_duration_s: float = Field(gt=0, description="a stop lasts at least this long, first to last frame")
    speed_window_frames: int = Field(ge=3, description="odd: detections the centred speed difference spans")
    max_gap_s: float = Field(ge=0, description="longest detection gap a stop continues across (0: none)")
    max_gap_cm: float = Field(gt=0, description="... only if the mouse reappears this close to where it vanished")

    @model_validator(mode="after")
    def _odd_window(self) -> StopParams:
        if self.speed_window_frames % 2 == 0:
            raise ValueError("stops.speed_window_frames must be odd (a centred window)")
        return self


class HistogramParams(_Section):
    """Stack geometry: ``n_intervals`` time bins of ``interval_s`` by a ``grid`` x ``grid`` cage,
    and where the bins lie in time (:mod:`lmt_stereotype.histograms`)."""

    n_intervals: int = Field(gt=0)
    interval_s: float = Field(gt=0)
    grid: int = Field(gt=0)
    align: Literal["recording", "clock"] = Field(
        description="recording: interval 0 starts at the first frame; clock: at the first clock_start o'clock"
    )
    clock_start: float = Field(ge=0, lt=24, description="align clock: the hour of the day interval 0 starts at")
    pad_tolerance: float = Field(
        ge=0, le=1, description="share of one interval a recording may fall short of the window and be padded"
    )


class RoomParams(_Section):
    """The animal room's light cycle, drawn behind every plot over time (and planted by the simulator)."""

    lights_on: tuple[float, float] = Field(description="lights on from, until (clock hours, 0-24)")
    timezone: str = Field(description="IANA time zone of the recording PC's clock (FRAME.TIMESTAMP)")

    @model_validator(mode="after")
    def _hours(self) -> RoomParams:
        if not all(0 <= h <= 24 for h in self.lights_on):
            raise ValueError(f"room.lights_on {list(self.lights_on)} must be clock hours between 0 and 24")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"room.timezone {self.timezone!r} is not a time zone (e.g. Europe/Paris, UTC)") from None
        return self


class Circle(_Section):
    x: float
    y: float
    r: float = Field(gt=0)


class Rect(_Section):
    x: float
    y: float
    width: float = Field(gt=0)
    height: float = Field(gt=0)


class TargetParams(_Section):
    """The question asked of the cohort: the manifest column the models learn to predict.

    ``class`` is the paper's four classes (AM, JM, AF, JF from sex and age); ``sex``,
    ``age`` or any other column of the manifest (``genotype``, ``treatment``, ``rank`` ...)
    asks its own question. ``classes`` orders the confusion matrices and the models'
    outputs (``null``: AM JM AF JF for ``class``, M F for ``sex``, adult juvenile for
    ``age``, else the levels sorted as text).
    """

    column: str = Field(min_length=1)
    classes: tuple[str, ...] | None
    drop_missing: bool = Field(description="leave out (and count) recordings whose target is empty; else an error")

    @model_validator(mode="after")
    def _two_distinct_classes(self) -> TargetParams:
        if self.classes is not None and (len(set(self.classes)) < 2 or len(set(self.classes)) < len(self.classes)):
            raise ValueError(f"target.classes {list(self.classes)} must name two classes or more, each once")
        return self


class CageLayout(_Section):
    """Landmarks in cm from the arena's top-left corner, y pointing down (image convention)."""

    house: Rect
    feeders: tuple[Circle, ...]
    water: Circle


class Effects(_Section):
    """Planted class effects of the simulator; ``strength: 0`` turns every one off."""

    strength: float = Field(ge=0)
    female_house: float = Field(ge=0, description="adult females favour the house")
    male_lower_border: float = Field(ge=0, description="males favour the lower border")
    juvenile_centre: float = Field(ge=0, description="juveniles stop in the open centre")
    juvenile_male_mix: float = Field(
        ge=0, le=1, description="share of the male effect in juvenile males (rest: juvenile)"
    )


class GenotypeParams(_Section):
    """A planted genotype (ANIMAL.GENOTYPE WT or KO): how it is housed and how strongly KO mice differ."""

    housing: Literal["none", "mixed", "per_cage"] = Field(
        description="none: no genotype (the demo); mixed: 2 WT + 2 KO per cage; per_cage: one genotype per cage"
    )
    strength: float = Field(ge=0, description="KO mice's site weight at the upper feeder times 1 + strength; 0 = none")


class SimulateParams(_Section):
    profile: Literal["demo", "paper"]
    seed: int
    n_cages: int = Field(ge=2)
    effects: Effects
    genotype: GenotypeParams
    cage_variability: float = Field(ge=0, description="sd of the per-cage log site weights")
    mouse_variability: float = Field(ge=0, description="sd of the per-mouse log site weights")


ClassWeight = Literal["balanced", "none"]
"""How a training fold's classes are weighted: ``balanced`` (each class by the inverse of its
share, so the classes weigh alike whatever their counts) or ``none``."""

Transform = Literal["raw", "log1p", "per_recording"]
"""Input transform of a stack, applied per recording (nothing learnt from other recordings):
raw counts, log(1 + count), or counts divided by the recording's mean count."""

Device = Literal["auto", "cpu", "cuda"]
"""Where the CNN trains: ``auto`` the GPU when torch sees one, else the CPU."""

Convolution = Literal["auto", "dense", "sparse"]
"""How the CPU computes the first layer's convolutions in training: ``dense`` (oneDNN),
``sparse`` (over the stacks' non-zero cells only), ``auto`` sparse for sparse stacks. The
same network either way; only the summation order, so the last bits, differ."""


def branch_widths(channels: int | Sequence[int], kernel_sizes: Sequence[int]) -> tuple[int, ...]:
    """Output channels of each CNN branch: one count for all, or one per kernel size (the one rule)."""
    widths = (channels,) * len(kernel_sizes) if isinstance(channels, int) else tuple(channels)
    if len(widths) != len(kernel_sizes) or min(widths) < 1:
        raise ValueError(
            f"cnn.channels {list(widths)} must give a positive width to each of the kernels {list(kernel_sizes)}"
        )
    return widths


class CNNParams(_Section):
    """The paper's shallow CNN and how it is trained (paper: cross-entropy, SGD, lr 1e-3)."""

    channels: tuple[int, ...] = Field(min_length=1, description="output channels of each branch")
    kernel_sizes: tuple[int, ...] = Field(min_length=1, description="one parallel branch per size")
    pool: int = Field(gt=0)
    transform: Transform
    epochs: int = Field(gt=0, description="fixed count: no early stopping on the held-out cage")
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    momentum: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    class_weight: ClassWeight = Field(description="cross-entropy weighted by inverse class frequency")
    seed: int
    threads: int = Field(ge=0, description="torch CPU threads per fit; 0 = all cores (results then vary with them)")
    device: Device = Field(description="auto: the GPU when torch sees one; cpu; cuda (an error without a GPU)")
    convolution: Convolution = Field(
        description="training's first-layer convolutions on the CPU: dense, sparse (non-zero cells only), "
        "or auto (sparse when at most 4% of the convolution windows' cells are non-zero)"
    )
    n_permutations: int = Field(
        ge=0, description="label permutations for the fixed settings' balanced-scheme p-value (each a full CV)"
    )

    @model_validator(mode="after")
    def _a_width_per_branch(self) -> CNNParams:
        branch_widths(self.channels, self.kernel_sizes)
        if len(set(self.kernel_sizes)) != len(self.kernel_sizes):
            raise ValueError(f"cnn.kernel_sizes {list(self.kernel_sizes)} must be distinct (one branch each)")
        return self


class BaselineParams(_Section):
    """PCA on the flattened stacks, then 1-nearest-neighbour or an SVM (paper: 3 components)."""

    transform: Transform
    scaling: Literal["none", "standard"] = Field(description="standardise features before PCA")
    pca_components: int = Field(gt=0)
    knn_neighbors: int = Field(gt=0)
    svm_kernel: Literal["linear", "rbf", "poly", "sigmoid"]
    svm_c: float = Field(gt=0)
    class_weight: ClassWeight = Field(description="the SVM's classes weighted by inverse frequency")
    seed: int
    n_permutations: int = Field(ge=0, description="label permutations for the p-value (every cage scheme)")


Scheme = Literal["balanced", "loco", "kfold"]
"""Cross-validation schemes: ``balanced`` (cage-balanced folds, the headline), ``loco``
(leave-one-cage-out, the paper's) and ``kfold`` (stratified, cages ignored: the leak)."""


class EvaluationParams(_Section):
    """Cross-validation schemes and the uncertainty around every accuracy."""

    schemes: tuple[Scheme, ...] = Field(min_length=1)
    matchings: int = Field(
        ge=1,
        description="balanced: male-female cage matchings (each a set of folds); the smaller sex's cage "
        "count gives every pair once (leave-pair-out)",
    )
    kfold_splits: int = Field(ge=2, description="stratified K-fold that ignores cages (shows cage leakage)")
    n_bootstrap: int = Field(gt=0, description="resamples of cages for the accuracy interval")
    chance_permutations: int = Field(
        gt=0, description="design permutations of the true labels for the below-chance p-value"
    )
    confidence: float = Field(gt=0, lt=1)
    seed: int

    @model_validator(mode="after")
    def _balanced_first(self) -> EvaluationParams:
        if self.schemes[0] != "balanced" or len(set(self.schemes)) != len(self.schemes):
            raise ValueError(
                "evaluation.schemes must start with balanced (the headline: reports and the registry rest on it) "
                "and name each scheme once"
            )
        return self


class SearchSpace(_Section):
    """Ranges Optuna searches for the CNN: lr and each branch's width (``channels``) on a log
    scale, weight decay linear (so 0 is in)."""

    lr: tuple[float, float]
    momentum: tuple[float, float]
    weight_decay: tuple[float, float]
    epochs: tuple[int, int]
    batch_size: tuple[int, ...]
    transform: tuple[Transform, ...]
    channels: tuple[int, int]

    @model_validator(mode="after")
    def _ordered(self) -> SearchSpace:
        for name in ("lr", "momentum", "weight_decay", "epochs", "channels"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"tuning.space.{name}: low {low} is above high {high}")
        for name in ("lr", "channels"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"tuning.space.{name} is searched on a log scale, its low must be > 0")
        return self


class TuningParams(_Section):
    """Optuna search of the CNN's settings: ``off``, ``nested`` inside the cage folds, or ``flat``."""

    mode: Literal["off", "nested", "flat"] = Field(
        description="off: the cnn settings; nested: tuned inside each outer fold; flat: tuned on the balanced "
        "CV score itself (selection-biased, never promoted)"
    )
    schemes: tuple[Scheme, ...] = Field(
        description="schemes whose CNN is tuned inside each outer fold; the others train the cnn settings"
    )
    n_trials: int = Field(gt=0, description="trials per study, the paper's settings being the first")
    pruner: Literal["halving", "none"] = Field(
        description="halving: successive halving on the inner-fold accuracy after min_epochs, reduction_factor "
        "times as many epochs, ...; none: every trial trains all its epochs"
    )
    min_epochs: int = Field(gt=0, description="epochs before a trial is first compared (and scored every so many)")
    reduction_factor: int = Field(ge=2, description="one trial in reduction_factor goes on at each comparison")
    inner_folds: int = Field(ge=2, description="cage-balanced folds inside each outer training set")
    storage: str = Field(description="Optuna RDB URL; relative SQLite paths: project root")
    study: str
    seed: int
    space: SearchSpace

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


class ExplainParams(_Section):
    """Activation maps and attributions: the rule that marks a spot, and the attribution's path."""

    n_permutations: int = Field(ge=1, description="label permutations for the spots' max-statistic test")
    alpha: float = Field(gt=0, lt=1, description="family-wise over the tiles of a map")
    max_spots: int = Field(ge=0, description="marked tiles per class and map, largest differences first")
    ig_steps: int = Field(gt=0, description="Integrated Gradients path steps")
    seed: int


class RegistryParams(_Section):
    """Where the final CNN is registered and what decides its promotion to ``champion``."""

    model_name: str = Field(min_length=1)
    metric: Literal["accuracy", "balanced_accuracy", "f1_macro"] = Field(
        description="balanced-scheme metric that must improve for a new champion"
    )


class MlflowParams(_Section):
    tracking_uri: str
    experiment: str


class Params(_Section):
    data: DataPaths
    lmt: LMTGeometry
    stops: StopParams
    histograms: HistogramParams
    target: TargetParams
    room: RoomParams
    cage_layout: CageLayout
    simulate: SimulateParams
    cnn: CNNParams
    baselines: BaselineParams
    evaluation: EvaluationParams
    tuning: TuningParams
    explain: ExplainParams
    registry: RegistryParams
    mlflow: MlflowParams

    @model_validator(mode="after")
    def _tuned_schemes_are_evaluated(self) -> Params:
        missing = [s for s in self.tuning.schemes if s not in self.evaluation.schemes]
        if missing:
            raise ValueError(
                f"tuning.schemes {missing} are not among evaluation.schemes {list(self.evaluation.schemes)}"
            )
        return self

    @property
    def registry_of_target(self) -> RegistryParams:
        """The registry settings of this target's model: ``registry.model_name`` for the paper's ``class``,
        suffixed ``-<column>`` for any other target, so that a genotype model never takes the paper
        model's champion alias (and ``predict`` its place)."""
        if self.target.column == "class":
            return self.registry
        return self.registry.model_copy(update={"model_name": f"{self.registry.model_name}-{self.target.column}"})


class StackParams(_Section):
    """What turns a recording into a stack: kept with a registered model, so that it keeps its meaning."""

    lmt: LMTGeometry
    stops: StopParams
    histograms: HistogramParams


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; every problem names its key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise InputError(path, "parameter file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise InputError(path, "expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise InputError(path, problems) from None
