"""The ``shift`` threshold of a finished one-model run, chosen once when training ends.

At each best epoch the run stores the margin threshold (re-scoring the validation films under
every simulated shift at every epoch would cost more than the epoch); when training ends this
re-scores the best model's validation films under :data:`~cxr_fast.training.shift.SHIFTS` and
rewrites the threshold in ``model.pt`` and ``metrics.json``. An ensemble run does the same on its
out-of-fold predictions (:mod:`cxr_fast.training.folds`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cxr_fast.device import resolve_device
from cxr_fast.metrics import SHIFT, binary_metrics, threshold_choice, uses_shift_policy
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import METRICS_FILE, atomic_write_json, load_run, read_json, save_model
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.shift import CLEAN, SHIFTS, shifted_probabilities


def wants_shift_threshold(config: TrainConfig, run_dir: Path) -> bool:
    """Whether the one-model run in ``run_dir`` still needs its shift threshold: ``config``
    asks for it (a target sensitivity overrides every policy) and the stored one is another
    policy's (training stores the margin threshold at each best epoch)."""
    if not uses_shift_policy(config.threshold_policy, config.target_sensitivity):
        return False
    if not (run_dir / METRICS_FILE).is_file():
        return False
    return read_json(run_dir / METRICS_FILE).get("threshold_choice", {}).get("policy") != SHIFT


def rethreshold_under_shift(
    run_dir: Path, config: TrainConfig, log: Callable[[str], None] = print
) -> float:
    """Choose the shift threshold of the one-model run in ``run_dir`` on its validation split,
    store it and return it."""
    from cxr_fast.training.trainer import plan  # trainer imports the training loop: lazily

    device = resolve_device(config.device)
    model, info = load_run(run_dir, device)
    val = plan(config).data.val
    log(f"threshold: re-scoring the {len(val)} validation films under {', '.join(SHIFTS)}")
    probs = shifted_probabilities(
        model,
        val,
        info.contract,
        inference_precision(device),
        device=str(device),
        workers=config.workers,
        seed=config.seed,
    )
    decoded = ~np.isnan(probs[CLEAN])
    labels = np.array([r.label for r in val])[decoded]
    clean = probs.pop(CLEAN)[decoded]
    choice = threshold_choice(
        labels, clean, policy=SHIFT, shifted={k: v[decoded] for k, v in probs.items()}
    )
    metrics = read_json(run_dir / METRICS_FILE)
    metrics.update(binary_metrics(labels, clean, choice["threshold"], seed=config.seed))
    metrics["threshold_choice"] = choice
    meta = {
        **info.meta,
        "threshold": choice["threshold"],
        "threshold_rule": choice["policy"],
        "threshold_choice": choice,
    }
    # The model as saved (not the loaded module, which may wrap it): same state dict.
    save_model(run_dir, model, meta)
    atomic_write_json(metrics, run_dir / METRICS_FILE)
    return float(choice["threshold"])
