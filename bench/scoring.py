"""Model and end-to-end scoring throughput, beside torchvision ImageFolder + DataLoader + an
eager NCHW scorer on the same files and the same weights.

Each architecture needs a trained run: pass one (``--run-cnn runs/kaggle-cnn224``) or the
benchmark trains a small one on the benchmark images once (cached under .cache/bench/runs).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from bench.images import CACHE
from bench.report import Row, measure
from bench.training import ARCHS
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.export import export_run, load_exported
from cxr_fast.export.onnx import onnx_missing
from cxr_fast.models import build_model
from cxr_fast.run_folder import MODEL_FILE, load_run
from cxr_fast.scoring.score import ScoreConfig, run_score
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.trainer import run_train

# (row name, export format, precision); None: the run folder itself (eager).
VARIANTS = (
    ("eager", None, None),
    ("torchscript", "torchscript", "fp32"),
    ("pt2", "pt2", "fp32"),
    ("int8", "torchscript", "int8"),
    ("onnx", "onnx", "fp32"),
    ("onnx-int8", "onnx", "int8"),
)


def bench_run(arch: str, images: Path, given: Path | None) -> Path:
    """A trained run for ``arch``: the one given, or a small one trained once on ``images``."""
    if given is not None:
        return given
    out = CACHE / "runs" / f"{arch}-{images.name}"
    if not (out / MODEL_FILE).exists():
        config = TrainConfig(
            data=str(images),
            out=str(out),
            arch=arch,
            epochs=2,
            image_size=224,
            batch_size=32,
            workers=2,
            val_fraction=0.2,
            folds=1,
            export="none",
        )
        run_train(config, log=lambda _: None)
    return out


def _model_file(run: Path, fmt: str | None, precision: str | None, images: Path) -> Path | None:
    if fmt is None:
        return run
    if fmt == "onnx" and onnx_missing() is not None:
        return None  # the onnx extra is not installed: no ONNX Runtime rows
    result = export_run(run, fmt, precision=precision, data=images, device="cpu")
    return result.path


def _baseline_scores(
    model: torch.nn.Module, root: Path, size: int, batch_size: int, workers: int
) -> list[float]:
    """What a user writes: ImageFolder, Grayscale/Resize/ToTensor, DataLoader, eager model."""
    transform = transforms.Compose(
        [transforms.Grayscale(1), transforms.Resize((size, size)), transforms.ToTensor()]
    )
    loader = DataLoader(
        datasets.ImageFolder(str(root), transform=transform),
        batch_size=batch_size,
        num_workers=workers,
    )
    probs: list[float] = []
    with torch.inference_mode():
        for x, _ in loader:
            probs += torch.sigmoid(model(x)).reshape(-1).tolist()
    return probs


def _score_pass(model_ref: Path, root: Path, out: Path, batch_size: int, workers: int) -> int:
    summary = run_score(
        ScoreConfig(
            archive=root,
            model=model_ref,
            # The run folder row is the eager model (bf16 where the CPU has it), not the
            # export --backend auto would pick from RUN/export/.
            backend="eager" if model_ref.is_dir() else "auto",
            out=out,
            overwrite=True,
            device="cpu",
            batch_size=batch_size,
            workers=workers,
        )
    )
    return summary.rows


def _model_pass(forward, x: torch.Tensor, repeats: int = 3) -> int:
    with torch.inference_mode():
        for _ in range(repeats):
            forward(x)
    return repeats * x.shape[0]


def scoring_rows(
    images: Path,
    *,
    runs: dict[str, Path | None],
    batch_size: int,
    workers: int,
    warmup: int,
    repeats: int,
) -> list[Row]:
    """Rows ``model-<arch>-<variant>`` and ``score-<arch>-<variant>`` with their baselines."""
    records = discover(images)
    labels = np.array([r.label for r in records])
    rows: list[Row] = []
    common = dict(warmup=warmup, repeats=repeats)
    out_dir = CACHE / "score-out"
    for arch in ARCHS:
        run = bench_run(arch, images, runs.get(arch))
        eager, info = load_run(run)
        size = info.contract.image_size
        plain = build_model(arch).eval()
        plain.load_state_dict(eager.state_dict())  # same weights, NCHW
        batch = next(
            iter(make_scoring_loader(LoaderSpec(records, info.contract, 64, workers=0), "torch"))
        )
        rows.append(
            measure(
                f"model-{arch}-baseline",
                "eager NCHW fp32, batch 64",
                functools.partial(_model_pass, plain, batch.x.contiguous()),
                **common,
            )
        )
        baseline = functools.partial(
            lambda m, n: len(_baseline_scores(m, images, n, batch_size, workers)), plain, size
        )
        rows.append(
            measure(
                f"score-{arch}-baseline",
                f"ImageFolder+DataLoader, eager NCHW, {workers} workers, batch {batch_size}",
                baseline,
                **common,
            )
        )
        reference = None
        for name, fmt, precision in VARIANTS:
            ref = _model_file(run, fmt, precision, images)
            if ref is None:
                continue
            forward = eager if fmt is None else load_exported(ref)[0]
            rows.append(
                measure(
                    f"model-{arch}-{name}",
                    f"{'channels_last ' if fmt is None else ''}{name}, batch 64",
                    functools.partial(_model_pass, forward, batch.x),
                    **common,
                )
            )
            out = out_dir / f"{arch}-{name}.parquet"
            run_pass = functools.partial(_score_pass, ref, images, out, batch_size, workers)
            row = measure(f"score-{arch}-{name}", "", run_pass, **common)
            table = pq.read_table(out, columns=["path", "prob_pneumonia"]).to_pylist()
            probs = {r["path"]: r["prob_pneumonia"] for r in table}
            ordered = np.array([probs[r.path] for r in records])
            if reference is None:
                reference = ordered
            diff = float(np.abs(ordered - reference).max())
            detail = (
                f"cxr-fast score, {workers} workers, batch {batch_size}, max |p - eager| {diff:.1e}"
            )
            if len(set(labels.tolist())) == 2:
                auc = roc_auc_score(labels, ordered) - roc_auc_score(labels, reference)
                detail += f", ROC-AUC change {auc:+.4f}"
            rows.append(Row(stage=row.stage, detail=detail, images=row.images, repeats=row.repeats))
    return rows
