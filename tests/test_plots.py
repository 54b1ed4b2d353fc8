"""Plots: the PNGs exist, open, have a sensible size, and no figure is left open."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from cxr_fast.metrics import binary_metrics
from cxr_fast.plots import PLOT_FILES, save_plots


def _plots(labels, probs, threshold: float, out: Path, **kwargs) -> dict[str, Path]:
    """save_plots with the metrics evaluate computes for the same inputs."""
    metrics = binary_metrics(labels, probs, threshold, bootstrap=0)
    return save_plots(labels, probs, metrics, out, **kwargs)


def _check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    # About 5 x 4.5 inches at 100-120 dpi.
    assert 400 <= width <= 800
    assert 400 <= height <= 800


def test_writes_four_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.6).astype(int)
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    out = tmp_path / "nested" / "plots"  # created on demand

    paths = _plots(labels, probs, 0.5, out, title="test split")

    assert set(paths) == set(PLOT_FILES)
    for name, path in paths.items():
        assert path == out / PLOT_FILES[name]
        _check_png(path)
    assert plt.get_fignums() == []


def test_single_class_writes_confusion_and_calibration_only(tmp_path: Path) -> None:
    paths = _plots(np.ones(5, int), np.array([0.2, 0.6, 0.7, 0.9, 0.95]), 0.5, tmp_path)

    assert set(paths) == {"confusion_matrix", "calibration"}
    for path in paths.values():
        _check_png(path)
    assert not (tmp_path / PLOT_FILES["roc"]).exists()
    assert not (tmp_path / PLOT_FILES["pr"]).exists()
    assert plt.get_fignums() == []


@pytest.mark.parametrize(
    ("labels", "probs", "threshold"),
    [
        ([0, 1], [0.3, 0.3], 0.5),  # nothing predicted positive: no PR operating point
        ([0, 1], [0.0, 1.0], 0.0),  # everything predicted positive
        ([0], [0.4], 0.5),  # a single image
    ],
)
def test_tiny_inputs_do_not_crash(
    tmp_path: Path, labels: list, probs: list, threshold: float
) -> None:
    paths = _plots(np.array(labels), np.array(probs), threshold, tmp_path)
    assert {"confusion_matrix", "calibration"} <= set(paths)
    for path in paths.values():
        _check_png(path)
    assert plt.get_fignums() == []


def test_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="labels"):
        save_plots(np.array([0, 3]), np.array([0.1, 0.2]), {"threshold": 0.5}, tmp_path)
