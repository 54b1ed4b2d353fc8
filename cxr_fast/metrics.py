"""Binary metrics for NORMAL (0) vs PNEUMONIA (1): threshold choice, scores, bootstrap CIs.

A prediction is positive (PNEUMONIA) when ``prob >= threshold``. Every function is pure: arrays
in, plain Python values out, so the result can go straight into ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
from typing import Any

import numpy as np

from cxr_fast.choices import BOOTSTRAP, THRESHOLD_POLICIES
from cxr_fast.labels import CLASS_NAMES
from cxr_fast.text import plural

YOUDEN = "youden"
MARGIN = "margin"
# The smallest J tolerance of the margin policy: below it the plateau is a single point anyway.
MIN_MARGIN_TOLERANCE = 0.01

# Upper bound on the elements of one bootstrap block (resamples x samples), so that a large
# evaluation set does not allocate bootstrap * n integers at once.
_BOOTSTRAP_BLOCK_ELEMENTS = 4_000_000

# Order of the scalar metrics in the JSON dict and in format_metrics.
_SCALAR_KEYS = (
    "accuracy",
    "precision",
    "recall",
    "sensitivity",
    "specificity",
    "f1",
    "roc_auc",
    "pr_auc",
    "brier",
)


def check_inputs(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels/probs and return them as (int64 labels, float64 probs) 1-D arrays."""
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"labels and probs must be 1-D, got shapes {y.shape} and {p.shape}")
    if y.size == 0:
        raise ValueError("labels and probs are empty")
    if y.size != p.size:
        raise ValueError(f"labels and probs differ in length: {y.size} != {p.size}")
    # Compare as float so that 0.0/1.0 or bool labels pass and NaN (a missing label) fails.
    y_float = y.astype(np.float64)
    if not np.all((y_float == 0) | (y_float == 1)):
        raise ValueError("labels must be 0 (NORMAL) or 1 (PNEUMONIA)")
    if np.isnan(p).any():
        raise ValueError("probs contain NaN")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"probs must lie in [0, 1], got range [{p.min():g}, {p.max():g}]")
    return y_float.astype(np.int64), p


def _roc_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, true positives, false positives) at every distinct score, highest first."""
    from sklearn.metrics import roc_curve

    # drop_intermediate=False: a dropped point can be the highest threshold reaching a target.
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    # Back to integer counts so ties in J, and the target comparison, are exact, not float noise.
    return thresholds, np.rint(tpr * n_pos).astype(np.int64), np.rint(fpr * n_neg).astype(np.int64)


def _checked_classes(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    y, p = check_inputs(labels, probs)
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError("choose_threshold needs both classes in labels, got only one")
    return y, p


def _in_range(threshold: float) -> float:
    # roc_curve's first threshold is +inf (nothing positive); 1.0 is the closest in-range value.
    return float(min(threshold, 1.0))


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def _logit_middle(low: float, high: float) -> float:
    """The probability halfway between ``low`` and ``high`` in logit space."""
    return 1 / (1 + math.exp(-(_logit(low) + _logit(high)) / 2))


def youden_tolerance(sensitivity: float, specificity: float, n_pos: int, n_neg: int) -> float:
    """One binomial standard error of Youden's J at (sensitivity, specificity), at least
    :data:`MIN_MARGIN_TOLERANCE`: thresholds whose J lies within it of the best are
    indistinguishable from the best on this sample."""
    se = math.sqrt(
        sensitivity * (1 - sensitivity) / n_pos + specificity * (1 - specificity) / n_neg
    )
    return max(MIN_MARGIN_TOLERANCE, se)


def threshold_choice(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    policy: str = MARGIN,
    target_sensitivity: float | None = None,
) -> dict[str, Any]:
    """The decision threshold and how it was chosen, as JSON-safe data.

    Policies (positive when ``prob >= threshold``):

    - ``youden``: the highest threshold maximising J = sensitivity + specificity - 1.
    - ``margin`` (the default): every threshold whose J is within one standard error (at least
      0.01) of the maximum is as good as the best on this sample; the contiguous interval of such
      thresholds around the best one is taken and its middle *in logit space* returned. On a
      near-perfect validation ROC the J curve is flat over a wide range and its sharpest point
      is decided by a handful of images; the middle keeps a margin on both sides, so a shifted
      score distribution at a new site moves fewer films across it.
    - with ``target_sensitivity`` (0 < t <= 1): the highest threshold whose sensitivity is >= t.

    Keys: ``threshold``, ``policy``, ``interval`` ([low, high] or None), ``tolerance``,
    ``youden_j`` at the threshold.
    """
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(THRESHOLD_POLICIES)}, got {policy!r}")
    if target_sensitivity is not None and not 0 < target_sensitivity <= 1:
        raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
    y, p = _checked_classes(labels, probs)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    thresholds, tps, fps = _roc_counts(y, p)
    j_scaled = tps * n_neg - fps * n_pos  # J * n_pos * n_neg, exact integers
    choice: dict[str, Any] = {"policy": policy, "interval": None, "tolerance": None}
    if target_sensitivity is not None:
        # The epsilon keeps e.g. 0.95 * 20 = 19.000000000000004 from demanding 20 positives.
        needed = math.ceil(target_sensitivity * n_pos - 1e-9)
        best = int(np.argmax(tps >= needed))  # exists: the last point has tpr == 1
        choice.update(policy=f"sensitivity>={target_sensitivity}")
        threshold = _in_range(thresholds[best])
    else:
        best = int(np.argmax(j_scaled))  # thresholds decrease: first max is the highest one
        threshold = _in_range(thresholds[best])
        if policy == MARGIN:
            tol = youden_tolerance(tps[best] / n_pos, 1 - fps[best] / n_neg, n_pos, n_neg)
            good = j_scaled >= (j_scaled[best] - tol * n_pos * n_neg) - 1e-9
            lo = hi = best
            while hi + 1 < good.size and good[hi + 1]:
                hi += 1  # lower thresholds
            while lo - 1 >= 1 and good[lo - 1]:
                lo -= 1  # higher thresholds (index 0 is +inf, "nothing positive")
            # A threshold t classifies like the ROC point whose threshold is the smallest >= t:
            # the interval of equivalent values reaches down to just above the next point.
            low = float(thresholds[hi + 1]) if hi + 1 < thresholds.size else 0.0
            high = _in_range(thresholds[lo])
            threshold = float(min(max(_logit_middle(low, high), low), high))
            choice.update(interval=[low, high], tolerance=tol)
    choice.update(threshold=threshold, youden_j=youden_j(y, p, threshold))
    return choice


def youden_j(labels: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    """Sensitivity + specificity - 1 when ``probs >= threshold`` is called positive (both
    classes present)."""
    y, pred = np.asarray(labels) == 1, np.asarray(probs) >= threshold
    return float((pred & y).sum() / y.sum() + (~pred & ~y).sum() / (~y).sum() - 1)


def choose_threshold(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    target_sensitivity: float | None = None,
    policy: str = YOUDEN,
) -> float:
    """Decision threshold chosen on validation data, a float in [0, 1] (see
    :func:`threshold_choice` for the policies; ties in J go to the highest threshold)."""
    return threshold_choice(labels, probs, policy=policy, target_sensitivity=target_sensitivity)[
        "threshold"
    ]


def _percentile_ci(values: np.ndarray) -> list[float] | None:
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def _bootstrap_auc(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC-AUC of each resample (row of ``idx``), NaN where a resample holds one class.

    Rank-based (Mann-Whitney) with ties counted as one half, which equals roc_auc_score. Scores
    are mapped to their distinct levels; per resample, the positive and negative counts at each
    level come from one bincount, so there is no Python loop over resamples.
    """
    levels, level_of = np.unique(p, return_inverse=True)
    n_levels = levels.size
    n_rows = idx.shape[0]
    flat_level = (np.arange(n_rows)[:, None] * n_levels + level_of[idx]).ravel()
    is_pos = y[idx].ravel().astype(np.float64)
    size = n_rows * n_levels
    pos = np.bincount(flat_level, weights=is_pos, minlength=size).reshape(n_rows, n_levels)
    neg = np.bincount(flat_level, weights=1.0 - is_pos, minlength=size).reshape(n_rows, n_levels)
    neg_below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower than this level
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = wins / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def _bootstrap(
    y: np.ndarray, p: np.ndarray, correct: np.ndarray, n_resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and ROC-AUC (NaN for one-class resamples) over ``n_resamples`` resamples."""
    rng = np.random.default_rng(seed)
    n = y.size
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    accs, aucs = [], []
    two_classes = 0 < y.sum() < n
    for start in range(0, n_resamples, block):
        idx = rng.integers(0, n, size=(min(block, n_resamples - start), n))
        accs.append(correct[idx].mean(axis=1))
        if two_classes:
            aucs.append(_bootstrap_auc(y, p, idx))
    acc = np.concatenate(accs)
    auc = np.concatenate(aucs) if aucs else np.empty(0)
    return acc, auc[~np.isnan(auc)]


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """ROC-AUC alone (None with one class): what training reads every epoch."""
    from sklearn.metrics import roc_auc_score

    y, p = check_inputs(labels, probs)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else None


def _import_quietly(name: str) -> None:
    """Import ``name``; a failure is left to the import that needs it. A command that ends
    early (a one-line error, a full disk) shuts the interpreter down under this import, which
    then fails ("can't register atexit after shutdown") with a traceback after that line."""
    with contextlib.suppress(Exception):  # the foreground import, if any, raises it again
        importlib.import_module(name)


def import_in_background() -> threading.Thread:
    """Start importing scikit-learn's metrics on a thread, and return the thread.

    ``score`` on a labelled archive computes metrics only after its last batch; started before
    the batch loop, the ~0.5 s import overlaps the decoding instead of following it (the whole
    command on 1,000 films: median 6.41 s against 6.71 s, docs/benchmarks.md). The import lock
    makes a later ``import sklearn.metrics`` wait for this one; the thread is not a daemon, so
    an early exit lets it finish rather than stopping it inside an import.
    """
    thread = threading.Thread(
        target=_import_quietly, args=("sklearn.metrics",), name="import-sklearn"
    )
    thread.start()
    return thread


def binary_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    *,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics at ``threshold`` as a JSON-safe dict (plain floats, ints, lists, None).

    Keys: accuracy, precision, recall, sensitivity (== recall), specificity, f1, roc_auc,
    pr_auc, brier, confusion_matrix [[tn, fp], [fn, tp]] (rows true, columns predicted),
    threshold, counts, ci95 {accuracy, roc_auc} (percentile bootstrap, None when
    ``bootstrap=0``), class_names. With one class in labels, roc_auc, pr_auc and their CIs are
    None, as are recall/sensitivity (no positives) or specificity (no negatives).
    """
    y, p = check_inputs(labels, probs)
    threshold = float(threshold)
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    pred = (p >= threshold).astype(np.int64)
    metrics = _metrics_at(y, p, pred, threshold)
    if bootstrap:
        acc, auc = _bootstrap(y, p, (pred == y).astype(np.float64), bootstrap, seed)
        metrics["ci95"] = {"accuracy": _percentile_ci(acc), "roc_auc": _percentile_ci(auc)}
    return metrics


def _metrics_at(y: np.ndarray, p: np.ndarray, pred: np.ndarray, threshold: float) -> dict[str, Any]:
    """:func:`binary_metrics` without the bootstrap: the point values at ``threshold``."""
    # Imported here: sklearn costs ~0.5 s at start-up, which scoring an unlabelled archive (the
    # usual case) never needs.
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    n_pos, n_neg = tp + fn, tn + fp
    both_classes = n_pos > 0 and n_neg > 0

    # An undefined rate is None, not 0: an all-PNEUMONIA folder has no specificity at all.
    recall = float(recall_score(y, pred, zero_division=0)) if n_pos else None
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": recall,
        "sensitivity": recall,
        "specificity": tn / n_neg if n_neg else None,
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else None,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else None,
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "threshold": threshold,
        "counts": {
            "n": int(y.size),
            "positives": n_pos,
            "negatives": n_neg,
            "predicted_positive": tp + fp,
        },
        "ci95": {"accuracy": None, "roc_auc": None},
        "class_names": list(CLASS_NAMES),
    }
    return metrics


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_metrics(metrics: dict[str, Any]) -> str:
    """Compact human-readable table of a ``binary_metrics`` dict (also one read back from JSON).

    One metric a line with its 95% CI where present, then the confusion matrix with class names
    as headers, then counts and threshold. Values to 4 decimals; None shown as 'n/a'.
    """
    ci95 = metrics.get("ci95") or {}
    width = max(len(k) for k in _SCALAR_KEYS) + 2
    lines = []
    for key in _SCALAR_KEYS:
        line = f"{key:<{width}}{_fmt(metrics.get(key)):>8}"
        ci = ci95.get(key)
        if ci is not None:
            line += f"  [{_fmt(ci[0])}, {_fmt(ci[1])}]"
        lines.append(line)

    names = [str(n) for n in metrics.get("class_names") or CLASS_NAMES]
    cm = metrics.get("confusion_matrix")
    if cm is not None:
        col = max(max(len(n) for n in names), max(len(str(v)) for row in cm for v in row)) + 2
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        lines.append(" " * col + "".join(f"{n:>{col}}" for n in names))
        for name, row in zip(names, cm, strict=True):
            lines.append(f"{name:<{col}}" + "".join(f"{v:>{col}}" for v in row))

    counts = metrics.get("counts") or {}
    if counts:
        lines += ["", "  ".join(f"{k} {v}" for k, v in counts.items())]
    lines.append(f"threshold {_fmt(metrics.get('threshold'))}")
    return "\n".join(lines)


def headline(metrics: dict[str, Any]) -> str:
    """One line of the numbers a user looks for first, from a metrics dict."""

    def value(key: str) -> str:
        v = metrics.get(key)
        return "n/a" if v is None else f"{v:.4f}"

    n = (metrics.get("counts") or {}).get("n")
    images = "?" if n is None else plural(n, "labelled image")
    return (
        f"on {images}: accuracy {value('accuracy')}, ROC-AUC {value('roc_auc')}, "
        f"sensitivity {value('sensitivity')}, specificity {value('specificity')}"
    )


def describe_threshold(metrics: dict[str, Any]) -> str:
    """One line: the threshold and where it came from (a run's policy, a calibration or an
    override), from an evaluation's metrics dict."""
    value = metrics.get("threshold")
    if metrics.get("threshold_source") == "--threshold":
        return f"threshold {_fmt(value)} from --threshold"
    choice = metrics.get("threshold_choice") or {}
    text = f"threshold {_fmt(value)} from the run ({choice.get('policy', 'stored')}"
    interval = choice.get("interval")
    if interval:
        text += (
            f"; near-optimal interval [{_fmt(interval[0])}, {_fmt(interval[1])}] at J tolerance "
            f"{_fmt(choice.get('tolerance'))}"
        )
    text += ")"
    if metrics.get("temperature", 1.0) != 1.0 or metrics.get("bias", 0.0) != 0.0:
        text += (
            f", site-calibrated (temperature {metrics['temperature']:.3f},"
            f" bias {metrics.get('bias', 0.0):+.3f})"
        )
    if metrics.get("members", 1) > 1:
        text += f", ensemble of {metrics['members']}"
    return text
