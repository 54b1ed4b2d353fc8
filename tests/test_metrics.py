"""Metrics: hand-checked values, threshold choice, bootstrap CIs, edge cases, formatting."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from cxr_fast.labels import CLASS_NAMES
from cxr_fast.metrics import (
    _bootstrap_auc,
    binary_metrics,
    choose_threshold,
    describe_threshold,
    format_metrics,
    threshold_choice,
)

# Ten cases written out. At threshold 0.5 the predictions are
#   labels: 0    0    0    0    1    1    1    1    1     1
#   probs:  0.1  0.3  0.6  0.2  0.8  0.4  0.9  0.7  0.55  0.35
#   pred:   0    0    1    0    1    0    1    1    1     0
# so tn = 3, fp = 1 (the 0.6), fn = 2 (0.4 and 0.35), tp = 4;
# specificity = 3 / 4 = 0.75, sensitivity = 4 / 6, precision = 4 / 5, accuracy = 7 / 10.
# ROC-AUC by pair counting: of the 6 * 4 = 24 (positive, negative) pairs the positive wins
# 4 + 3 + 4 + 4 + 3 + 3 = 21 (0.4, 0.55 and 0.35 each lose to the negative 0.6), so 21 / 24.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
PROBS = np.array([0.1, 0.3, 0.6, 0.2, 0.8, 0.4, 0.9, 0.7, 0.55, 0.35])


def _sensitivity(labels: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    return float((probs[labels == 1] >= threshold).mean())


def test_hand_example_matches_sklearn_and_hand_counts() -> None:
    m = binary_metrics(LABELS, PROBS, 0.5, bootstrap=0)
    pred = (PROBS >= 0.5).astype(int)

    assert m["confusion_matrix"] == [[3, 1], [2, 4]]
    assert m["specificity"] == pytest.approx(0.75)
    assert m["sensitivity"] == m["recall"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["roc_auc"] == pytest.approx(21 / 24)

    assert m["accuracy"] == pytest.approx(accuracy_score(LABELS, pred))
    assert m["precision"] == pytest.approx(precision_score(LABELS, pred))
    assert m["recall"] == pytest.approx(recall_score(LABELS, pred))
    assert m["f1"] == pytest.approx(f1_score(LABELS, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(LABELS, PROBS))
    assert m["pr_auc"] == pytest.approx(average_precision_score(LABELS, PROBS))
    assert m["brier"] == pytest.approx(brier_score_loss(LABELS, PROBS))

    assert m["threshold"] == 0.5
    assert m["counts"] == {"n": 10, "positives": 6, "negatives": 4, "predicted_positive": 5}
    assert m["class_names"] == list(CLASS_NAMES)
    assert m["ci95"] == {"accuracy": None, "roc_auc": None}


def test_probability_equal_to_threshold_is_positive() -> None:
    m = binary_metrics(np.array([0, 1]), np.array([0.3, 0.6]), 0.6, bootstrap=0)
    assert m["confusion_matrix"] == [[1, 0], [0, 1]]


def test_youden_separable_scores_give_lowest_positive() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    # Only at 0.6 are all positives in and all negatives out: J = 1.
    assert choose_threshold(labels, probs) == 0.6


def test_youden_with_one_overlap() -> None:
    # Descending: 0.9p 0.8p 0.7p 0.65n 0.6p 0.5p 0.4p 0.3n 0.2n 0.1n (P = 6, N = 4).
    # J at 0.7 = 3/6 - 0 = 0.5; at 0.65 = 3/6 - 1/4 = 0.25; at 0.4 = 6/6 - 1/4 = 0.75 (best);
    # at 0.3 = 1 - 2/4 = 0.5; lower thresholds only add false positives.
    labels = np.array([1, 1, 1, 0, 1, 1, 1, 0, 0, 0])
    probs = np.array([0.9, 0.8, 0.7, 0.65, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    assert choose_threshold(labels, probs) == 0.4


def test_youden_tie_goes_to_highest_threshold() -> None:
    # Descending: 0.7p 0.5n 0.3p 0.1n. J at 0.7 = 1/2 - 0 = 0.5; at 0.5 = 0; at 0.3 = 1 - 1/2
    # = 0.5; at 0.1 = 0. The tie between 0.7 and 0.3 goes to 0.7.
    labels = np.array([1, 0, 1, 0])
    probs = np.array([0.7, 0.5, 0.3, 0.1])
    assert choose_threshold(labels, probs) == 0.7


def _target_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    positives = np.round(0.50 + 0.02 * np.arange(20), 2)  # 0.50, 0.52, ..., 0.88
    negatives = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.53, 0.6, 0.7, 0.95])
    labels = np.r_[np.ones(20, int), np.zeros(10, int)]
    return labels, np.r_[positives, negatives], positives


def test_target_sensitivity_hand_worked() -> None:
    labels, probs, positives = _target_case()
    # 0.95 of 20 positives = 19: one may be missed, so the highest threshold is the 2nd lowest
    # positive score (0.52). The next candidate up is the negative at 0.53, where only the 18
    # positives >= 0.54 remain: sensitivity 0.9.
    t = choose_threshold(labels, probs, target_sensitivity=0.95)
    assert t == positives[1] == 0.52
    assert _sensitivity(labels, probs, t) >= 0.95
    next_up = np.unique(probs)[np.unique(probs) > t].min()
    assert next_up == 0.53
    assert _sensitivity(labels, probs, next_up) < 0.95
    # Anything above 0.95 needs all 20: the lowest positive score.
    assert choose_threshold(labels, probs, target_sensitivity=0.96) == positives[0]
    assert choose_threshold(labels, probs, target_sensitivity=1.0) == positives[0]


@pytest.mark.parametrize("seed", range(5))
def test_choose_threshold_agrees_with_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    labels[:2] = [0, 1]
    probs = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1).round(2)  # rounding makes ties
    n_pos, n_neg = labels.sum(), (1 - labels).sum()
    candidates = np.unique(probs)[::-1]  # highest first

    def counts(t: float) -> tuple[int, int]:
        return int((probs[labels == 1] >= t).sum()), int((probs[labels == 0] >= t).sum())

    j = [counts(t)[0] * n_neg - counts(t)[1] * n_pos for t in candidates]
    assert choose_threshold(labels, probs) == candidates[int(np.argmax(j))]

    for target in (0.5, 0.8, 0.9, 0.95, 1.0):
        t = choose_threshold(labels, probs, target_sensitivity=target)
        ok = [c for c in candidates if counts(c)[0] >= math.ceil(target * n_pos - 1e-9)]
        assert t == ok[0]
        assert 0.0 <= t <= 1.0


def test_choose_threshold_returns_plain_float_in_range() -> None:
    # All scores at 1.0 and chance-level: J is 0 everywhere, the inf threshold clips to 1.0.
    t = choose_threshold(np.array([0, 1]), np.array([1.0, 1.0]))
    assert type(t) is float
    assert t == 1.0


@pytest.mark.parametrize(
    ("labels", "probs", "kwargs", "match"),
    [
        ([1, 1, 1], [0.2, 0.5, 0.9], {}, "both classes"),
        ([0, 0], [0.2, 0.5], {}, "both classes"),
        ([], [], {}, "empty"),
        ([0, 1], [0.2, 0.5], {"target_sensitivity": 0.0}, "target_sensitivity"),
        ([0, 1], [0.2, 0.5], {"target_sensitivity": 1.5}, "target_sensitivity"),
        ([0, 1], [0.2, 0.5], {"target_sensitivity": float("nan")}, "target_sensitivity"),
    ],
)
def test_choose_threshold_errors(labels: list, probs: list, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        choose_threshold(np.array(labels), np.array(probs), **kwargs)


def _noisy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.7).astype(int)
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    return labels, probs


def test_bootstrap_ci_contains_estimate_and_is_deterministic() -> None:
    labels, probs = _noisy(400)
    m = binary_metrics(labels, probs, 0.5, bootstrap=500, seed=3)
    for key in ("accuracy", "roc_auc"):
        lo, hi = m["ci95"][key]
        assert lo < m[key] < hi
        assert hi - lo < 0.2
    assert binary_metrics(labels, probs, 0.5, bootstrap=500, seed=3)["ci95"] == m["ci95"]
    assert binary_metrics(labels, probs, 0.5, bootstrap=500, seed=4)["ci95"] != m["ci95"]


def test_bootstrap_auc_matches_sklearn_per_resample() -> None:
    labels, probs = _noisy(300, seed=1)
    probs = probs.round(2)  # ties across classes exercise the half-credit rule
    idx = np.random.default_rng(0).integers(0, labels.size, size=(25, labels.size))
    idx[0] = np.flatnonzero(labels == 1)[0]  # one resample with a single class: NaN
    got = _bootstrap_auc(labels, probs, idx)
    assert np.isnan(got[0])
    want = [roc_auc_score(labels[row], probs[row]) for row in idx[1:]]
    np.testing.assert_allclose(got[1:], want, rtol=0, atol=1e-12)


def test_bootstrap_ci_for_5000_samples_brackets_the_auc() -> None:
    # (Its speed is a benchmark's business, not a timed unit test's: CI machines are shared.)
    labels, probs = _noisy(5000)
    m = binary_metrics(labels, probs, 0.5, bootstrap=1000)
    low, high = m["ci95"]["roc_auc"]
    assert low < m["roc_auc"] < high and high - low < 0.05


def test_single_class_gives_none_aucs_but_valid_accuracy() -> None:
    probs = np.array([0.2, 0.6, 0.7, 0.9, 0.95])
    m = binary_metrics(np.ones(5, int), probs, 0.5, bootstrap=200)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["ci95"]["roc_auc"] is None
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["sensitivity"] == pytest.approx(0.8)
    assert m["specificity"] is None  # no NORMAL cases: undefined, not 0
    lo, hi = m["ci95"]["accuracy"]
    assert 0 <= lo <= 0.8 <= hi <= 1
    assert m["confusion_matrix"] == [[0, 0], [1, 4]]

    normal_only = binary_metrics(np.zeros(5, int), probs, 0.5, bootstrap=0)
    assert normal_only["recall"] is None and normal_only["sensitivity"] is None
    assert normal_only["specificity"] == pytest.approx(0.2)
    assert normal_only["precision"] == 0.0  # zero_division=0: 4 false positives, no hits


@pytest.mark.parametrize(
    ("labels", "probs", "threshold", "match"),
    [
        ([], [], 0.5, "empty"),
        ([0, 1, 1], [0.2, 0.5], 0.5, "length"),
        ([0, 1], [0.2, 1.2], 0.5, r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.5], 0.5, r"\[0, 1\]"),
        ([0, 1], [0.2, float("nan")], 0.5, "NaN"),
        ([0, 2], [0.2, 0.5], 0.5, "labels"),
        ([0, float("nan")], [0.2, 0.5], 0.5, "labels"),
        ([[0, 1]], [[0.2, 0.5]], 0.5, "1-D"),
        ([0, 1], [0.2, 0.5], 1.5, "threshold"),
        ([0, 1], [0.2, 0.5], float("nan"), "threshold"),
    ],
)
def test_binary_metrics_errors(labels: list, probs: list, threshold: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binary_metrics(np.array(labels), np.array(probs), threshold, bootstrap=0)


def test_json_safe_and_formatted() -> None:
    m = binary_metrics(LABELS, PROBS, 0.5, bootstrap=100)
    assert json.loads(json.dumps(m, allow_nan=False)) == m

    text = format_metrics(m)
    for key in (
        "accuracy",
        "precision",
        "recall",
        "sensitivity",
        "specificity",
        "f1",
        "roc_auc",
        "pr_auc",
        "brier",
        "threshold",
    ):
        assert key in text
    for name in CLASS_NAMES:
        assert name in text
    assert "0.7000" in text  # accuracy to 4 decimals
    lo, hi = m["ci95"]["accuracy"]
    assert f"[{lo:.4f}, {hi:.4f}]" in text
    assert "predicted_positive 5" in text

    single = format_metrics(binary_metrics(np.ones(3, int), [0.2, 0.6, 0.9], 0.5, bootstrap=0))
    assert "n/a" in single


def _plateau_scores(n_neg: int = 200, n_pos: int = 600, seed: int = 0):
    """Near-separable scores with a wide gap: negatives mostly below 0.02, positives mostly
    above 0.5, and a few stragglers on each side, as a near-perfect validation ROC gives."""
    rng = np.random.default_rng(seed)
    neg = rng.uniform(0.0, 0.02, n_neg)
    pos = rng.uniform(0.5, 1.0, n_pos)
    neg[:3] = [0.6, 0.7, 0.8]  # a few healthy films scored high
    pos[:3] = [0.001, 0.005, 0.01]  # a few missed pneumonias
    labels = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    return labels, np.r_[neg, pos]


def test_margin_threshold_sits_mid_plateau_in_logit_space():
    labels, probs = _plateau_scores()
    youden = threshold_choice(labels, probs, policy="youden")
    margin = threshold_choice(labels, probs, policy="margin")
    # Youden's sharpest point hugs one edge of the flat gap between 0.02 and 0.5 ...
    assert youden["threshold"] > 0.49
    low, high = margin["interval"]
    assert low < 0.021 and high > 0.49
    # ... the margin policy takes its middle in logit space, far from both edges.
    mid_logit = (np.log(low / (1 - low)) + np.log(high / (1 - high))) / 2
    assert margin["threshold"] == pytest.approx(1 / (1 + np.exp(-mid_logit)))
    assert 0.05 < margin["threshold"] < 0.2
    # Every threshold in the interval is within the tolerance of the best J.
    assert margin["youden_j"] >= youden["youden_j"] - margin["tolerance"] - 1e-12
    assert margin["tolerance"] >= 0.01


def test_margin_interval_stops_where_j_drops_beyond_the_tolerance():
    labels, probs = _plateau_scores()
    # Move 30 negatives into the gap at 0.3: thresholds below 0.3 now lose 15% specificity.
    idx = np.flatnonzero(labels == 0)[10:40]
    probs = probs.copy()
    probs[idx] = 0.3
    choice = threshold_choice(labels, probs, policy="margin")
    low, high = choice["interval"]
    assert low >= 0.3 - 1e-9 and high > 0.49
    assert choice["threshold"] > 0.3


def test_margin_on_well_separated_classes_keeps_both_classes_correct():
    labels = np.array([0] * 50 + [1] * 50)
    probs = np.r_[np.linspace(0.0, 0.1, 50), np.linspace(0.9, 1.0, 50)]
    choice = threshold_choice(labels, probs)
    assert choice["policy"] == "margin" and 0.1 < choice["threshold"] <= 0.9
    assert choice["threshold"] == pytest.approx(0.5, abs=0.01)  # logit mid of 0.1 and 0.9
    assert choice["youden_j"] == 1.0


def test_target_sensitivity_choice_records_its_policy():
    labels, probs = _plateau_scores()
    choice = threshold_choice(labels, probs, target_sensitivity=0.999)
    assert choice["policy"] == "sensitivity>=0.999" and choice["interval"] is None
    assert choice["threshold"] == choice_threshold_for_all_positives(labels, probs)


def choice_threshold_for_all_positives(labels, probs):
    return float(probs[labels == 1].min())


def test_describe_threshold_names_the_policy_and_interval():
    labels, probs = _plateau_scores()
    choice = threshold_choice(labels, probs)
    line = describe_threshold(
        {"threshold": choice["threshold"], "threshold_source": "run", "threshold_choice": choice}
    )
    assert line.startswith(f"threshold {choice['threshold']:.4f} from the run (margin")
    assert "near-optimal interval" in line
    assert describe_threshold({"threshold": 0.3, "threshold_source": "--threshold"}) == (
        "threshold 0.3000 from --threshold"
    )


def test_import_in_background_loads_sklearn_metrics_on_a_thread() -> None:
    import subprocess
    import sys

    code = (
        "import sys, threading; from cxr_fast import metrics; "
        "before = 'sklearn.metrics' in sys.modules; "
        "t = metrics.import_in_background(); "
        "print(before, t is not threading.current_thread(), t.daemon); t.join(); "
        "print('sklearn.metrics' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "False", "True"]


def test_the_removed_shift_policy_is_refused():
    with pytest.raises(ValueError, match="margin, youden"):
        threshold_choice(LABELS, PROBS, policy="shift")
