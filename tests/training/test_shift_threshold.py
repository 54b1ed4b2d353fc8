"""The shift threshold of a one-model run: chosen once when training ends, stored in model.pt
and metrics.json alike."""

import pytest

from cxr_fast.run_folder import load_run, read_json
from cxr_fast.training.shift import SHIFTS
from cxr_fast.training.shift_threshold import rethreshold_under_shift, wants_shift_threshold
from cxr_fast.training.trainer import load_config


def test_a_trained_run_stores_the_shift_threshold_everywhere(trained_run):
    metrics = read_json(trained_run / "metrics.json")
    choice = metrics["threshold_choice"]
    assert choice["policy"] == "shift" and set(choice["shifted_j"]) == set(SHIFTS)
    _, info = load_run(trained_run)
    assert info.threshold == metrics["threshold"] == choice["threshold"]
    assert info.meta["threshold_rule"] == "shift"
    assert not wants_shift_threshold(load_config(trained_run), trained_run)  # done once


def test_rethresholding_again_gives_the_same_threshold(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = load_config(run)
    before = read_json(run / "metrics.json")["threshold"]
    assert rethreshold_under_shift(run, config, log=lambda _: None) == pytest.approx(before)
