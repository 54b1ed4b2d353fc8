"""The frozen configuration of a training run, as the CLI resolves it and config.json keeps it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from cxr_fast.choices import DEFAULT_WORKERS, THRESHOLD_POLICIES, TRAIN_EXPORTS, RecipeDefaults
from cxr_fast.data.augment import Augment, recipe_augment
from cxr_fast.errors import UserInputError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (paths are strings so the JSON is plain)."""

    data: str
    out: str
    arch: str = RecipeDefaults.arch
    epochs: int = RecipeDefaults.epochs
    batch_size: int = RecipeDefaults.batch_size
    lr: float = RecipeDefaults.lr
    weight_decay: float = RecipeDefaults.weight_decay
    image_size: int = RecipeDefaults.image_size
    loader: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    val_fraction: float = RecipeDefaults.val_fraction
    patience: int = RecipeDefaults.patience
    warmup_epochs: float = RecipeDefaults.warmup_epochs
    clip_grad: float = RecipeDefaults.clip_grad
    pos_weight: str = "auto"
    target_sensitivity: float | None = None
    pretrained: str | None = None
    workers: int = DEFAULT_WORKERS
    sync_bn: bool = False  # SyncBatchNorm under DDP on GPUs
    skip_bad: bool = False  # train without files that fail the pre-flight decode check
    # The recipe (docs/results.md measures each part): an exponential moving average of the
    # weights, evaluated and saved in place of the raw weights (0 = off); target regularisers;
    # per-image intensity standardisation in the contract; the threshold policy.
    ema_decay: float = RecipeDefaults.ema_decay
    label_smoothing: float = RecipeDefaults.label_smoothing
    mixup: float = RecipeDefaults.mixup
    erase: float = RecipeDefaults.erase  # probability of one random erased rectangle per image
    normalize: str = RecipeDefaults.normalize
    crop: float = RecipeDefaults.crop  # central fraction of the film kept (in the contract)
    threshold_policy: str = RecipeDefaults.threshold_policy
    # Cross-validation: ``folds`` > 1 trains that many members on patient-level folds into one
    # ensemble run folder; ``fold`` is set on each member's own configuration (0-based).
    folds: int = 1  # the library trains one model; `cxr-fast train` defaults to RecipeDefaults
    fold: int | None = None
    # What the train stage exports when it ends ("auto": `export --format auto`, "none"). The
    # library only trains by default; `cxr-fast train` defaults to RecipeDefaults.export.
    export: str = "none"
    # Fit the input gate on the training films when training ends (cxr_fast/gate/): off only
    # for a run that will score films unlike its training films on purpose (tests on
    # synthetic films).
    gate: bool = True
    augment: Augment | None = field(
        default_factory=lambda: recipe_augment(
            RecipeDefaults.aug_strength,
            stretch=RecipeDefaults.stretch,
            zoom=RecipeDefaults.zoom,
        )
    )

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 < self.val_fraction < 1, f"val fraction must be in (0, 1), got {self.val_fraction}"),
            (self.patience >= 1, f"patience must be at least 1, got {self.patience}"),
            (self.warmup_epochs >= 0, f"warm-up must be >= 0 epochs, got {self.warmup_epochs}"),
            (self.clip_grad >= 0, f"clip-grad must be >= 0, got {self.clip_grad}"),
            (0 <= self.ema_decay < 1, f"EMA decay must be in [0, 1), got {self.ema_decay}"),
            (
                0 <= self.label_smoothing < 1,
                f"label smoothing must be in [0, 1), got {self.label_smoothing}",
            ),
            (self.mixup >= 0, f"mixup must be >= 0, got {self.mixup}"),
            (0 <= self.erase <= 1, f"erase must be in [0, 1], got {self.erase}"),
            (self.folds >= 1, f"folds must be at least 1, got {self.folds}"),
            (
                self.fold is None or 0 <= self.fold < self.folds,
                f"fold must be in [0, {self.folds}), got {self.fold}",
            ),
            (
                self.target_sensitivity is None or 0 < self.target_sensitivity <= 1,
                f"target sensitivity must be in (0, 1], got {self.target_sensitivity}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserInputError(message)
        if self.threshold_policy not in THRESHOLD_POLICIES:
            # A run saved before the shift policy was removed still scores and evaluates with
            # its stored threshold; only training it further is refused.
            raise UserInputError(
                f"threshold policy {self.threshold_policy!r} is no longer offered (one of "
                f"{', '.join(THRESHOLD_POLICIES)}): train a new run to continue with this data"
            )
        if self.export not in TRAIN_EXPORTS:
            raise UserInputError(
                f"export must be one of {', '.join(TRAIN_EXPORTS)}, got {self.export!r}"
            )
        if self.pos_weight not in ("auto", "none"):
            try:
                positive = float(self.pos_weight) > 0
            except ValueError:
                positive = False
            if not positive:
                raise UserInputError(
                    f"pos-weight must be auto, none or a positive number, got {self.pos_weight!r}"
                )

    def to_dict(self) -> dict:
        """Plain JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys are ignored, for forward compatibility)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("augment"), dict):
            values["augment"] = Augment.from_dict(values["augment"])
        return cls(**values)
