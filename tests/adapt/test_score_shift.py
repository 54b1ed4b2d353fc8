"""The site's score shifts and prevalence, fitted without its labels."""

import numpy as np
import pytest

from cxr_fast.adapt.score_shift import (
    fit_shift,
    prior_threshold,
    probability_logits,
    shifted_threshold,
)
from cxr_fast.inference import sigmoid


def _films(rng, n: int, prevalence: float, healthy: float = -6.0, sick: float = 4.0):
    labels = (rng.random(n) < prevalence).astype(int)
    logits = np.where(labels == 1, rng.normal(sick, 2.5, n), rng.normal(healthy, 2.0, n))
    return logits, labels


def test_a_site_whose_healthy_films_score_higher_is_found_and_the_threshold_follows():
    rng = np.random.default_rng(0)
    ref, ref_y = _films(rng, 4000, 0.74)
    site, site_y = _films(rng, 400, 0.6, healthy=-3.5)
    fit = fit_shift(site, ref, ref_y)
    assert fit.shift_normal == pytest.approx(2.5, abs=0.4)
    assert abs(fit.shift_pneumonia) < 0.6
    assert fit.prevalence == pytest.approx(site_y.mean(), abs=0.05)
    stored = shifted_threshold(fit_shift(ref, ref, ref_y), ref, ref_y)["threshold"]
    moved = shifted_threshold(fit, ref, ref_y)
    assert (
        moved["threshold"] > stored
        and moved["shift"]["shift_normal"] == fit.to_dict()["shift_normal"]
    )
    # The moved threshold calls more of the site's healthy films healthy, as labels would show.
    healthy = site[site_y == 0]
    assert (sigmoid(healthy) < moved["threshold"]).mean() > (sigmoid(healthy) < stored).mean()


def test_the_training_films_themselves_need_no_shift():
    rng = np.random.default_rng(1)
    ref, ref_y = _films(rng, 3000, 0.74)
    fit = fit_shift(ref, ref, ref_y)
    assert abs(fit.shift_normal) <= 0.1 and abs(fit.shift_pneumonia) <= 0.1
    assert fit.prevalence == pytest.approx(0.74, abs=0.02)


def test_prevalence_alone_moves_the_threshold_by_the_prior_log_odds():
    rng = np.random.default_rng(2)
    ref, ref_y = _films(rng, 4000, 0.74)
    site, _ = _films(rng, 600, 0.4)
    fit = fit_shift(site, ref, ref_y, shifts=False)
    assert fit.shift_normal == fit.shift_pneumonia == 0.0
    assert fit.prevalence == pytest.approx(0.4, abs=0.05)
    moved = prior_threshold(0.1, 0.74, fit)
    expected = (
        np.log(0.1 / 0.9) + np.log(0.74 / 0.26) - np.log(fit.prevalence / (1 - fit.prevalence))
    )
    assert np.log(moved / (1 - moved)) == pytest.approx(expected)
    assert moved > 0.1  # fewer sick films at the site: a higher bar


def test_stored_probabilities_become_finite_logits():
    z = probability_logits(np.array([0.0, 0.5, 1.0], dtype=np.float32))
    assert np.isfinite(z).all() and z[1] == 0 and z[0] == -z[2]
