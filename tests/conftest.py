"""Shared fixtures: the committed real X-rays (see tests/data/images/ATTRIBUTION.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

IMAGES = Path(__file__).parent / "data" / "images"
KAGGLE = IMAGES / "kaggle"
SAMPLES = IMAGES / "samples"


@pytest.fixture(scope="session")
def kaggle_dir() -> Path:
    """A Kaggle-layout folder (train/{NORMAL,PNEUMONIA}) of 39 real 224 px X-rays."""
    return KAGGLE


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Full-resolution real samples: JPEG, PNGs and two DICOMs."""
    return SAMPLES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """160 synthetic films (96-128 px) in the Kaggle layout, train/ only: learnable quickly."""
    from cxr_fast.data.synth import synth_dataset

    root = tmp_path_factory.mktemp("synth") / "data"
    synth_dataset(root, 160, seed=0, min_size=96, max_size=128, test_fraction=0.0, workers=2)
    return root


@pytest.fixture(scope="session")
def trained_run(synth_small, tmp_path_factory) -> Path:
    """A small cnn run (64 px, 3 epochs) trained on ``synth_small``."""
    from cxr_fast.training.config import TrainConfig
    from cxr_fast.training.trainer import run_train
    from tests.training.commands import MECHANICS_AUGMENT

    out = tmp_path_factory.mktemp("trained") / "run"
    config = TrainConfig(
        data=str(synth_small),
        out=str(out),
        augment=MECHANICS_AUGMENT,
        arch="cnn",
        epochs=3,
        image_size=64,
        batch_size=16,
        val_fraction=0.25,
        lr=3e-3,
        workers=0,
        gate=False,  # synthetic training films: the gate would refuse the real ones
        folds=1,
        export="none",
    )
    run_train(config, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def tiny_ensemble(synth_small, tmp_path_factory) -> Path:
    """A small real ensemble run (2 folds x 1 epoch on ``synth_small``): the benches read its
    out-of-fold predictions, and serve's tests score with it."""
    from cxr_fast.training.config import TrainConfig
    from cxr_fast.training.folds import run_train_folds

    out = tmp_path_factory.mktemp("bench-ens") / "ens"
    config = TrainConfig(
        data=str(synth_small), out=str(out), arch="cnn", image_size=64, batch_size=16,
        epochs=1, folds=2, workers=0, export="none",
    )  # fmt: skip
    run_train_folds(config, log=lambda _: None)
    return out
