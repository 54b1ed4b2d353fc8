"""How well does site calibration transfer to films it was not fitted on?

`cxr-fast calibrate` reports the sample's metrics after fitting on that same sample, which is
optimistic. This cross-fits: the site sample is split by patient into K folds; the temperature
and threshold are fitted on K-1 folds and applied to the held-out fold, and the held-out
predictions of every fold are pooled. One inference pass over the sample; the rest is arithmetic.

    python -m bench.site_calibration runs/default --data ../shared/data/kaggle-test-sample
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from cxr_fast.calibrate import fit_temperature
from cxr_fast.data.discover import discover
from cxr_fast.data.loaders import make_loader
from cxr_fast.data.split import patient_folds
from cxr_fast.inference import predict_logits, sigmoid
from cxr_fast.metrics import binary_metrics, threshold_choice
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run


def cross_fitted(
    logits: np.ndarray, labels: np.ndarray, folds: list[int], k: int, policy: str
) -> np.ndarray:
    """Held-out predictions (1 = PNEUMONIA) of every fold, the calibration fitted without it."""
    pred = np.zeros(labels.size, dtype=np.int64)
    folds_arr = np.asarray(folds)
    for fold in range(k):
        fit, held = folds_arr != fold, folds_arr == fold
        temperature = fit_temperature(logits[fit], labels[fit])
        threshold = threshold_choice(labels[fit], sigmoid(logits[fit] / temperature), policy=policy)
        pred[held] = sigmoid(logits[held] / temperature) >= threshold["threshold"]
    return pred


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--data", default="../shared/data/kaggle-test-sample")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--policy", default="margin", choices=("margin", "youden"))
    args = parser.parse_args(argv)
    records = [r for r in discover(args.data) if r.label is not None]
    model, info = load_run(args.run)
    loader = make_loader(records, info.contract, batch_size=64, device="cpu")
    index, logits, _ = predict_logits(model, loader, inference_precision(torch.device("cpu")))
    records = [records[i] for i in index]
    labels = np.array([r.label for r in records])
    folds = patient_folds(records, args.folds, seed=0)
    pred = cross_fitted(logits, labels, folds, args.folds, args.policy)
    # binary_metrics on 0/1 "probabilities" at 0.5 gives the held-out confusion and its CI.
    metrics = binary_metrics(labels, pred.astype(float), 0.5, bootstrap=1000)
    as_trained = binary_metrics(labels, sigmoid(logits), info.threshold, bootstrap=1000)
    keys = ("accuracy", "sensitivity", "specificity")
    print(
        json.dumps(
            {
                "run": args.run,
                "n": int(labels.size),
                "folds": args.folds,
                "as_trained": {k: as_trained[k] for k in keys}
                | {"accuracy_ci95": as_trained["ci95"]["accuracy"]},
                "cross_fitted_calibration": {k: metrics[k] for k in keys}
                | {"accuracy_ci95": metrics["ci95"]["accuracy"]},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
