"""The ``shift`` threshold policy on a finished ensemble run, for each set of simulated shifts:
what `cxr-fast train` stores by default, and what a narrower set would have stored.

    python -m bench.shift_threshold runs/r18 [--sample ../shared/data/kaggle-test-sample]

Every out-of-fold film (the run's oof.parquet names its fold) is re-scored by the member that
never saw its patient, as it is and under each of :data:`cxr_fast.training.shift.SHIFTS` (the
code `train` runs); the table gives each shift's best Youden J and where it lies, then the
threshold :func:`cxr_fast.metrics.threshold_choice` picks with ``policy="shift"`` from all of
them (the default) and from the ``--site-aug`` ranges alone. With ``--sample``, the run's
accuracy there at each threshold: a confirmation, not a choice.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.inference import sigmoid
from cxr_fast.metrics import SHIFT_GRID, binary_metrics, j_curve, threshold_choice
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run, read_json
from cxr_fast.scoring.model import module_model
from cxr_fast.training.shift import CLEAN, SHIFTS, shifted_out_of_fold

# The --site-aug 1 ranges (blur up to 1 px, gamma 0.8-1.25, grain 4), without the 2 px blur.
SITE_AUG_SET = ("blur 1 px", "gamma 0.8", "gamma 1.25", "grain 4 levels")


def shifted_oof(run: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(labels, name -> out-of-fold probabilities, ``clean`` included) of an ensemble run,
    re-scored as `train` does (:func:`cxr_fast.training.shift.shifted_out_of_fold`)."""
    oof = pq.read_table(run / "oof.parquet").to_pylist()
    folds = np.array([row["fold"] for row in oof]) - 1  # oof.parquet counts folds from 1
    loaded = [load_run(run / "members" / f"fold-{k + 1}") for k in range(folds.max() + 1)]
    records = [Record(row["path"], row["label"], None, row["patient"]) for row in oof]
    probs = shifted_out_of_fold(
        [model for model, _ in loaded],
        records,
        folds,
        loaded[0][1].contract,
        inference_precision(torch.device("cpu")),
        seed=read_json(run / "config.json")["seed"],
    )
    return np.array([row["label"] for row in oof]), probs


def _sample_rows(run: Path, sample: str, thresholds: Sequence[float]) -> list[str]:
    model, info = load_run(run)
    records = [r for r in discover(sample) if r.label is not None]
    loader = make_scoring_loader(LoaderSpec(records, info.contract, 64))
    cpu = inference_precision(torch.device("cpu"))
    index, logits, _ = module_model(model, info.contract, cpu).predict(loader)
    y = np.array([records[i].label for i in index])
    p = sigmoid(logits)
    lines = []
    for t in thresholds:
        m = binary_metrics(y, p, t)
        low, high = m["ci95"]["accuracy"]
        lines.append(
            f"| {t:.3f} | {m['accuracy']:.3f} ({low:.3f}-{high:.3f}) | {m['sensitivity']:.3f} | "
            f"{m['specificity']:.3f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shift_threshold", description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--sample", default=None)
    args = parser.parse_args(argv)
    labels, probs = shifted_oof(args.run)
    stored = float(load_run(args.run)[1].threshold)
    print("| variant | best J | at | NORMAL 90th percentile | PNEUMONIA 10th percentile |")
    print("|---|---:|---:|---:|---:|")
    for name, p in probs.items():
        j = j_curve(labels, p, SHIFT_GRID)
        best = int(np.argmax(j))
        print(
            f"| {name} | {j[best]:.4f} | {SHIFT_GRID[best]:.3f} | "
            f"{np.quantile(p[labels == 0], 0.9):.3f} | {np.quantile(p[labels == 1], 0.1):.3f} |"
        )
    clean = probs.pop(CLEAN)
    thresholds = {"stored by the run": stored}
    for name, keys in (("all shifts (the default)", SHIFTS), ("site-aug ranges", SITE_AUG_SET)):
        choice = threshold_choice(
            labels, clean, policy="shift", shifted={k: probs[k] for k in keys}
        )
        low, high = choice["interval"]
        thresholds[f"shift policy over {name}, interval {low:.3f}-{high:.3f}"] = choice["threshold"]
    for name, t in thresholds.items():
        print(f"{name}: {t:.3f}")
    if args.sample:
        print("| threshold | sample accuracy (95% CI) | sensitivity | specificity |")
        print("|---|---:|---:|---:|")
        print("\n".join(_sample_rows(args.run, args.sample, list(thresholds.values()))))


if __name__ == "__main__":
    main()
