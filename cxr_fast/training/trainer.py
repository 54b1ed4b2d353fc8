"""``run_train``, the train stage: one model or a fold ensemble, then the gate and the export."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cxr_fast.errors import Interrupted, NotFoundError, UserInputError
from cxr_fast.run_folder import CONFIG_FILE, read_json, read_run
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.folds import run_train_folds
from cxr_fast.training.one_model import train_model
from cxr_fast.training.plan import Plan, contract_for, plan
from cxr_fast.training.results import TrainResult
from cxr_fast.training.resume_check import check_same_folder
from cxr_fast.training.writer import kept_after_interrupt

# The names callers of the train stage use, wherever they are defined.
__all__ = [
    "Plan",
    "TrainResult",
    "contract_for",
    "load_config",
    "plan",
    "resume_config",
    "run_train",
    "train_model",
]


def run_train(
    config: TrainConfig, *, resume: bool = False, log: Callable[[str], None] = print
) -> TrainResult:
    """The train stage: one model (:func:`train_model`), or with ``config.folds`` > 1 an
    ensemble of fold members (:func:`run_train_folds`), new or resumed, then (rank 0 only)
    ``config.export`` into RUN/export/ (:func:`export_after_training`; a failed export is a
    warning, not a failed run). Ctrl-C becomes :class:`Interrupted` saying what was kept and
    how to continue."""
    try:
        if config.folds > 1:
            result = run_train_folds(config, resume=resume, log=log)
        else:
            result = train_model(config, resume=resume, log=log)
    except KeyboardInterrupt:
        raise Interrupted(kept_after_interrupt(config)) from None
    if result.epochs_trained != 0 and result.best_epoch is None:
        raise UserInputError("training finished without a validation result")
    if result.is_main:
        _fit_gate(result.run_dir, config, log)
        from cxr_fast.training.export_step import export_after_training

        export_after_training(result.run_dir, config, log)
    return result


def _fit_gate(run_dir: Path, config: TrainConfig, log: Callable[[str], None]) -> None:
    """The input gate fitted on the run's training films and stored in its model.pt, before
    any export is made from it (a resumed run that has one keeps it)."""
    from cxr_fast.gate import GATE_KEY
    from cxr_fast.gate.store import fit_and_store

    if not config.gate or GATE_KEY in read_run(run_dir)[1].meta:
        return
    log(fit_and_store(run_dir, Path(config.data), workers=config.workers).summary())


def load_config(run_dir: Path) -> TrainConfig:
    """The configuration a run folder was started with."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise NotFoundError(f"nothing to resume in {run_dir}: {CONFIG_FILE} is missing")
    return TrainConfig.from_dict(read_json(path)["train"])


def resume_config(
    run_dir: Path,
    epochs: int | None = None,
    export: str | None = None,
    data: str | Path | None = None,
) -> TrainConfig:
    """The saved configuration of ``run_dir``, in ``run_dir`` itself (a run folder that was
    copied or moved continues where it is now, not where it was started), optionally with a
    new epoch count or export choice. ``data`` (a ``--data`` given with ``--resume``) must be
    the run's own data folder, else ResumeMismatchError."""
    config = replace(load_config(run_dir), out=str(run_dir))
    check_same_folder(Path(run_dir), config.data, data)
    config = replace(config, epochs=epochs) if epochs is not None else config
    return replace(config, export=export) if export is not None else config
