"""The shift threshold (--threshold-policy shift) of a one-model run: chosen once when training
ends, stored in model.pt and metrics.json alike."""

import pytest

from cxr_fast.run_folder import load_run, read_json
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.shift import SHIFTS
from cxr_fast.training.shift_threshold import rethreshold_under_shift, wants_shift_threshold
from cxr_fast.training.trainer import load_config, run_train


@pytest.fixture(scope="module")
def shift_run(synth_small, tmp_path_factory):
    """A small one-model run trained with the shift policy."""
    out = tmp_path_factory.mktemp("shift") / "run"
    config = TrainConfig(
        data=str(synth_small), out=str(out), arch="cnn", epochs=2, image_size=64,
        batch_size=16, val_fraction=0.25, lr=3e-3, workers=0, threshold_policy="shift",
        folds=1, export="none",
    )  # fmt: skip
    run_train(config, log=lambda _: None)
    return out


def test_a_trained_run_stores_the_shift_threshold_everywhere(shift_run):
    trained_run = shift_run
    metrics = read_json(trained_run / "metrics.json")
    choice = metrics["threshold_choice"]
    assert choice["policy"] == "shift" and set(choice["shifted_j"]) == set(SHIFTS)
    _, info = load_run(trained_run)
    assert info.threshold == metrics["threshold"] == choice["threshold"]
    assert info.meta["threshold_rule"] == "shift"
    assert not wants_shift_threshold(load_config(trained_run), trained_run)  # done once


def test_rethresholding_again_gives_the_same_threshold(shift_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(shift_run, run)
    config = load_config(run)
    before = read_json(run / "metrics.json")["threshold"]
    assert rethreshold_under_shift(run, config, log=lambda _: None) == pytest.approx(before)


def test_the_default_margin_run_is_left_as_it_is(trained_run):
    # trained_run uses the default policy: margin at its best epoch, nothing re-scored.
    choice = read_json(trained_run / "metrics.json")["threshold_choice"]
    assert choice["policy"] == "margin" and "shifted_j" not in choice
    assert not wants_shift_threshold(load_config(trained_run), trained_run)
