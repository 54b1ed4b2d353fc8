"""A tiny trained run, made once for the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_fast.training.config import TrainConfig
from cxr_fast.training.trainer import run_train

# Trained long enough (val ROC-AUC ~0.85) that its probabilities are not bunched together: the
# int8 ROC-AUC check ranks held-out images, and near-ties would make it measure noise.
TINY = dict(
    arch="cnn",
    epochs=4,
    image_size=64,
    batch_size=16,
    val_fraction=0.25,
    lr=3e-3,
    warmup_epochs=0.5,
    folds=1,
    export="none",
)


@pytest.fixture(scope="session")
def tiny_run(synth_small, tmp_path_factory) -> Path:
    """A cnn trained for a few seconds on 64 px synthetic films; returns the run folder."""
    out = tmp_path_factory.mktemp("export-run") / "run"
    run_train(
        TrainConfig(data=str(synth_small), out=str(out), workers=0, gate=False, **TINY),
        log=lambda _: None,
    )
    return out
