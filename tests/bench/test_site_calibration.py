"""bench.site_calibration: calibration fitted on some patients' films and judged on the others',
end to end on a small real run."""

import json

import numpy as np

from bench.site_calibration import cross_fitted, main
from cxr_fast.calibrate import fit_site
from cxr_fast.choices import CALIBRATION_POLICIES
from cxr_fast.configs import CalibrateConfig


def test_each_fold_is_predicted_by_a_fit_that_never_saw_it():
    rng = np.random.default_rng(0)
    labels = (rng.random(120) < 0.6).astype(int)
    logits = np.where(labels == 1, 2.0, -2.0) + rng.normal(0, 1.5, 120) + 2.0
    folds = [i % 3 for i in range(120)]
    pred = cross_fitted(logits, labels, folds, 3, "bayes", threshold=0.3, prior=3.0)
    for fold in range(3):
        held = np.arange(120) % 3 == fold
        site = fit_site(logits[~held], labels[~held], "bayes", threshold=0.3, prior=3.0)
        expected = site.probabilities(logits[held]) >= 0.5
        assert (pred[held] == expected).all()
    # An overwhelming prior keeps the run as trained: its own threshold, fold by fold.
    kept = cross_fitted(logits, labels, folds, 3, "bayes", threshold=0.3, prior=1e9)
    assert (kept == (1 / (1 + np.exp(-logits)) >= 0.3)).all()


def test_the_bench_reports_every_policy_with_and_without_the_prior(
    tiny_ensemble, synth_small, capsys
):
    main([str(tiny_ensemble), "--data", str(synth_small), "--folds", "3", "--splits", "2"])
    report = json.loads(capsys.readouterr().out)
    assert report["folds"] == 3 and report["n"] == 160
    for policy in CALIBRATION_POLICIES:
        for name in (f"cross_fitted_{policy}", f"cross_fitted_{policy}_no_prior"):
            row = report[name]
            assert 0 <= row["accuracy"] <= 1 and row["accuracy_over_splits"]["splits"] == 2
        prior = report[f"cross_fitted_{policy}"]["prior_strength"]
        assert prior == CalibrateConfig.prior_strength
        assert report[f"cross_fitted_{policy}_no_prior"]["prior_strength"] == 0.0
