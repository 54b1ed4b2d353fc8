"""Recipe ablation: train each recipe on the Kaggle training split and judge it on the patient
validation split and on the external test sample, at the stored threshold and at Youden's.

    python -m bench.ablation --data ../shared/data/kaggle224 \
        --external ../shared/data/kaggle-test-sample --out runs/ablation [--only NAME ...]

Each recipe trains once into ``OUT/NAME`` (an existing finished run is reused) and appends one
JSON line to ``OUT/results.jsonl``; ``--table`` prints the Markdown table docs/results.md shows.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cxr_fast.data.augment import Augment
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.inference import sigmoid
from cxr_fast.metrics import binary_metrics, threshold_choice
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run, read_json
from cxr_fast.scoring.model import module_model
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.trainer import plan, run_train

# name -> (description, overrides of the plain TrainConfig)
RECIPES: dict[str, tuple[str, dict]] = {
    "base": ("cnn 224 px, recipe of the first wave (bf16 autocast)", {}),
    "per-image": ("+ per-image standardisation", {"normalize": "per-image"}),
    "aug2": ("+ augmentation ranges x2", {"augment": Augment().scaled(2.0)}),
    "ema-ls": ("+ EMA 0.998 and label smoothing 0.1", {"ema_decay": 0.998, "label_smoothing": 0.1}),
    "all": (
        "per-image + aug x2 + EMA + label smoothing",
        {
            "normalize": "per-image",
            "augment": Augment().scaled(2.0),
            "ema_decay": 0.998,
            "label_smoothing": 0.1,
        },
    ),
    "all-mixup": (
        "all + mixup 0.2",
        {
            "normalize": "per-image",
            "augment": Augment().scaled(2.0),
            "ema_decay": 0.998,
            "label_smoothing": 0.1,
            "mixup": 0.2,
        },
    ),
    "aug3": ("+ augmentation ranges x3", {"augment": Augment().scaled(3.0)}),
    "aug2-per-image": (
        "+ augmentation ranges x2 and per-image standardisation",
        {"augment": Augment().scaled(2.0), "normalize": "per-image"},
    ),
    "aug2-e20": (
        "+ augmentation ranges x2, 20 epochs",
        {"augment": Augment().scaled(2.0), "epochs": 20},
    ),
    "fp32": ("base in fp32 (precision check)", {"precision": "fp32"}),
    "aug2-s128": (
        "+ augmentation ranges x2, 128 px",
        {"augment": Augment().scaled(2.0), "image_size": 128},
    ),
    "aug2-s160": (
        "+ augmentation ranges x2, 160 px",
        {"augment": Augment().scaled(2.0), "image_size": 160},
    ),
    "aug2-acq-s160": (
        "+ augmentation ranges x2 and acquisition (blur, gamma, noise), 160 px",
        {"augment": Augment(blur=1.0, gamma=0.25, noise=4.0).scaled(2.0), "image_size": 160},
    ),
    "aug2-acq-r18-s128": (
        "resnet18, augmentation ranges x2 and acquisition (blur, gamma, noise), 128 px",
        {
            "augment": Augment(blur=1.0, gamma=0.25, noise=4.0).scaled(2.0),
            "image_size": 128,
            "arch": "resnet18",
        },
    ),
    "aug2-r18-s128": (
        "resnet18 (from scratch), augmentation ranges x2, 128 px",
        {"augment": Augment().scaled(2.0), "image_size": 128, "arch": "resnet18"},
    ),
    # One model of today's default recipe (resnet18, 128 px, augmentation x2; TrainConfig's
    # defaults) and single changes to it, screened before a full 3-fold run.
    "now-default": ("today's default recipe, one model", {}),
    "now-erase": ("+ random erasing p=0.5", {"erase": 0.5}),
    "now-s96": ("at 96 px", {"image_size": 96}),
    "now-crop85": ("+ central crop 0.85 in the contract", {"crop": 0.85}),
    "now-v02": ("trained on 98% of the images (2% validation)", {"val_fraction": 0.02}),
    "now-seed1": ("today's default recipe, seed 1 (the screens' seed noise)", {"seed": 1}),
    "now-ema": ("+ EMA of the weights, decay 0.999", {"ema_decay": 0.999}),
    "now-hflip": (
        "+ horizontal flips",
        {"augment": replace(TrainConfig(data="", out="").augment, hflip=True)},
    ),
}


def _probs(run: Path, records, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    model, info = load_run(run)
    loader = make_scoring_loader(LoaderSpec(records, info.contract, batch_size))
    cpu = inference_precision(torch.device("cpu"))
    index, logits, _ = module_model(model, info.contract, cpu).predict(loader)
    return np.array([records[i].label for i in index]), sigmoid(logits)


def _summary(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    m = binary_metrics(labels, probs, threshold, bootstrap=1000)
    keys = ("accuracy", "roc_auc", "sensitivity", "specificity")
    return {**{k: m[k] for k in keys}, "ci95": m["ci95"], "n": m["counts"]["n"]}


def run_recipe(name: str, data: str, external: str, out: Path, epochs: int) -> dict:
    description, overrides = RECIPES[name]
    # One model per variant, as this ablation measured them (the recipe itself trains 5 folds).
    single = TrainConfig(data=data, out=str(out / name), epochs=epochs, folds=1, export="none")
    config = replace(single, **overrides)
    run = Path(config.out)
    timing = run / "ablation_seconds.txt"  # wall time of the training, kept for re-evaluations
    if not (run / "model.pt").exists():
        started = time.perf_counter()
        run_train(config)
        timing.write_text(f"{time.perf_counter() - started:.0f}\n")
    seconds = float(timing.read_text()) if timing.is_file() else float("nan")
    _, info = load_run(run)
    val = plan(config).data.val
    val_y, val_p = _probs(run, val)
    ext = [r for r in discover(external) if r.label is not None]
    ext_y, ext_p = _probs(run, ext)
    youden = threshold_choice(val_y, val_p, policy="youden")["threshold"]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return {
        "recipe": name,
        "description": description,
        "config": config.to_dict(),
        "train_seconds": round(seconds),
        "epochs": len(log),
        "precision": read_json(run / "config.json")["precision"],
        "threshold": info.threshold,
        "threshold_choice": info.meta.get("threshold_choice"),
        "youden_threshold": youden,
        "val": _summary(val_y, val_p, info.threshold),
        "external": _summary(ext_y, ext_p, info.threshold),
        "external_at_youden": _summary(ext_y, ext_p, youden),
    }


def _fmt_ci(m: dict, key: str) -> str:
    ci = m["ci95"].get(key)
    return f"{m[key]:.3f} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else f"{m[key]:.3f}"


def table(path: Path) -> str:
    """Markdown table of every line of results.jsonl (latest per recipe)."""
    rows = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rows[row["recipe"]] = row
    head = (
        "| recipe | val ROC-AUC (95% CI) | threshold | sample acc (95% CI) | sample ROC-AUC | "
        "sens | spec | sample acc at Youden | train s |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows.values():
        v, e, y = r["val"], r["external"], r["external_at_youden"]
        lines.append(
            f"| {r['recipe']}: {r['description']} | {_fmt_ci(v, 'roc_auc')} | "
            f"{r['threshold']:.3f} | {_fmt_ci(e, 'accuracy')} | {e['roc_auc']:.3f} | "
            f"{e['sensitivity']:.3f} | {e['specificity']:.3f} | {y['accuracy']:.3f} "
            f"(t={r['youden_threshold']:.3f}) | {r['train_seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/kaggle224")
    parser.add_argument("--external", default="../shared/data/kaggle-test-sample")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--only", nargs="*", default=list(RECIPES))
    parser.add_argument("--table", action="store_true", help="print the table and exit")
    args = parser.parse_args(argv)
    results = args.out / "results.jsonl"
    if args.table:
        print(table(results))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        row = run_recipe(name, args.data, args.external, args.out, args.epochs)
        with results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("recipe", "val", "external", "train_seconds")}))


if __name__ == "__main__":
    main()
