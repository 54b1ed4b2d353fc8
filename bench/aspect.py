"""How much a run's scores depend on a film's proportions: out-of-fold films re-scored with their
aspect ratio changed (:func:`cxr_fast.data.augment.stretch_image`: width x sqrt(r), height /
sqrt(r)), by the member that never saw their patient.

    python -m bench.aspect runs/r18 [--per-fold 200] [--ratios 0.7 0.85 1 1.18 1.43]

The Kaggle films were stretched to a square from originals of different shapes, so a chest's
proportions at the model's input carry the original's aspect ratio, which differs between
acquisitions. A model that reads it moves its scores when only the proportions change; a model
trained with ``--stretch`` should not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from cxr_fast.data.augment import stretch_image
from cxr_fast.data.discover import Record
from cxr_fast.data.loaders import make_loader
from cxr_fast.labels import CLASS_NAMES
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run
from cxr_fast.training.shift import contract_input, grey_contract


def aspect_logits(
    run: Path, ratios: list[float], per_fold: int, seed: int = 0
) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """(labels, ratio -> logits) of ``per_fold`` random out-of-fold films of each member."""
    oof = pq.read_table(run / "oof.parquet").to_pylist()
    rng = np.random.default_rng(seed)
    precision = inference_precision(torch.device("cpu"))
    labels, out = [], {r: [] for r in ratios}
    for fold in sorted({row["fold"] for row in oof}):
        rows = [row for row in oof if row["fold"] == fold]
        chosen = rng.choice(len(rows), min(per_fold, len(rows)), replace=False)
        records = [
            Record(rows[i]["path"], rows[i]["label"], None, rows[i]["patient"]) for i in chosen
        ]
        model, info = load_run(run / "members" / f"fold-{fold}")
        loader = make_loader(records, grey_contract(info.contract), batch_size=64, device="cpu")
        with torch.inference_mode():
            for batch in loader:
                labels.append(batch.y.numpy())
                for r in ratios:
                    grey = batch.x if r == 1 else stretch_image(batch.x, r)
                    x = contract_input(grey, info.contract).contiguous(
                        memory_format=torch.channels_last
                    )
                    with precision.autocast(model):
                        out[r].append(model(x).float().reshape(-1).numpy())
    return np.concatenate(labels), {r: np.concatenate(v) for r, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aspect", description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--per-fold", type=int, default=200)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.7, 0.85, 1.0, 1.18, 1.43])
    args = parser.parse_args(argv)
    labels, logits = aspect_logits(args.run, args.ratios, args.per_fold)
    threshold = load_run(args.run)[1].threshold
    cut = np.log(threshold / (1 - threshold))
    print(
        f"{args.run}: {len(labels)} out-of-fold films by aspect ratio r; mean logit, and the "
        f"share called PNEUMONIA at the run's threshold {threshold:.3f}"
    )
    names = " | ".join(f"{name} mean logit | {name} called PNEUMONIA" for name in CLASS_NAMES)
    print(f"| r (width x sqrt r, height / sqrt r) | {names} |")
    print("|---:|" + "---:|---:|" * len(CLASS_NAMES))
    for r, z in logits.items():
        cells = " | ".join(
            f"{z[labels == k].mean():+.2f} | {(z[labels == k] >= cut).mean():.1%}"
            for k in range(len(CLASS_NAMES))
        )
        print(f"| {r:g} | {cells} |")


if __name__ == "__main__":
    main()
