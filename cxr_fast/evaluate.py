"""``run_evaluate``: a trained run or an export on a labeled folder -> metrics, plots, a table."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_fast.configs import EvalConfig
from cxr_fast.data.bad_file_scan import find_bad_files
from cxr_fast.data.batch import Batch
from cxr_fast.data.discover import discover, require_images
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.device import resolve_device
from cxr_fast.errors import UserInputError
from cxr_fast.inference import sigmoid
from cxr_fast.leakage import leakage, leakage_warning
from cxr_fast.metrics import binary_metrics, describe_threshold, format_metrics
from cxr_fast.outputs import creatable_folder
from cxr_fast.plots import save_plots
from cxr_fast.run_folder import METRICS_FILE, atomic_write_json, read_json
from cxr_fast.scoring.gating import judge_batch
from cxr_fast.scoring.model import ScoringModel, load_model
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
    share a name (site_a/test, site_b/test) never share an evaluation folder. For an exported
    file, ``<its folder>/eval/<file name>-<data folder name>-<8 hex>``."""
    resolved = data.resolve()
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:8]
    name = f"{resolved.name or 'data'}-{digest}"
    if run_dir.is_file():
        return run_dir.parent / EVAL_DIR / f"{run_dir.name}-{name}"
    return run_dir / EVAL_DIR / name


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


def _gated(
    batches: Iterable[Batch], model: ScoringModel, refused: dict[int, str]
) -> Iterator[Batch]:
    """``batches`` unchanged, noting in ``refused`` (record index -> reason) each film the
    model's input gate refuses."""
    for batch in batches:
        if batch.x is not None:
            index = batch.index.tolist()
            infos = [batch.info.get(i) for i in index]
            for i, judgement in zip(index, judge_batch(model, batch.x, infos), strict=True):
                if judgement.refused:
                    refused[i] = judgement.reason
        yield batch


def _labelled_records(data: Path) -> list:
    """The images under ``data``, every one labelled (EvalConfig checks the threshold)."""
    records = require_images(discover(data), str(data))
    unlabeled = sum(r.label is None for r in records)
    if unlabeled:
        raise UserInputError(
            f"{unlabeled:,} of {plural(len(records), 'image')} under {data} "
            f"{agree(unlabeled, 'has', 'have')} no label: evaluation needs "
            "NORMAL/ and PNEUMONIA/ folders (use `cxr-fast score` for unlabeled archives)"
        )
    return records


def _predict(model: ScoringModel, records, config: EvalConfig, progress):
    """(record index, logits, films the input gate refused: index -> reason, files that went
    bad after the pre-flight check) for ``records``; refused films are left out of the index
    and logits unless ``config.accept_ood``."""
    # The pixels score sees, and every file accounted for.
    spec = LoaderSpec(records, model.contract, config.batch_size, config.workers, model.device)
    batches = make_scoring_loader(spec, config.loader)
    refused: dict[int, str] = {}
    index, logits, _ = model.predict(_gated(batches, model, refused), progress)
    if refused and not config.accept_ood:
        kept = np.array([i not in refused for i in index], dtype=bool)
        index, logits = index[kept], logits[kept]
    return index, logits, refused, batches.skipped


def _readable(records: list, config: EvalConfig) -> tuple[list, list]:
    """(the records that pass the pre-flight check, the bad files): unreadable files are
    reported, not fatal, as a DALI pipeline would die on the first one."""
    bad = find_bad_files(records, config.workers or None)
    dropped = {b.path for b in bad}
    return require_images([r for r in records if r.path not in dropped], str(config.data)), bad


def _metrics(config: EvalConfig, model: ScoringModel, records, data_sha: str, refused) -> dict:
    """What metrics.json says of the evaluation besides the metrics themselves."""
    threshold = config.threshold
    return {
        "run": str(config.run),
        "data": str(config.data),
        "data_sha256": data_sha,
        "model_sha256": model.checksum,
        "backend": model.backend,
        "leakage": leakage(model.run_config(), records),
        "threshold_source": "run" if threshold is None else "--threshold",
        "threshold_choice": model.meta.get("threshold_choice") if threshold is None else None,
        "members": model.members,
        "tta": model.tta,
        "temperature": model.temperature,
        "bias": model.bias,
        "n_not_cxr": 0 if config.accept_ood else len(refused),
        "not_cxr": [{"path": records[i].path, "reason": r} for i, r in sorted(refused.items())],
    }


def run_evaluate(config: EvalConfig, progress: Callable[[int], None] | None = None) -> EvalResult:
    """Score every labeled image under ``config.data`` with the model ``config.run`` names (a
    run folder or an exported file: :func:`load_model`), its contract and threshold
    (``config.threshold`` overrides it), and write metrics.json and plots."""
    data, threshold = config.data, config.threshold
    model = load_model(config.run, resolve_device(config.device), config.tta, config.precision)
    records = _labelled_records(data)
    out_dir = config.out or default_out_dir(config.run, data)
    data_sha = data_sha256(data, records)
    if not config.overwrite:
        _refuse_other(out_dir, data_sha, model.checksum)
    creatable_folder(out_dir)  # before any image is scored, not after
    records, bad = _readable(records, config)
    index, logits, refused, later = _predict(model, records, config, progress)
    skipped = [*(vars(b) for b in bad), *({"path": p, "reason": r} for p, r in later)]
    labels = np.array([records[i].label for i in index])
    probs = sigmoid(logits)
    chosen = model.threshold if threshold is None else threshold
    metrics = {
        **_metrics(config, model, records, data_sha, refused),
        "n_skipped": len(skipped),
        "skipped": skipped,
        **binary_metrics(labels, probs, chosen, bootstrap=config.bootstrap),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(metrics, out_dir / METRICS_FILE)
    plots = save_plots(labels, probs, metrics, out_dir, title=f"{model.arch} on {data.name}")
    probabilities = {records[i].path: float(p) for i, p in zip(index, probs, strict=True)}
    return EvalResult(metrics=metrics, out_dir=out_dir, plots=plots, probabilities=probabilities)
