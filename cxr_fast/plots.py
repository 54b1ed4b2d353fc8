"""Evaluation plots (confusion matrix, ROC, precision-recall, calibration) written as PNGs.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, never through
pyplot: no global backend switch, no figure registry to leak, works headless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from cxr_fast.labels import CLASS_NAMES
from cxr_fast.metrics import check_inputs

PLOT_FILES = {
    "confusion_matrix": "confusion_matrix.png",
    "roc": "roc.png",
    "pr": "pr.png",
    "calibration": "calibration.png",
}

_FIGSIZE = (5.0, 4.5)
_DPI = 110
_N_BINS = 10


def _new_figure(figsize: tuple[float, float] = _FIGSIZE) -> Figure:
    fig = Figure(figsize=figsize, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _title(title: str, text: str) -> str:
    return f"{title}\n{text}" if title else text


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI)
    fig.clear()  # drop the artists now rather than waiting for garbage collection
    return path


def _confusion(metrics: dict, title: str) -> Figure:
    cm = np.array(metrics["confusion_matrix"])
    threshold = metrics["threshold"]
    fig = _new_figure()
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    colorbar = fig.colorbar(image, ax=ax, shrink=0.85, label="Images")
    colorbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts, not 0.5 steps
    row_totals = cm.sum(axis=1)
    for (i, j), count in np.ndenumerate(cm):
        share = f"\n{count / row_totals[i]:.1%} of row" if row_totals[i] else ""
        # White text on the dark cells, black on the pale ones.
        colour = "white" if count > 0.5 * cm.max() else "black"
        ax.text(j, i, f"{count}{share}", ha="center", va="center", color=colour, fontsize=11)
    ax.set_xticks([0, 1], labels=list(CLASS_NAMES))
    ax.set_yticks([0, 1], labels=list(CLASS_NAMES), rotation=90, va="center")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(_title(title, f"Confusion matrix (threshold {threshold:.3f})"))
    return fig


def _mark_operating_point(ax, x: float, y: float, threshold: float) -> None:
    """The model's decision threshold as a red dot on a curve."""
    ax.plot(
        x,
        y,
        "o",
        color="tab:red",
        ms=8,
        label=f"Threshold {threshold:.3f}",
        zorder=3,
        clip_on=False,
    )


def _roc(y: np.ndarray, p: np.ndarray, metrics: dict, title: str) -> Figure:
    fpr, tpr, _ = roc_curve(y, p)
    auc, threshold = metrics["roc_auc"], metrics["threshold"]
    op_tpr, op_fpr = metrics["sensitivity"], 1 - metrics["specificity"]
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, lw=2, label=f"ROC (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="Chance")
    _mark_operating_point(ax, op_fpr, op_tpr, threshold)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (1 - specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title(_title(title, "ROC curve"))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def _pr(y: np.ndarray, p: np.ndarray, metrics: dict, title: str) -> Figure:
    precision, recall, _ = precision_recall_curve(y, p)
    ap, threshold, counts = metrics["pr_auc"], metrics["threshold"], metrics["counts"]
    prevalence = counts["positives"] / counts["n"]
    fig = _new_figure()
    ax = fig.add_subplot()
    # Step drawing matches how average precision sums the curve.
    ax.step(recall, precision, where="post", lw=2, label=f"PR (AP = {ap:.3f})")
    ax.axhline(prevalence, ls="--", color="grey", lw=1, label=f"Prevalence ({prevalence:.3f})")
    if counts["predicted_positive"]:  # precision is undefined when nothing is predicted positive
        _mark_operating_point(ax, metrics["sensitivity"], metrics["precision"], threshold)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel(f"Recall (sensitivity, {CLASS_NAMES[1]})")
    ax.set_ylabel("Precision")
    ax.set_title(_title(title, "Precision-recall curve"))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return fig


def _reliability(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fraction positive and mean probability per non-empty uniform bin."""
    try:
        return calibration_curve(y, p, n_bins=_N_BINS, strategy="uniform")
    except ValueError:
        # Same binning by hand, for inputs calibration_curve refuses.
        bins = np.clip((p * _N_BINS).astype(int), 0, _N_BINS - 1)
        used = np.unique(bins)
        frac = np.array([y[bins == b].mean() for b in used])
        mean = np.array([p[bins == b].mean() for b in used])
        return frac, mean


def _calibration(y: np.ndarray, p: np.ndarray, brier: float, title: str) -> Figure:
    frac_pos, mean_pred = _reliability(y, p)
    fig = _new_figure((_FIGSIZE[0], _FIGSIZE[1] + 1.0))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="Perfectly calibrated")
    top.plot(mean_pred, frac_pos, "o-", lw=2, label="Model")
    top.set_xlim(-0.01, 1.01)
    top.set_ylim(-0.02, 1.04)
    top.set_ylabel(f"Fraction {CLASS_NAMES[1]}")
    top.set_title(_title(title, f"Calibration (Brier = {brier:.4f})"))
    top.grid(alpha=0.3)
    top.legend(loc="best")  # the curve can sit anywhere; few points, so "best" is cheap

    edges = np.linspace(0, 1, _N_BINS + 1)
    groups = [p[y == label] for label in (0, 1)]
    counts, _, _ = bottom.hist(
        groups, bins=edges, stacked=True, label=list(CLASS_NAMES), edgecolor="white"
    )
    # Headroom above the tallest bar so the legend never hides a bar.
    bottom.set_ylim(0, max(float(np.max(counts)), 1.0) * 1.6)
    bottom.set_xlabel(f"Predicted probability of {CLASS_NAMES[1]}")
    bottom.set_ylabel("Images")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.legend(loc="upper center", fontsize="small", ncols=2)
    return fig


def save_plots(
    labels: np.ndarray,
    probs: np.ndarray,
    metrics: dict,
    out_dir: Path,
    *,
    title: str = "",
) -> dict[str, Path]:
    """Write the evaluation PNGs into ``out_dir`` (created if needed) and return {name: path}.

    ``metrics`` is :func:`cxr_fast.metrics.binary_metrics` of the same labels and
    probabilities: the numbers drawn (threshold, confusion matrix, AUCs, Brier score, operating
    point) are its own, never recomputed; ``labels`` and ``probs`` draw the curves. Names and
    files are those of PLOT_FILES. With one class in labels, ROC and PR are undefined and
    skipped: only the confusion matrix and calibration plots are written.
    """
    y, p = check_inputs(labels, probs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"confusion_matrix": _confusion(metrics, title)}
    if metrics["roc_auc"] is not None:
        figures["roc"] = _roc(y, p, metrics, title)
        figures["pr"] = _pr(y, p, metrics, title)
    figures["calibration"] = _calibration(y, p, metrics["brier"], title)
    return {name: _save(fig, out_dir / PLOT_FILES[name]) for name, fig in figures.items()}
