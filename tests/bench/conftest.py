"""A small real ensemble run (2 folds x 1 epoch on the synthetic films) for the benches that
read a run's out-of-fold predictions."""

import pytest

from cxr_fast.training.config import TrainConfig
from cxr_fast.training.folds import run_train_folds


@pytest.fixture(scope="session")
def tiny_ensemble(synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-ens") / "ens"
    config = TrainConfig(
        data=str(synth_small), out=str(out), arch="cnn", image_size=64, batch_size=16,
        epochs=1, folds=2, workers=0, export="none", threshold_policy="shift",
    )  # fmt: skip
    run_train_folds(config, log=lambda _: None)
    return out
