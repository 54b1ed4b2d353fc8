"""A threshold chosen for simulated acquisition shift: the out-of-fold predictions of an
ensemble run re-made on blurred, gamma-changed and noisy copies of every training film, and
the threshold with the best worst-case Youden J over those copies.

    python -m bench.shift_threshold runs/r18 [--sample ../shared/data/kaggle-test-sample]

Each film is scored by the member that never saw its patient (the run's oof.parquet names the
fold), as it is and under each perturbation of :data:`VARIANTS` (applied to the model's input
at its 128 px; blur sigmas are given in pixels of a 224 px film, as ``--site-aug``'s). For each
set of variants, J(t) is taken as the minimum over the variants on a grid of thresholds, and
the threshold is the logit-middle of the interval where that minimum is within ``--tolerance``
of its best, as the run's own margin policy does for the clean predictions alone. With
``--sample``, the ensemble's accuracy there at each threshold: a confirmation, not a choice.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loaders import make_loader
from cxr_fast.inference import predict_logits, sigmoid
from cxr_fast.metrics import binary_metrics, youden_j
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run
from cxr_fast.training.loop import gaussian_blur

# Per-variant transforms of a [N,1,S,S] batch in [0, 1] (the default contract), at size S.
VARIANTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "clean": lambda x: x,
    "blur 1 px": lambda x: gaussian_blur(x, x.shape[-1] / 224 * 1.0),
    "blur 2 px": lambda x: gaussian_blur(x, x.shape[-1] / 224 * 2.0),
    "gamma 0.8": lambda x: x.clamp(0, 1) ** 0.8,
    "gamma 1.25": lambda x: x.clamp(0, 1) ** 1.25,
    "grain 4 levels": lambda x: (x + torch.randn_like(x) * 4 / 255).clamp(0, 1),
}
# The ranges of `--site-aug 1` (blur up to 1 px, gamma 0.8-1.25, grain 4), and those with a
# stronger blur.
SETS = {
    "site-aug ranges": ("clean", "blur 1 px", "gamma 0.8", "gamma 1.25", "grain 4 levels"),
    "+ blur 2 px": tuple(VARIANTS),
}
GRID = 1 / (1 + np.exp(-np.linspace(-8, 8, 801)))  # thresholds, even in logit space


def worst_case_margin(
    labels: np.ndarray,
    variants: Mapping[str, np.ndarray],
    tolerance: float = 0.01,
    grid: np.ndarray = GRID,
) -> tuple[float, float, float]:
    """(threshold, low, high): the logit-middle of the contiguous grid interval around the
    best minimum-over-variants Youden J where that minimum is within ``tolerance`` of it."""
    worst = np.min([[youden_j(labels, p, t) for t in grid] for p in variants.values()], axis=0)
    best = int(np.argmax(worst))
    good = worst >= worst[best] - tolerance
    lo = hi = best
    while lo > 0 and good[lo - 1]:
        lo -= 1
    while hi + 1 < grid.size and good[hi + 1]:
        hi += 1
    low, high = float(grid[lo]), float(grid[hi])
    middle = (math.log(low / (1 - low)) + math.log(high / (1 - high))) / 2
    return 1 / (1 + math.exp(-middle)), low, high


def perturbed_oof(run: Path, names: Sequence[str] = tuple(VARIANTS)) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities of every training film under each variant (and ``labels``)."""
    oof = pq.read_table(run / "oof.parquet").to_pylist()
    out = {name: np.full(len(oof), np.nan) for name in names}
    precision = inference_precision(torch.device("cpu"))
    torch.manual_seed(0)  # the grain
    for fold in sorted({row["fold"] for row in oof}):
        rows = [i for i, row in enumerate(oof) if row["fold"] == fold]
        model, info = load_run(run / "members" / f"fold-{fold}")
        records = [Record(oof[i]["path"], oof[i]["label"], None, oof[i]["patient"]) for i in rows]
        loader = make_loader(records, info.contract, batch_size=64, device="cpu")
        with torch.inference_mode(), precision.autocast(model):
            for batch in loader:
                at = [rows[j] for j in batch.index.tolist()]
                for name in names:
                    x = VARIANTS[name](batch.x).contiguous(memory_format=torch.channels_last)
                    out[name][at] = torch.sigmoid(model(x).float().squeeze(1)).numpy()
    out["labels"] = np.array([row["label"] for row in oof])
    return out


def _sample_accuracy(run: Path, sample: str, thresholds: Sequence[float]) -> list[str]:
    model, info = load_run(run)
    records = [r for r in discover(sample) if r.label is not None]
    loader = make_loader(records, info.contract, batch_size=64, device="cpu")
    index, logits, _ = predict_logits(model, loader, inference_precision(torch.device("cpu")))
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
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args(argv)
    oof = perturbed_oof(args.run)
    labels = oof.pop("labels")
    stored = float(load_run(args.run)[1].threshold)
    print("| variant | best J | at | NORMAL 90th percentile | PNEUMONIA 10th percentile |")
    print("|---|---:|---:|---:|---:|")
    for name, p in oof.items():
        j = [youden_j(labels, p, t) for t in GRID]
        best = int(np.argmax(j))
        print(
            f"| {name} | {j[best]:.4f} | {GRID[best]:.3f} | {np.quantile(p[labels == 0], 0.9):.3f}"
            f" | {np.quantile(p[labels == 1], 0.1):.3f} |"
        )
    thresholds = {"stored (margin on the clean predictions)": stored}
    for name, keys in SETS.items():
        t, low, high = worst_case_margin(labels, {k: oof[k] for k in keys}, args.tolerance)
        thresholds[f"worst case over {name} ({low:.3f}-{high:.3f})"] = t
    for name, t in thresholds.items():
        print(f"{name}: {t:.3f}")
    if args.sample:
        print("| threshold | sample accuracy (95% CI) | sensitivity | specificity |")
        print("|---|---:|---:|---:|")
        print("\n".join(_sample_accuracy(args.run, args.sample, list(thresholds.values()))))


if __name__ == "__main__":
    main()
