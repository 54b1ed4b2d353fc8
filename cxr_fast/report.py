"""``cxr-fast report RUN``: one self-contained HTML page per run, the model card a clinical
reviewer asks for.

Everything comes from the run folder (config.json, metrics.json, train_log.jsonl, model.pt's
metadata, ``eval/*/``), plus Grad-CAM overlays of the most suspicious validation films when the
run's data folder is still there. Images are inline (``data:`` URIs): the page is one file that
can be mailed or archived. Single runs, ensembles (out-of-fold metrics, one curve per member)
and site-calibrated runs (metrics before and after) are all reported.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cxr_fast import __version__
from cxr_fast.errors import UserInputError
from cxr_fast.run_folder import LOG_FILE, METRICS_FILE, MODEL_FILE, RunInfo, read_run, sha256
from cxr_fast.text import agree, plural

if TYPE_CHECKING:
    from cxr_fast.configs import ReportConfig

REPORT_FILE = "report.html"
# Longest side of a Grad-CAM picture inline in the page (both panels and the caption).
REPORT_PICTURE_SIDE = 1600
SECTIONS = (
    ("summary", "Summary"),
    ("data", "Data"),
    ("configuration", "Configuration and versions"),
    ("training", "Training curves"),
    ("validation", "Validation metrics"),
    ("evaluations", "Evaluations"),
    ("threshold", "Decision threshold"),
    ("calibration", "Calibration"),
    ("gradcam", "Grad-CAM: the most suspicious validation films"),
)
_RUN_META = "cxr-fast-run-sha256"
_METRIC_ROWS = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity (recall)"),
    ("specificity", "specificity"),
    ("precision", "precision (PPV)"),
    ("f1", "F1"),
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC"),
    ("brier", "Brier score"),
    ("threshold", "threshold"),
)
_PLOTS = ("roc.png", "pr.png", "calibration.png", "confusion_matrix.png")
_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top} th{background:#f4f4f4} .num{text-align:right;
font-variant-numeric:tabular-nums} img{max-width:100%;border:1px solid #ddd;margin:.3em}
.warn{color:#a00;font-weight:600} .muted{color:#666} .plots img{width:32%;min-width:260px}
"""


@dataclass(frozen=True)
class ReportResult:
    """Where the page went and what it holds."""

    path: Path
    evaluations: int
    overlays: int
    bytes: int


def _e(value) -> str:
    return html.escape(str(value))


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _png(data: bytes, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    b64 = base64.b64encode(data).decode()
    return f'<img alt="{_e(alt)}"{size} src="data:image/png;base64,{b64}">'


def _table(rows, header=None) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def metrics_table(metrics: dict) -> str:
    """A metrics dict (``binary_metrics``) as a table, with the 95% intervals where known."""
    ci = metrics.get("ci95") or {}
    rows = []
    for key, label in _METRIC_ROWS:
        if key not in metrics:
            continue
        interval = ci.get(key)
        shown = f"{_num(metrics[key])}" + (
            f" <span class=muted>[{_num(interval[0])}, {_num(interval[1])}]</span>"
            if interval
            else ""
        )
        rows.append((_e(label), shown))
    counts = metrics.get("counts") or {}
    if counts:
        rows.append(
            (
                "images",
                f"{counts.get('n')} ({counts.get('positives')} PNEUMONIA, "
                f"{counts.get('negatives')} NORMAL)",
            )
        )
    cm = metrics.get("confusion_matrix")
    if cm:
        rows.append(
            (
                "confusion (rows: true)",
                _table(
                    [("NORMAL", cm[0][0], cm[0][1]), ("PNEUMONIA", cm[1][0], cm[1][1])],
                    ["", "pred NORMAL", "pred PNEUMONIA"],
                ),
            )
        )
    return _table(rows, ["metric", "value [95% CI]"])


def _curves(run: Path, info: RunInfo) -> str:
    """Loss and validation ROC-AUC per epoch: one line per member for an ensemble."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logs = {"run": run / LOG_FILE}
    if info.members > 1:
        logs = {p.name: p / LOG_FILE for p in sorted((run / "members").glob("fold-*"))}
    series = {}
    for name, path in logs.items():
        if path.is_file():
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if lines:
                series[name] = lines
    if not series:
        return "<p class=muted>No training log in this run folder.</p>"
    fig = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, auc_ax = fig.subplots(1, 2)
    for name, lines in series.items():
        epochs = [e["epoch"] for e in lines]
        tag = "" if name == "run" else f"{name} "
        loss_ax.plot(epochs, [e["train_loss"] for e in lines], "-o", ms=3, label=f"{tag}train")
        loss_ax.plot(epochs, [e["val_loss"] for e in lines], "--o", ms=3, label=f"{tag}val")
        auc_ax.plot(epochs, [e["val_roc_auc"] for e in lines], "-o", ms=3, label=name)
    loss_ax.set(title="loss", xlabel="epoch")
    auc_ax.set(title="validation ROC-AUC", xlabel="epoch")
    loss_ax.legend(fontsize=7)
    if len(series) > 1:
        auc_ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    rows = [
        (
            _e(name),
            len(lines),
            _num(max(e["val_roc_auc"] for e in lines)),
            _num(float(np.median([e.get("train_images_per_s", 0) for e in lines])), 1),
        )
        for name, lines in series.items()
    ]
    return _png(buf.getvalue(), "training curves") + _table(
        rows, ["", "epochs", "best val ROC-AUC", "median train images/s"]
    )


def _data_section(info: RunInfo, evaluations: list[tuple[Path, dict]]) -> str:
    saved = info.config.get("data")
    if not isinstance(saved, dict):
        return "<p class=muted>config.json records no data fingerprint.</p>"
    counts = saved.get("counts", {})
    patients = saved.get("patients", {})
    rows = [
        (
            side,
            counts.get(side, {}).get("NORMAL", 0),
            counts.get(side, {}).get("PNEUMONIA", 0),
            sum(counts.get(side, {}).values()),
            len(patients.get(side, [])),
        )
        for side in ("train", "val")
    ]
    if info.members > 1:  # no val folder: every image is validated by the member not trained on it
        rows[1] = ("val", f"{info.members}-fold cross-validation", "", "", "")
    shared = set(patients.get("train", [])) & set(patients.get("val", []))
    check = (
        f"<p class=warn>{plural(len(shared), 'patient')} {agree(len(shared), 'is', 'are')} in "
        "both training and validation.</p>"
        if shared
        else "<p>Leakage check: no patient is in both training and validation.</p>"
    )
    leaks = []
    for path, metrics in evaluations:
        found = metrics.get("leakage") or {}
        if found.get("training_patients"):
            leaks.append(
                f"<p class=warn>Evaluation {_e(path.parent.name)}: {found['training_patients']:,} "
                f"of {plural(found['patients'], 'patient')} "
                f"{agree(found['training_patients'], 'was', 'were')} in the training data: its "
                "numbers are "
                "optimistic.</p>"
            )
    return (
        f"<p>Data root <code>{_e(saved.get('root'))}</code>; validation: "
        f"{_e(saved.get('val_source'))}; paths SHA-256 <code>"
        f"{_e(str(saved.get('paths_sha256'))[:16])}…</code></p>"
        + _table(rows, ["side", "NORMAL", "PNEUMONIA", "images", "patients"])
        + check
        + "".join(leaks)
        + (f"<p>Files left out as unreadable: {len(info.config['skipped_bad_files'])}</p>"
           if info.config.get("skipped_bad_files") else "")
    )  # fmt: skip


def _configuration(run: Path, info: RunInfo) -> str:
    train = info.config.get("train", {})
    rows = [(_e(k), f"<code>{_e(json.dumps(v))}</code>") for k, v in train.items()]
    resolved = [
        (_e(k), _e(info.config.get(k)))
        for k in ("device", "precision", "loader", "pos_weight", "created")
        if k in info.config
    ]
    versions = [(_e(k), _e(v)) for k, v in (info.config.get("versions") or {}).items()]
    return (
        _table(
            [
                ("architecture", _e(info.arch)),
                ("ensemble members", info.members),
                ("contract", f"<code>{_e(json.dumps(info.contract.to_dict()))}</code>"),
                ("model.pt SHA-256", f"<code>{sha256(run / MODEL_FILE)}</code>"),
                ("best epoch", _e(info.meta.get("epoch", "n/a"))),
            ]
        )
        + "<h3>Options</h3>"
        + (_table(rows) if rows else "<p class=muted>none recorded</p>")
        + ("<h3>Resolved on the training host</h3>" + _table(resolved) if resolved else "")
        + "<h3>Versions</h3>"
        + (_table(versions) if versions else "<p class=muted>none recorded</p>")
        + f"<p class=muted>Report by cxr-fast {__version__}.</p>"
    )


def _validation(run: Path) -> str:
    metrics = _read(run / METRICS_FILE)
    if not isinstance(metrics, dict):
        return "<p class=muted>No metrics.json.</p>"
    if "before" in metrics and "after" in metrics:
        return (
            f"<p>{_e(metrics.get('split', 'site sample'))}</p><h3>Before (the run as trained)"
            "</h3>" + metrics_table(metrics["before"]) + "<h3>After (fitted on the sample)</h3>"
            + metrics_table(metrics["after"])
        )  # fmt: skip
    what = {
        "out-of-fold": "Out-of-fold predictions of every training image (each scored by the "
        "member that did not train on it)",
        "validation": f"Validation set, best epoch {metrics.get('epoch')}",
    }.get(metrics.get("split"), _e(metrics.get("split")))
    return f"<p>{what}</p>" + metrics_table(metrics)


def _evaluations(evaluations: list[tuple[Path, dict]]) -> str:
    if not evaluations:
        return (
            "<p class=muted>No evaluation yet: run <code>cxr-fast evaluate RUN --data DIR</code> "
            "on data the run never saw (an external site, the test split).</p>"
        )
    parts = []
    for path, metrics in evaluations:
        folder = path.parent
        plots = "".join(
            _png((folder / name).read_bytes(), f"{folder.name} {name}")
            for name in _PLOTS
            if (folder / name).is_file()
        )
        source = metrics.get("threshold_source", "run")
        parts.append(
            f"<h3>{_e(folder.name)}</h3><p>Data <code>{_e(metrics.get('data'))}</code>; "
            f"threshold from {_e(source)}"
            + (f"; {metrics['n_skipped']} unreadable files left out" if metrics.get("n_skipped")
               else "")
            + "</p>" + metrics_table(metrics) + f"<div class=plots>{plots}</div>"
        )  # fmt: skip
    return "".join(parts)


def _threshold(info: RunInfo) -> str:
    choice = info.meta.get("threshold_choice") or {}
    rows = [
        ("threshold", _num(info.threshold)),
        ("rule", _e(info.meta.get("threshold_rule", choice.get("policy", "n/a")))),
    ]
    for key in ("policy", "target_sensitivity", "interval", "tolerance", "youden_j", "worst_j"):
        if choice.get(key) is not None:
            rows.append((_e(key), _e(choice[key])))
    return _table(rows) + (
        "<p>Films with P(PNEUMONIA) at or above the threshold are called PNEUMONIA.</p>"
    )


def _calibration(info: RunInfo) -> str:
    cal = info.meta.get("calibration")
    if not cal:
        return (
            "<p class=muted>Not site-calibrated (temperature 1). <code>cxr-fast calibrate RUN "
            "--data SAMPLE --out RUN-site</code> fits a site's temperature, bias and threshold.</p>"
        )
    sample = cal.get("sample") or {}
    prior = cal.get("prior")  # absent in runs calibrated before the prior existed
    prior_text = (
        f"strength {_num(prior['strength'])}, centred on threshold {_num(prior['threshold'])}"
        if prior
        else "none (maximum likelihood)"
    )
    return _table(
        [
            ("method", _e(cal.get("method", "temperature"))),
            ("temperature", _num(cal.get("temperature"))),
            ("bias", _num(cal.get("bias", 0.0))),
            ("prior", prior_text),
            ("source run", f"<code>{_e(cal.get('source_run'))}</code>"),
            ("source model SHA-256", f"<code>{_e(cal.get('source_model_sha256'))}</code>"),
            ("site sample", f"<code>{_e(json.dumps(sample))}</code>"),
            ("created", _e(cal.get("created"))),
        ]
    )


def _gradcam(run: Path, info: RunInfo, top: int, device: str) -> tuple[str, int]:
    """Overlays of the ``top`` validation films with the highest probability."""
    if top <= 0:
        return "<p class=muted>Skipped (--cams 0).</p>", 0
    from cxr_fast.data.loader_spec import LoaderSpec
    from cxr_fast.data.loaders import make_scoring_loader
    from cxr_fast.explain.explainer import Explainer
    from cxr_fast.export.exporter import run_records
    from cxr_fast.inference import sigmoid
    from cxr_fast.scoring.model import eager_scoring_model

    saved = info.config.get("data") if isinstance(info.config.get("data"), dict) else {}
    root = Path(saved.get("root") or "")
    if not saved.get("root") or not root.exists():
        return f"<p class=muted>The run's data folder {_e(root)} is gone: no overlays.</p>", 0
    own = run_records(root, info)
    if own is None:
        return "<p class=muted>The run lists no patients: no overlays.</p>", 0
    records, which = (own[1], "validation") if own[1] else (own[0], "training (out-of-fold)")
    if not records:
        return "<p class=muted>No readable films found.</p>", 0
    explainer = Explainer(run, device=device)
    spec = LoaderSpec(records, info.contract, 64, workers=0, device=explainer.device)
    loader = make_scoring_loader(spec, "torch")
    model = eager_scoring_model(explainer.model, explainer.info, explainer.device)
    index, logits, _ = model.predict(loader)
    probs = sigmoid(logits)
    order = np.argsort(-probs)[:top]
    parts = []
    for i in order:
        record = records[int(index[i])]
        picture = explainer.explain_file(record.path).picture
        # A page, not the archive: overlays inline at REPORT_PICTURE_SIDE (the explain PNGs keep
        # the films' resolution; full size, three 2000 px films made an 18 MB page).
        picture.thumbnail((REPORT_PICTURE_SIDE, REPORT_PICTURE_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        truth = "unknown" if record.label is None else ("PNEUMONIA", "NORMAL")[1 - record.label]
        parts.append(
            f"<figure>{_png(buf.getvalue(), Path(record.path).name)}<figcaption>"
            f"{_e(Path(record.path).name)}: P(PNEUMONIA) {probs[i]:.4f}, true label {truth}"
            "</figcaption></figure>"
        )
    intro = (
        f"<p>The {len(parts)} {which} films with the highest probability "
        f"({explainer.method} on {_e(explainer.layer)}).</p>"
    )
    return intro + "".join(parts), len(parts)


def build_report(run: Path, *, cams: int = 4, device: str = "cpu") -> tuple[str, int, int]:
    """(the page, evaluations shown, overlays shown)."""
    run = Path(run)
    _, info = read_run(run)
    evaluations = []
    for path in sorted((run / "eval").glob("*/metrics.json")):
        metrics = _read(path)
        if isinstance(metrics, dict):
            evaluations.append((path, metrics))
    gradcam, overlays = _gradcam(run, info, cams, device)
    body = {
        "summary": _table(
            [
                ("run", f"<code>{_e(run.resolve())}</code>"),
                (
                    "architecture",
                    _e(info.arch) + (f", ensemble of {info.members}" if info.members > 1 else ""),
                ),
                (
                    "threshold",
                    f"{_num(info.threshold)} ({_e(info.meta.get('threshold_rule', ''))})",
                ),
                ("site-calibrated", "yes" if info.meta.get("calibration") else "no"),
                ("evaluations", len(evaluations)),
                ("generated", _e(time.strftime("%Y-%m-%d %H:%M:%S %z"))),
            ]
        ),
        "data": _data_section(info, evaluations),
        "configuration": _configuration(run, info),
        "training": _curves(run, info),
        "validation": _validation(run),
        "evaluations": _evaluations(evaluations),
        "threshold": _threshold(info),
        "calibration": _calibration(info),
        "gradcam": gradcam,
    }
    sections = "".join(
        f'<section id="{key}"><h2>{_e(title)}</h2>{body[key]}</section>' for key, title in SECTIONS
    )
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta name="{_RUN_META}" content="{sha256(run / MODEL_FILE)}">'
        f"<title>cxr-fast report: {_e(run.name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>cxr-fast run report: {_e(run.name)}</h1>{sections}</body></html>\n"
    )
    return page, len(evaluations), overlays


def _refuse_other(out: Path, run: Path) -> None:
    if not out.exists():
        return
    text = out.read_text(errors="replace")[:4000]
    if f'name="{_RUN_META}" content="{sha256(run / MODEL_FILE)}"' not in text:
        raise UserInputError(
            f"{out} exists and is not a report of {run}: pass --overwrite to replace it, or "
            "choose another --out"
        )


def run_report(config: ReportConfig) -> ReportResult:
    """``cxr-fast report``: :func:`write_report` with the command's options."""
    return write_report(
        config.run, config.out, cams=config.cams, device=config.device, overwrite=config.overwrite
    )


def write_report(
    run: Path,
    out: Path | None = None,
    *,
    cams: int = 4,
    device: str = "auto",
    overwrite: bool = False,
) -> ReportResult:
    """Write the report of ``run`` to ``out`` (default ``RUN/report.html``); a file that is not
    a report of this very checkpoint is refused unless ``overwrite``."""
    from cxr_fast.outputs import writable_file
    from cxr_fast.run_folder import atomic_write

    run = Path(run)
    out = Path(out) if out is not None else run / REPORT_FILE
    if out.is_dir():
        raise UserInputError(
            f"--out {out} is a folder: give a file name such as {out / REPORT_FILE}"
        )
    writable_file(out)
    if (run / MODEL_FILE).is_file() and not overwrite:
        _refuse_other(out, run)
    page, evaluations, overlays = build_report(run, cams=cams, device=device)
    data = page.encode()
    atomic_write(out, lambda handle: handle.write(data))
    return ReportResult(out, evaluations, overlays, len(data))
