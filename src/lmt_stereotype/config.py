"""Typed configuration, read from ``params.yaml`` and validated once at the edge.

Every stage receives a :class:`Params` object; nothing downstream re-reads the YAML
or guesses defaults. A wrong type, an out-of-range value or an unknown key is an
:class:`~lmt_stereotype.errors.InputError` that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmt_stereotype.errors import InputError

CLASSES: tuple[str, ...] = ("AM", "JM", "AF", "JF")
"""Class order used everywhere (confusion matrices, model outputs): the paper's Table 1."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataPaths(_Section):
    """Where each stage reads and writes, relative to the project root."""

    raw: Path = Path("data/raw")
    manifest: Path = Path("data/raw/manifest.csv")
    stops: Path = Path("data/interim/stops")
    stacks: Path = Path("data/processed/stacks.npz")
    models: Path = Path("models")
    reports: Path = Path("reports")


class LMTGeometry(_Section):
    """Camera geometry and tracking conventions of an LMT set-up (FORMAT.md)."""

    fps: float = Field(30.0, gt=0)
    px_per_cm: float = Field(5.7, gt=0, description="57 px per 10 cm (lmt-analysis scaleFactor)")
    arena_origin_px: tuple[float, float] = (114.0, 63.0)
    arena_size_cm: float = Field(50.0, gt=0)
    min_mass_x_px: float = Field(10.0, ge=0, description="detections with MASS_X below are junk")
    chunk_rows: int = Field(1_000_000, gt=0, description="rows fetched from SQLite at a time")


class StopParams(_Section):
    """The paper's stop: centre-of-mass speed <= 5 cm/s held for >= 1 s."""

    speed_threshold_cm_s: float = Field(5.0, gt=0)
    min_duration_s: float = Field(1.0, gt=0)
    speed_window_frames: int = Field(7, ge=3)
    max_gap_frames: int = Field(15, ge=0)

    @model_validator(mode="after")
    def _odd_window(self) -> StopParams:
        if self.speed_window_frames % 2 == 0:
            raise ValueError("stops.speed_window_frames must be odd (a centred window)")
        return self


class HistogramParams(_Section):
    """Stack geometry: ``n_intervals`` time bins of ``interval_s`` by a ``grid`` x ``grid`` cage."""

    n_intervals: int = Field(72, gt=0)
    interval_s: float = Field(3600.0, gt=0)
    grid: int = Field(30, gt=0)


class Circle(_Section):
    x: float
    y: float
    r: float = Field(gt=0)


class Rect(_Section):
    x: float
    y: float
    width: float = Field(gt=0)
    height: float = Field(gt=0)


class CageLayout(_Section):
    """Landmarks in cm from the arena's top-left corner, y pointing down (image convention)."""

    house: Rect = Rect(x=0, y=0, width=14, height=14)
    feeders: tuple[Circle, ...] = (Circle(x=46, y=12, r=3), Circle(x=25, y=46, r=3))
    water: Circle = Circle(x=46, y=46, r=2)


class Effects(_Section):
    """Planted class effects of the simulator; ``strength: 0`` turns every one off."""

    strength: float = Field(1.0, ge=0)
    female_house: float = Field(2.0, ge=0, description="adult females favour the house")
    male_lower_border: float = Field(2.0, ge=0, description="males favour the lower border")
    juvenile_centre: float = Field(2.0, ge=0, description="juveniles stop in the open centre")
    juvenile_male_mix: float = Field(
        0.5, ge=0, le=1, description="share of the male effect in juvenile males (rest: juvenile)"
    )


class SimulateParams(_Section):
    profile: Literal["demo", "paper"] = "demo"
    seed: int = 0
    n_cages: int = Field(12, ge=2)
    effects: Effects = Effects()
    cage_variability: float = Field(0.5, ge=0, description="sd of the per-cage log site weights")
    mouse_variability: float = Field(0.25, ge=0, description="sd of the per-mouse log site weights")


ClassWeight = Literal["balanced", "none"]
"""How a training fold's classes are weighted: ``balanced`` (each class by the inverse of its
share, so the classes weigh alike whatever their counts) or ``none``."""

Transform = Literal["raw", "log1p", "per_recording"]
"""Input transform of a stack, applied per recording (nothing learnt from other recordings):
raw counts, log(1 + count), or counts divided by the recording's mean count."""


class CNNParams(_Section):
    """The paper's shallow CNN and how it is trained (paper: cross-entropy, SGD, lr 1e-3)."""

    channels: tuple[int, ...] = Field((16, 16), min_length=1, description="output channels of each branch")
    kernel_sizes: tuple[int, ...] = Field((3, 9), min_length=1, description="one parallel branch per size")
    pool: int = Field(2, gt=0)
    transform: Transform = "log1p"
    epochs: int = Field(40, gt=0, description="fixed count: no early stopping on the held-out cage")
    batch_size: int = Field(8, gt=0)
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    class_weight: ClassWeight = Field("balanced", description="cross-entropy weighted by inverse class frequency")
    seed: int = 0
    threads: int = Field(0, ge=0, description="torch CPU threads per fit; 0 = all cores (results then vary with them)")
    n_permutations: int = Field(
        19, ge=0, description="label permutations for the fixed setting's balanced-scheme p-value (each a full CV)"
    )

    @model_validator(mode="after")
    def _a_width_per_branch(self) -> CNNParams:
        if len(self.channels) != len(self.kernel_sizes) or min(self.channels) < 1:
            raise ValueError(
                f"cnn.channels {list(self.channels)} must give a positive width to each of the kernels "
                f"{list(self.kernel_sizes)}"
            )
        if len(set(self.kernel_sizes)) != len(self.kernel_sizes):
            raise ValueError(f"cnn.kernel_sizes {list(self.kernel_sizes)} must be distinct (one branch each)")
        return self


class BaselineParams(_Section):
    """PCA on the flattened stacks, then 1-nearest-neighbour or an SVM (paper: 3 components)."""

    transform: Transform = "raw"
    scaling: Literal["none", "standard"] = Field("none", description="standardise features before PCA")
    pca_components: int = Field(3, gt=0)
    knn_neighbors: int = Field(1, gt=0)
    svm_kernel: Literal["linear", "rbf", "poly", "sigmoid"] = "rbf"
    svm_c: float = Field(1.0, gt=0)
    class_weight: ClassWeight = Field("balanced", description="the SVM's classes weighted by inverse frequency")
    seed: int = 0
    n_permutations: int = Field(199, ge=0, description="label permutations for the p-value (every cage scheme)")


Scheme = Literal["balanced", "loco", "kfold"]
"""Cross-validation schemes: ``balanced`` (cage-balanced folds, the headline), ``loco``
(leave-one-cage-out, the paper's) and ``kfold`` (stratified, cages ignored: the leak)."""


class EvaluationParams(_Section):
    """Cross-validation schemes and the uncertainty around every accuracy."""

    schemes: tuple[Scheme, ...] = Field(("balanced", "loco", "kfold"), min_length=1)
    matchings: int = Field(
        2,
        ge=1,
        description="balanced: male-female cage matchings (each a set of folds); the smaller sex's cage "
        "count gives every pair once (leave-pair-out)",
    )
    kfold_splits: int = Field(12, ge=2, description="stratified K-fold that ignores cages (shows cage leakage)")
    n_bootstrap: int = Field(2000, gt=0, description="resamples of cages for the accuracy interval")
    chance_permutations: int = Field(
        2000, gt=0, description="design permutations of the true labels for the below-chance p-value"
    )
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0

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

    lr: tuple[float, float] = (1e-4, 3e-2)
    momentum: tuple[float, float] = (0.0, 0.95)
    weight_decay: tuple[float, float] = (0.0, 1e-2)
    epochs: tuple[int, int] = (20, 60)
    batch_size: tuple[int, ...] = (4, 8, 16)
    transform: tuple[Transform, ...] = ("raw", "log1p", "per_recording")
    channels: tuple[int, int] = (4, 32)

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
    """Optuna search of the CNN's settings, nested inside the cage folds."""

    enabled: bool = True
    mode: Literal["nested", "flat"] = Field(
        "nested", description="flat: tune on the balanced CV score itself (selection-biased, never promoted)"
    )
    schemes: tuple[Scheme, ...] = Field(
        ("balanced",), description="schemes whose CNN is tuned inside each outer fold; the others train the cnn setting"
    )
    n_trials: int = Field(4, gt=0, description="trials per study, the paper's setting being the first")
    inner_folds: int = Field(3, ge=2, description="cage-balanced folds inside each outer training set")
    storage: str = Field("sqlite:///optuna.db", description="Optuna RDB URL; relative SQLite paths: project root")
    study: str = "cnn"
    seed: int = 0
    space: SearchSpace = SearchSpace()


class ExplainParams(_Section):
    """Activation maps and attributions: the spot rule and the light cycle drawn behind time plots."""

    n_permutations: int = Field(199, ge=1, description="label permutations for the spots' max-statistic test")
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise over the tiles of a map")
    max_spots: int = Field(3, ge=0, description="marked tiles per class and map, largest differences first")
    ig_steps: int = Field(32, gt=0, description="Integrated Gradients path steps")
    recording_start_hour: float = Field(10.0, ge=0, lt=24, description="clock hour when interval 0 starts")
    interval_hours: float = Field(1.0, gt=0, description="clock hours per interval (demo: the simulator's 1)")
    lights_on: tuple[float, float] = Field((8.0, 20.0), description="lights on from, until (clock hours)")
    seed: int = 0


class RegistryParams(_Section):
    """Where the final CNN is registered and what decides its promotion to ``champion``."""

    model_name: str = Field("lmt-stereotype-cnn", min_length=1)
    metric: Literal["accuracy", "balanced_accuracy", "f1_macro"] = Field(
        "balanced_accuracy", description="balanced-scheme metric that must improve for a new champion"
    )


class MlflowParams(_Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "lmt-stereotype"


class Params(_Section):
    data: DataPaths = DataPaths()
    lmt: LMTGeometry = LMTGeometry()
    stops: StopParams = StopParams()
    histograms: HistogramParams = HistogramParams()
    cage_layout: CageLayout = CageLayout()
    simulate: SimulateParams = SimulateParams()
    cnn: CNNParams = CNNParams()
    baselines: BaselineParams = BaselineParams()
    evaluation: EvaluationParams = EvaluationParams()
    tuning: TuningParams = TuningParams()
    explain: ExplainParams = ExplainParams()
    registry: RegistryParams = RegistryParams()
    mlflow: MlflowParams = MlflowParams()

    @model_validator(mode="after")
    def _tuned_schemes_are_evaluated(self) -> Params:
        missing = [s for s in self.tuning.schemes if s not in self.evaluation.schemes]
        if missing:
            raise ValueError(
                f"tuning.schemes {missing} are not among evaluation.schemes {list(self.evaluation.schemes)}"
            )
        return self


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
