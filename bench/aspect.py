"""How much a run's scores depend on a film's geometry: out-of-fold films re-scored with their
aspect ratio changed (:func:`cxr_fast.data.augment.stretch_image`: width x sqrt(r), height /
sqrt(r)), zoomed about the centre or shifted up and down (the training augmentation's affine,
black fill), by the member that never saw their patient.

    python -m bench.aspect runs/r18 [--per-fold 200] [--ratios 0.7 0.85 1 1.18 1.43]
                                    [--zooms 0.75 0.85 1.15 1.3] [--shifts -0.1 0.1]

The Kaggle films were stretched to a square from originals of different shapes, so a chest's
proportions at the model's input carry the original's aspect ratio, which differs between
acquisitions. A model that reads it moves its scores when only the proportions change; a model
trained with ``--stretch`` should not. The same holds for the size and place of the chest in
the frame, which depend on the child's age and on how the film was taken.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import affine_image, stretch_image
from cxr_fast.data.batch import normalise_uint8
from cxr_fast.data.discover import Record
from cxr_fast.data.equalize import equalize_uint8
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.labels import CLASS_NAMES
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run, read_run

View = Callable[[torch.Tensor], torch.Tensor]


def grey_contract(contract: PreprocessContract) -> PreprocessContract:
    """``contract`` stopped after resizing: grey levels / 255, no standardisation."""
    return replace(contract, mean=None, std=None, normalize="none")


def contract_input(grey: torch.Tensor, contract: PreprocessContract) -> torch.Tensor:
    """[N,1,S,S] grey levels in [0, 1] (rounded to uint8, as a film is) -> the model's input
    under ``contract``'s steps after resizing."""
    pixels = grey.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)  # NHWC
    if contract.normalize == "equalize":
        planes = pixels.cpu().numpy()
        pixels = torch.from_numpy(np.stack([equalize_uint8(p) for p in planes])).to(grey.device)
    return normalise_uint8(pixels, contract)


def identity(image: torch.Tensor) -> torch.Tensor:
    """The film as it is."""
    return image


def stretch_view(ratio: float) -> View:
    """The film with its aspect ratio multiplied by ``ratio``."""
    return identity if ratio == 1 else partial(stretch_image, ratio=ratio)


def affine_view(zoom: float = 1.0, shift: float = 0.0) -> View:
    """The film zoomed by ``zoom`` about the centre and moved down by ``shift`` of its height,
    with the training augmentation's affine (:func:`cxr_fast.data.augment.affine_image`)."""

    def view(image: torch.Tensor) -> torch.Tensor:
        return affine_image(image, translate=(0.0, shift * image.shape[-2]), scale=zoom)

    return view


def view_logits(
    run: Path, views: dict[Any, View], per_fold: int, seed: int = 0
) -> tuple[np.ndarray, dict[Any, np.ndarray]]:
    """(labels, view name -> logits) of ``per_fold`` random out-of-fold films of each member."""
    oof = pq.read_table(run / "oof.parquet").to_pylist()
    # Each member's scale in the ensemble (runs from before the alignment: none).
    alignment = read_run(run)[1].meta.get("member_alignment") or None
    rng = np.random.default_rng(seed)
    precision = inference_precision(torch.device("cpu"))
    labels, out = [], {name: [] for name in views}
    for fold in sorted({row["fold"] for row in oof}):
        rows = [row for row in oof if row["fold"] == fold]
        chosen = rng.choice(len(rows), min(per_fold, len(rows)), replace=False)
        records = [
            Record(rows[i]["path"], rows[i]["label"], None, rows[i]["patient"]) for i in chosen
        ]
        model, info = load_run(run / "members" / f"fold-{fold}")
        scale, shift = alignment[fold - 1] if alignment else (1.0, 0.0)
        loader = make_scoring_loader(LoaderSpec(records, grey_contract(info.contract), 64))
        with torch.inference_mode():
            for batch in loader:
                labels.append(batch.y.numpy())
                for name, view in views.items():
                    x = contract_input(view(batch.x), info.contract).contiguous(
                        memory_format=torch.channels_last
                    )
                    with precision.autocast(model):
                        logits = model(x).float().reshape(-1).numpy()
                    out[name].append(scale * logits + shift)
    return np.concatenate(labels), {name: np.concatenate(v) for name, v in out.items()}


def aspect_logits(
    run: Path, ratios: list[float], per_fold: int, seed: int = 0
) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """(labels, ratio -> logits) of ``per_fold`` random out-of-fold films of each member."""
    return view_logits(run, {r: stretch_view(r) for r in ratios}, per_fold, seed)


def _table(title: str, labels: np.ndarray, logits: dict, cut: float) -> str:
    names = " | ".join(f"{name} mean logit | {name} called PNEUMONIA" for name in CLASS_NAMES)
    lines = [f"| {title} | {names} |", "|---:|" + "---:|---:|" * len(CLASS_NAMES)]
    for key, z in logits.items():
        cells = " | ".join(
            f"{z[labels == k].mean():+.2f} | {(z[labels == k] >= cut).mean():.1%}"
            for k in range(len(CLASS_NAMES))
        )
        lines.append(f"| {key if isinstance(key, str) else f'{key:g}'} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aspect", description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--per-fold", type=int, default=200)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.7, 0.85, 1.0, 1.18, 1.43])
    parser.add_argument(
        "--zooms", type=float, nargs="*", default=[0.75, 0.85, 1.15, 1.3], help="none: skip"
    )
    parser.add_argument(
        "--shifts", type=float, nargs="*", default=[-0.1, 0.1], help="of the height; none: skip"
    )
    args = parser.parse_args(argv)
    views: dict[Any, View] = {r: stretch_view(r) for r in args.ratios}
    placed = {f"zoom {z:g}": affine_view(zoom=z) for z in args.zooms}
    placed |= {f"shift {f:+g}": affine_view(shift=f) for f in args.shifts}
    labels, logits = view_logits(args.run, views | placed, args.per_fold)
    threshold = load_run(args.run)[1].threshold
    cut = np.log(threshold / (1 - threshold))
    print(
        f"{args.run}: {len(labels)} out-of-fold films by aspect ratio r; mean logit, and the "
        f"share called PNEUMONIA at the run's threshold {threshold:.3f}"
    )
    ratios = {r: logits[r] for r in views}
    print(_table("r (width x sqrt r, height / sqrt r)", labels, ratios, cut))
    if placed:
        print("\nthe same films zoomed about the centre or moved down (black fill)")
        unchanged = {"as they are": logits[1.0]} if 1.0 in logits else {}
        moved = unchanged | {name: logits[name] for name in placed}
        print(_table("view", labels, moved, cut))


if __name__ == "__main__":
    main()
