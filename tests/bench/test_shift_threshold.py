"""bench.shift_threshold's worst-case margin threshold, on constructed score distributions."""

import numpy as np

from bench.shift_threshold import worst_case_margin


def _scores(rng, normal_centre: float) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat([0, 1], 400)
    logits = np.concatenate([rng.normal(normal_centre, 1.0, 400), rng.normal(4.0, 1.0, 400)])
    return labels, 1 / (1 + np.exp(-logits))


def test_one_variant_is_the_margin_of_its_own_curve():
    labels, p = _scores(np.random.default_rng(0), -4.0)
    t, low, high = worst_case_margin(labels, {"clean": p})
    assert low < 0.5 < high  # the classes are symmetric about logit 0
    assert abs(np.log(t / (1 - t))) < 0.5


def test_a_variant_that_raises_normal_scores_raises_the_threshold():
    rng = np.random.default_rng(0)
    labels, clean = _scores(rng, -4.0)
    _, shifted = _scores(rng, -1.5)  # healthy films scored higher, as at a new site
    alone, _, _ = worst_case_margin(labels, {"clean": clean})
    both, low, high = worst_case_margin(labels, {"clean": clean, "shifted": shifted})
    assert both > alone
    assert low <= both <= high
