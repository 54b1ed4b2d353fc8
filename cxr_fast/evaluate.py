"""``run_evaluate``: a trained run on a labeled folder -> metrics, plots and a table."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_fast.configs import EvalConfig
from cxr_fast.data.batch import Batch
from cxr_fast.data.discover import discover, require_images
from cxr_fast.data.loaders import make_loader
from cxr_fast.data.preflight import find_bad_files
from cxr_fast.device import resolve_device
from cxr_fast.errors import UserInputError
from cxr_fast.gate import InputGate
from cxr_fast.inference import predict_logits, sigmoid
from cxr_fast.leakage import leakage, leakage_warning
from cxr_fast.metrics import binary_metrics, describe_threshold, format_metrics
from cxr_fast.models.ensemble import TTA_VIEWS
from cxr_fast.outputs import creatable_folder
from cxr_fast.plots import save_plots
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import (
    METRICS_FILE,
    MODEL_FILE,
    atomic_write_json,
    load_run,
    read_json,
    sha256,
)
from cxr_fast.text import agree, plural

EVAL_DIR = "eval"


@dataclass(frozen=True)
class EvalResult:
    """Metrics (as written to metrics.json), where they went, the plots, and each file's
    probability of PNEUMONIA."""

    metrics: dict
    out_dir: Path
    plots: dict[str, Path]
    probabilities: dict[str, float]

    def warning(self) -> str | None:
        """The leakage warning, when the evaluated data overlaps the run's training data."""
        return leakage_warning(self.metrics.get("leakage"), self.metrics["data"])

    def summary(self, as_json: bool = False) -> str:
        """The metrics table with the threshold's source and where files went (or the JSON)."""
        m = self.metrics
        if as_json:
            return json.dumps(m, indent=2)
        skipped = f" ({m['n_skipped']} unreadable, left out)" if m.get("n_skipped") else ""
        if m.get("n_not_cxr"):
            skipped += (
                f" ({plural(m['n_not_cxr'], 'image')} not a chest X-ray by the input gate, left "
                "out: --accept-ood keeps them)"
            )
        plots = "".join(f"\nplot:    {path}" for path in self.plots.values())
        return (
            f"run {m['run']} on {m['data']}: {plural(m['counts']['n'], 'image')}{skipped}\n"
            f"{describe_threshold(m)}\n\n{format_metrics(m)}\n"
            f"\nmetrics: {self.out_dir / METRICS_FILE}{plots}"
        )


def default_out_dir(run_dir: Path, data: Path) -> Path:
    """``RUN/eval/<data folder name>-<8 hex of its absolute path>``: two data folders that
    share a name (site_a/test, site_b/test) never share an evaluation folder."""
    resolved = data.resolve()
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:8]
    return run_dir / EVAL_DIR / f"{resolved.name or 'data'}-{digest}"


def data_sha256(root: Path, records) -> str:
    """What the evaluated data was: sorted relative paths and sizes."""
    lines = sorted(f"{os.path.relpath(r.path, root)}\t{os.path.getsize(r.path)}" for r in records)
    # fsencode: the names' bytes, also of names that are not UTF-8.
    return hashlib.sha256(os.fsencode("\n".join(lines))).hexdigest()


def _refuse_other(out_dir: Path, data_sha: str, model_sha: str) -> None:
    """UserInputError when ``out_dir`` holds an evaluation of other data or another model."""
    path = out_dir / METRICS_FILE
    if not path.is_file():
        return
    try:
        old = read_json(path)
    except ValueError:
        old = {}
    if old.get("data_sha256") == data_sha and old.get("model_sha256") == model_sha:
        return  # the same evaluation again: rewritten
    what = "other data" if old.get("data_sha256") != data_sha else "another model"
    raise UserInputError(
        f"{out_dir} holds an evaluation of {what} ({old.get('data', '?')}): pass --overwrite "
        "to replace it, or choose another --out"
    )


def _gated(batches: Iterable[Batch], gate: InputGate, refused: dict[int, str]) -> Iterator[Batch]:
    """``batches`` unchanged, noting in ``refused`` (record index -> reason) each film the input
    gate refuses."""
    for batch in batches:
        if batch.x is not None:
            index = batch.index.tolist()
            infos = [batch.info.get(i) for i in index]
            for i, judgement in zip(index, gate.judge(batch.x, infos), strict=True):
                if judgement.refused:
                    refused[i] = judgement.reason
        yield batch


def _labelled_records(data: Path, threshold: float | None) -> list:
    """The images under ``data``, every one labelled; the threshold, if given, in [0, 1]."""
    records = require_images(discover(data), str(data))
    unlabeled = sum(r.label is None for r in records)
    if unlabeled:
        raise UserInputError(
            f"{unlabeled:,} of {plural(len(records), 'image')} under {data} "
            f"{agree(unlabeled, 'has', 'have')} no label: evaluation needs "
            "NORMAL/ and PNEUMONIA/ folders (use `cxr-fast score` for unlabeled archives)"
        )
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UserInputError(f"threshold must be in [0, 1], got {threshold}")
    return records


def _predict(model, info, records, config: EvalConfig, target, progress):
    """(record index, logits, films the input gate refused: index -> reason, files that went
    bad after the pre-flight check) for ``records``; refused films are left out of the index
    and logits unless ``config.accept_ood``."""
    batches = make_loader(
        records,
        info.contract,
        batch_size=config.batch_size,
        loader=config.loader,
        device=str(target),
        workers=config.workers,
        on_error="collect",  # the pixels score sees, and every file accounted for
    )
    refused: dict[int, str] = {}
    index, logits, _ = predict_logits(
        model,
        _gated(batches, InputGate.from_meta(info.meta, info.contract), refused),
        inference_precision(target, config.precision),
        progress,
    )
    if refused and not config.accept_ood:
        kept = np.array([i not in refused for i in index], dtype=bool)
        index, logits = index[kept], logits[kept]
    return index, logits, refused, batches.skipped


def run_evaluate(config: EvalConfig, progress: Callable[[int], None] | None = None) -> EvalResult:
    """Score every labeled image under ``config.data`` with the run's model, contract and
    threshold (``config.threshold`` overrides the run's), and write metrics.json and plots."""
    run_dir, data, threshold = config.run, config.data, config.threshold
    target = resolve_device(config.device)
    model, info = load_run(run_dir, target, tta=config.tta)
    records = _labelled_records(data, threshold)
    out_dir = config.out or default_out_dir(run_dir, data)
    data_sha, model_sha = data_sha256(data, records), sha256(run_dir / MODEL_FILE)
    if not config.overwrite:
        _refuse_other(out_dir, data_sha, model_sha)
    creatable_folder(out_dir)  # before any image is scored, not after
    # Unreadable files are reported, not fatal: a DALI pipeline would die on the first one.
    bad = find_bad_files(records, config.workers or None)
    dropped = {b.path for b in bad}
    records = require_images([r for r in records if r.path not in dropped], str(data))
    index, logits, refused, later = _predict(model, info, records, config, target, progress)
    skipped = [*(vars(b) for b in bad), *({"path": p, "reason": r} for p, r in later)]
    labels = np.array([records[i].label for i in index])
    probs = sigmoid(logits)
    chosen = info.threshold if threshold is None else threshold
    metrics = {
        "run": str(run_dir),
        "data": str(data),
        "data_sha256": data_sha,
        "model_sha256": model_sha,
        "leakage": leakage(info.config, records),
        "threshold_source": "run" if threshold is None else "--threshold",
        "threshold_choice": info.meta.get("threshold_choice") if threshold is None else None,
        "members": info.members,
        "tta": list(TTA_VIEWS) if config.tta else None,
        "temperature": info.temperature,
        "bias": info.bias,
        "n_skipped": len(skipped),
        "skipped": skipped,
        "n_not_cxr": 0 if config.accept_ood else len(refused),
        "not_cxr": [{"path": records[i].path, "reason": r} for i, r in sorted(refused.items())],
        **binary_metrics(labels, probs, chosen, bootstrap=config.bootstrap),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(metrics, out_dir / METRICS_FILE)
    plots = save_plots(labels, probs, metrics, out_dir, title=f"{info.arch} on {data.name}")
    probabilities = {records[i].path: float(p) for i, p in zip(index, probs, strict=True)}
    return EvalResult(metrics=metrics, out_dir=out_dir, plots=plots, probabilities=probabilities)
