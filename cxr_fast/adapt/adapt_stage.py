"""``run_adapt``: a run adapted to one site from the site's unlabelled films.

The site's folder is discovered as an unlabelled archive (class folder names are cleared before
anything else sees the records), so the adaptation cannot use a label even by mistake, and the
new run's metadata says so. Depending on the method, the BatchNorm statistics are re-estimated
on the films (:mod:`cxr_fast.adapt.batchnorm`) and the threshold is chosen again where the
site's scores sit (:mod:`cxr_fast.adapt.score_shift`). The new run folder holds the adapted
weights, the new threshold and ``meta["adaptation"]`` (the source run and its checksum, the
method, the films' fingerprint, ``labels_read: false``); with ``export="auto"`` its export is
built again, since weights and threshold are sealed into an export.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from cxr_fast.adapt.batchnorm import batchnorm_layers, reestimate_batchnorm
from cxr_fast.adapt.score_shift import (
    fit_shift,
    prior_threshold,
    probability_logits,
    shifted_threshold,
)
from cxr_fast.choices import MIN_ADAPT_FILMS, ROC_POLICIES
from cxr_fast.configs import AdaptConfig
from cxr_fast.data.discover import discover, paths_sha256, require_images, unlabelled
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.device import resolve_device
from cxr_fast.errors import UserInputError
from cxr_fast.inference import sigmoid
from cxr_fast.messages import Log, to_stdout
from cxr_fast.metrics import MARGIN
from cxr_fast.run_folder import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RunInfo,
    atomic_write_json,
    load_run,
    read_json,
    save_model,
    sha256,
)
from cxr_fast.scoring.model import eager_scoring_model
from cxr_fast.text import plural
from cxr_fast.training.folds import OOF_FILE


@dataclass(frozen=True)
class SiteScores:
    """The site's logits under a model, and the training films' out-of-fold ones (or None)."""

    logits: np.ndarray
    reference: tuple[np.ndarray, np.ndarray] | None  # (logits, labels) of oof.parquet


@dataclass(frozen=True)
class AdaptResult:
    """The adapted run folder and what adaptation changed."""

    out: Path
    method: str
    n: int
    threshold_before: float
    threshold_after: float
    called_after: float  # the share of the site's films the adapted run calls PNEUMONIA
    called_before: float | None  # the run as trained (None: not scored, adabn changed it)
    adaptation: dict
    export_line: str | None = None

    def summary(self) -> str:
        """The films, what was re-estimated, the threshold and the share of films called
        PNEUMONIA before and after, and where the adapted run went."""
        record = self.adaptation
        lines = [f"site films: {plural(self.n, 'image')} (an unlabelled folder: labels not read)"]
        if "batchnorm" in record:
            layers = record["batchnorm"]["layers"]
            lines.append(f"BatchNorm statistics of {plural(layers, 'layer')} re-estimated on them")
        shift = record.get("shift")
        if shift is not None:
            lines.append(
                f"estimated prevalence {shift['prevalence']:.2f}; healthy films' logits moved "
                f"{shift['shift_normal']:+.2f}, pneumonia films' {shift['shift_pneumonia']:+.2f}"
            )
        before = "" if self.called_before is None else f"{self.called_before:.1%} -> "
        lines.append(
            f"threshold {self.threshold_before:.4f} -> {self.threshold_after:.4f}; films called "
            f"PNEUMONIA {before}{self.called_after:.1%}"
        )
        if self.export_line:
            lines.append(self.export_line)
        lines.append(f"adapted run: {self.out}")
        return "\n".join(lines)


def site_records(data: Path, found: list | None = None) -> list:
    """The films under ``data`` (``found``: already discovered there) as an unlabelled
    archive; UserInputError below :data:`MIN_ADAPT_FILMS`."""
    records = unlabelled(require_images(discover(data) if found is None else found, str(data)))
    if len(records) < MIN_ADAPT_FILMS:
        raise UserInputError(
            f"{data} holds {plural(len(records), 'image')}: adapt needs at least "
            f"{MIN_ADAPT_FILMS} of the site's films"
        )
    return records


def by_content(records: list) -> tuple[list, str]:
    """(``records`` ordered by the SHA-256 of each file's bytes, the SHA-256 of those sorted
    digests). Re-estimated statistics depend on which films share a batch; in this order the
    adapted run is a function of the films alone, whatever their names and folders, and the
    digest fingerprints the films the same way (a file that cannot be read sorts first, and
    becomes an error entry of the loader)."""

    def digest(record) -> str:
        try:
            return sha256(Path(record.path))
        except OSError:
            return ""

    keyed = sorted((digest(r), i) for i, r in enumerate(records))
    content = hashlib.sha256("\n".join(d for d, _ in keyed).encode()).hexdigest()
    return [records[i] for _, i in keyed], content


def _check_request(config: AdaptConfig, info: RunInfo) -> None:
    """One line for an --out that would replace a run, and for a run adapt cannot take."""
    if config.out.resolve() == config.run.resolve():
        raise UserInputError("--out must be a new folder: the adapted run keeps the original")
    if (config.out / MODEL_FILE).exists() and not config.overwrite:
        raise UserInputError(
            f"{config.out} already holds a run: choose another --out or pass --overwrite"
        )
    if "calibration" in info.meta or "adaptation" in info.meta:
        what = "calibrated" if "calibration" in info.meta else "adapted"
        raise UserInputError(f"{config.run} is {what} already; adapt the run it came from")
    if config.method != "adabn" and not (config.run / OOF_FILE).is_file():
        raise UserInputError(
            f"{config.run} has no {OOF_FILE} (a run trained with --folds 1): --method "
            f"{config.method} needs the training films' out-of-fold scores; use adabn"
        )


def reference_scores(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of the run's out-of-fold predictions on its training films."""
    table = pq.read_table(run / OOF_FILE, columns=["label", "prob_pneumonia"])
    labels = table.column("label").to_numpy().astype(np.int64)
    return probability_logits(table.column("prob_pneumonia").to_numpy()), labels


def _site_logits(model, info: RunInfo, records: list, config: AdaptConfig, progress) -> np.ndarray:
    """The site's logits under ``model`` (eager, at the run's inference precision)."""
    device = resolve_device(config.device)
    scorer = eager_scoring_model(model, info, device)
    spec = LoaderSpec(records, info.contract, 64, config.workers, device)
    _, logits, _ = scorer.predict(make_scoring_loader(spec), progress)
    return logits


def _new_threshold(config: AdaptConfig, info: RunInfo, scores: SiteScores) -> tuple[dict, dict]:
    """(the threshold choice, the shift record) for the method; the stored threshold when the
    method moves no threshold."""
    if scores.reference is None:
        return dict(info.meta.get("threshold_choice") or {"threshold": info.threshold}), {}
    ref_logits, ref_labels = scores.reference
    if config.method == "prior":
        fit = fit_shift(scores.logits, ref_logits, ref_labels, shifts=False)
        threshold = prior_threshold(info.threshold, float(ref_labels.mean()), fit)
        return {"policy": "prior", "threshold": threshold}, {"shift": fit.to_dict()}
    fit = fit_shift(scores.logits, ref_logits, ref_labels)
    policy = (info.meta.get("threshold_choice") or {}).get("policy")
    choice = shifted_threshold(
        fit, ref_logits, ref_labels, policy if policy in ROC_POLICIES else MARGIN
    )
    return choice, {"shift": fit.to_dict()}


def _reestimate(
    config: AdaptConfig, model: torch.nn.Module, info: RunInfo, records: list, progress
) -> dict:
    """The BatchNorm record ({} for a method without it), the statistics of ``model``
    re-estimated on ``records`` in place."""
    if not config.method.startswith("adabn"):
        return {}
    layers = len(batchnorm_layers(model))
    spec = LoaderSpec(records, info.contract, 64, config.workers, resolve_device(config.device))
    seen = reestimate_batchnorm(model, make_scoring_loader(spec), spec.device, progress)
    if layers and seen < MIN_ADAPT_FILMS:
        raise UserInputError(
            f"only {seen} of the site's films decoded: adapt needs at least {MIN_ADAPT_FILMS}"
        )
    return {"batchnorm": {"layers": layers, "films": seen}}


def run_adapt(
    config: AdaptConfig,
    *,
    log: Log = to_stdout,
    progress: Callable[[int], None] | None = None,
    set_total: Callable[[int], None] | None = None,
    found: list | None = None,
) -> AdaptResult:
    """Adapt ``config.run`` to the site whose films are under ``config.data`` (never reading
    their labels) into the new run folder ``config.out``. ``progress(n)``: films processed
    (twice with a BatchNorm method: once to re-estimate, once to score); ``set_total(n)``.
    ``found``: the films, already discovered under ``config.data`` (``score --adapt``'s
    discovery, which leaves out its own outputs); default: discovered here."""
    model, info = load_run(config.run, resolve_device(config.device))
    # Before the films are hashed: a mistake in the request is one line at once.
    _check_request(config, info)
    records, content = by_content(site_records(config.data, found))
    adabn = config.method.startswith("adabn")
    if set_total is not None:
        set_total((2 if adabn else 1) * len(records))
    record = _reestimate(config, model, info, records, progress)
    reference = None if config.method == "adabn" else reference_scores(config.run)
    scores = SiteScores(_site_logits(model, info, records, config, progress), reference)
    choice, shift = _new_threshold(config, info, scores)
    adaptation = _adaptation_record(config, records, content, info, choice) | record | shift
    _write_run(config, model, info, choice, adaptation)
    export_line = _export(config, info, log)
    probs = sigmoid(scores.logits)
    return AdaptResult(
        out=config.out,
        method=config.method,
        n=len(records),
        threshold_before=info.threshold,
        threshold_after=float(choice["threshold"]),
        called_after=float((probs >= choice["threshold"]).mean()),
        # Without adabn the weights are the run's own: its share at its own threshold.
        called_before=None if adabn else float((probs >= info.threshold).mean()),
        adaptation=adaptation,
        export_line=export_line,
    )


def _adaptation_record(
    config: AdaptConfig, records: list, content: str, info: RunInfo, choice: dict
) -> dict:
    """What the adapted run's metadata says of its adaptation (``content``: the films' digest,
    :func:`by_content`)."""
    return {
        "method": config.method,
        "labels_read": False,
        "films": {
            "root": str(config.data.resolve()),
            "n": len(records),
            "paths_sha256": paths_sha256(config.data, records),
            "content_sha256": content,
        },
        "source_run": str(config.run.resolve()),
        "source_model_sha256": sha256(config.run / MODEL_FILE),
        "threshold_before": info.threshold,
        "threshold_after": float(choice["threshold"]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _write_run(
    config: AdaptConfig, model: torch.nn.Module, info: RunInfo, choice: dict, adaptation: dict
) -> None:
    """The adapted run in ``config.out``: the (re-estimated) weights, the run's metadata with
    the new threshold and the adaptation, its config.json with the adaptation."""
    meta = {
        **info.meta,
        "threshold": float(choice["threshold"]),
        "threshold_rule": f"site adaptation ({config.method})",
        "threshold_choice": choice,
        "adaptation": adaptation,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    save_model(config.out, model, meta)
    source = read_json(config.run / CONFIG_FILE) if (config.run / CONFIG_FILE).is_file() else {}
    atomic_write_json({**source, "adaptation": adaptation}, config.out / CONFIG_FILE)
    atomic_write_json(
        {"split": "site films (unlabelled: no metrics)", "adaptation": adaptation},
        config.out / METRICS_FILE,
    )


def _export(config: AdaptConfig, info: RunInfo, log: Log) -> str | None:
    """Build the adapted run's export (``config.export``); the line saying what was built."""
    from cxr_fast.training.export_step import export_run_folder

    lines: list[str] = []
    export_run_folder(config.out, config.export, info.arch, config.device, lines.append)
    for line in lines[:-1]:
        log(line)
    return lines[-1] if lines else None
