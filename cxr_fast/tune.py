"""``run_tune``: an Optuna search over the training recipe, judged by patient-level validation.

Each trial trains one run (or, with ``folds`` > 1, one cross-validated ensemble) into
``OUT/trials/trial-N`` and reports its validation ROC-AUC after every epoch (or its mean fold
AUC after every member) to a median pruner, which stops trials that trail the others. The study
lives in ``storage`` (SQLite by default, ``OUT/tune.db``): running the command again continues
it, and several machines tune one study by pointing ``--storage`` at one shared PostgreSQL or
MySQL database. ``OUT/best.json`` holds the best trial's options, which
``cxr-fast train --config OUT/best.json`` accepts.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_fast.configs import TuneConfig
from cxr_fast.errors import UserInputError
from cxr_fast.messages import Log, silent, to_stdout
from cxr_fast.run_folder import atomic_write_json
from cxr_fast.text import plural

BEST_FILE = "best.json"
# What the search varies; train options of the same names take the values of best.json.
SEARCHED = (
    "arch",
    "image_size",
    "lr",
    "weight_decay",
    "batch_size",
    "aug_strength",
    "mixup",
    "ema_decay",
    "label_smoothing",
)


def suggest(trial: Any, config: TuneConfig) -> dict[str, Any]:
    """One trial's training options (the names of ``cxr-fast train``'s options)."""
    return {
        "arch": trial.suggest_categorical("arch", list(config.archs)),
        "image_size": trial.suggest_categorical("image_size", list(config.image_sizes)),
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
        "aug_strength": trial.suggest_float("aug_strength", 0.0, 2.5),
        "mixup": trial.suggest_categorical("mixup", [0.0, 0.2, 0.4]),
        "ema_decay": trial.suggest_categorical("ema_decay", [0.0, 0.99, 0.998]),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.15),
    }


def train_config(params: dict[str, Any], data: str, out: str, **fixed: Any):
    """The :class:`TrainConfig` that a dict of train options (best.json's) describes."""
    from cxr_fast.training.config import AugmentOptions, TrainConfig

    values = dict(params)
    augment = AugmentOptions(aug_strength=values.pop("aug_strength", 1.0)).build()
    return TrainConfig(data=data, out=out, augment=augment, **values, **fixed)


def _objective(config: TuneConfig, log: Log):
    import optuna

    from cxr_fast.training.folds import run_train_folds
    from cxr_fast.training.trainer import train_model

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, config)
        out = str(Path(config.out) / "trials" / f"trial-{trial.number}")
        train = train_config(
            params,
            config.data,
            out,
            epochs=config.epochs,
            folds=config.folds,
            seed=config.seed,
            workers=config.workers,
            device=config.device,
            export="none",  # a trial is judged, not deployed
        )

        def report(step: int, auc: float) -> None:
            trial.report(auc, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"ROC-AUC {auc:.4f} at step {step}")

        # One line per trial instead of each trial's own.
        if config.folds > 1:
            result = run_train_folds(train, log=silent, on_member=report)
        else:
            result = train_model(train, log=silent, on_epoch=report)
        return result.best_auc

    return objective


def _progress(log: Log, total: int):
    def callback(study, trial) -> None:
        value = "pruned" if trial.value is None else f"ROC-AUC {trial.value:.4f}"
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no finished trial yet"
        done = len(study.trials)
        log(f"trial {trial.number} ({done} in the study, {total} asked): {value}; {best}")

    return callback


def varied_params(study) -> list[str]:
    """The parameters that took more than one value over the study's completed trials (sorted)."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    values: dict[str, set[str]] = {}
    for trial in done:
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(repr(value))
    return sorted(name for name, seen in values.items() if len(seen) > 1)


def _save_plots(study, out: Path, log: Log = to_stdout) -> list[Path]:
    """Optimisation history and parameter importances as PNG. The importances are drawn over
    the parameters that varied and only from two or more completed trials: from one trial, or
    over fixed parameters, the plot would show numbers that mean nothing (a note says so)."""
    import matplotlib
    import optuna

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    varied = varied_params(study)
    plots = [("history", ov.plot_optimization_history)]
    if done < 2 or not varied:
        why = plural(done, "completed trial") if done < 2 else "no parameter varied"
        log(f"note: no importance plot ({why}; it needs two or more that differ)")
    else:
        plots.append(("importance", lambda s: ov.plot_param_importances(s, params=varied)))
    saved = []
    for name, plot in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                axes = plot(study)
        except (ValueError, RuntimeError):
            continue
        path = out / f"{name}.png"
        axes.figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(axes.figure)
        saved.append(path)
    return saved


@dataclass(frozen=True)
class TuneResult:
    """The best trial and what was written."""

    best_value: float
    best_params: dict[str, Any]
    trials: int
    best_file: Path
    plots: Sequence[Path]


def run_tune(config: TuneConfig, log: Log = to_stdout) -> TuneResult:
    """Run (or continue) the study and write best.json and the plots into ``config.out``."""
    import optuna

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = config.storage or f"sqlite:///{(out / 'tune.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=config.study_name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    log(f"study {config.study_name!r} in {storage}: {plural(len(study.trials), 'earlier trial')}")
    study.optimize(
        _objective(config, log),
        n_trials=config.trials,
        timeout=config.timeout,
        callbacks=[_progress(log, config.trials)],
        catch=(),
    )
    best = study.best_trial
    best_file = out / BEST_FILE
    atomic_write_json(
        {
            "params": best.params,
            "value": best.value,
            "objective": "patient-level cross-validated ROC-AUC"
            if config.folds > 1
            else "patient-level validation ROC-AUC",
            "trial": best.number,
            "study": config.study_name,
            # The trial budget, for the record only: read_best does not hand it to train, whose
            # recipe (its default epochs and folds) is what the searched options are for.
            "screened_with": {"epochs": config.epochs, "folds": config.folds, "seed": config.seed},
        },
        best_file,
    )
    return TuneResult(
        best.value, best.params, len(study.trials), best_file, _save_plots(study, out, log)
    )


def read_best(path: Path) -> dict[str, Any]:
    """The train options of a best.json: its searched ``params`` only.

    The trial budget (``screened_with``, or ``fixed`` in older files: tune's epochs and folds) is
    left out: it sized the screening, and applying it would train a one-fold, few-epoch model
    instead of the recipe.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        raise UserInputError(f"{path} is not a best.json written by cxr-fast tune")
    params = dict(data["params"])
    unknown = set(params) - set(SEARCHED)
    if unknown:
        raise UserInputError(f"{path}: unknown training options {', '.join(sorted(unknown))}")
    return params
