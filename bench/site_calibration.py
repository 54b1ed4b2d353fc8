"""How well does site calibration transfer to films it was not fitted on?

`cxr-fast calibrate` reports the sample's metrics after fitting on that same sample, which is
optimistic; `cxr-fast calibrate --cross-fit K` adds one cross-fitted estimate of the chosen
policy. This bench runs the same code (`cxr_fast.calibrate.cross_fitted`) more widely: the site
sample is split by patient into K folds; the calibration (`cxr_fast.calibrate.fit_site`) is
fitted on K-1 folds and applied to the held-out fold, and the held-out predictions of every fold
are pooled. Every policy is reported, with the default prior and without one (plain maximum
likelihood), over several random patient splits. One inference pass over the sample; the rest
is arithmetic.

`calibrate` fits on the whole sample; the default 10 folds fit on 90% of it, close to that
size. Two folds (halves) fit on half as many films and so understate what calibration does.

    python -m bench.site_calibration runs/default --data ../shared/data/kaggle-test-sample
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from cxr_fast.calibrate import cross_fit_summary as _summary
from cxr_fast.calibrate import cross_fitted
from cxr_fast.choices import CALIBRATION_POLICIES
from cxr_fast.configs import CalibrateConfig
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.data.split import patient_folds
from cxr_fast.inference import sigmoid
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run
from cxr_fast.scoring.model import module_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--data", default="../shared/data/kaggle-test-sample")
    parser.add_argument("--folds", type=int, default=10, help="patient folds  [default: 10]")
    parser.add_argument(
        "--prior-strength",
        type=float,
        default=CalibrateConfig.prior_strength,
        help="calibrate's --prior-strength; every policy is also reported with 0",
    )
    parser.add_argument("--splits", type=int, default=10, help="random patient splits")
    args = parser.parse_args(argv)
    records = [r for r in discover(args.data) if r.label is not None]
    model, info = load_run(args.run)
    loader = make_scoring_loader(LoaderSpec(records, info.contract, 64))
    cpu = inference_precision(torch.device("cpu"))
    index, logits, _ = module_model(model, info.contract, cpu).predict(loader)
    records = [records[i] for i in index]
    labels = np.array([r.label for r in records])
    as_trained = (sigmoid(logits) >= info.threshold).astype(np.int64)
    report = {
        "run": args.run,
        "n": int(labels.size),
        "folds": args.folds,
        "as_trained": _summary(labels, as_trained, 1000),
    }
    priors = dict.fromkeys((args.prior_strength, 0.0))  # ordered, once each
    for policy, prior in ((p, s) for p in CALIBRATION_POLICIES for s in priors):
        name = f"cross_fitted_{policy}" + ("" if prior == args.prior_strength else "_no_prior")
        accuracies = []
        for seed in range(args.splits):
            folds = patient_folds(records, args.folds, seed=seed)
            pred = cross_fitted(
                logits, labels, folds, args.folds, policy, threshold=info.threshold, prior=prior
            )
            if seed == 0:
                report[name] = {"prior_strength": prior} | _summary(labels, pred, 1000)
            accuracies.append(float((pred == labels).mean()))
        report[name]["accuracy_over_splits"] = {
            "mean": round(float(np.mean(accuracies)), 4),
            "min": round(min(accuracies), 4),
            "max": round(max(accuracies), 4),
            "splits": args.splits,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
