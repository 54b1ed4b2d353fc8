"""An ensemble's threshold fits the scores the ensemble gives, whatever each member's scale."""

import numpy as np
import torch
from torch import nn

from cxr_fast.inference import sigmoid
from cxr_fast.metrics import threshold_choice
from cxr_fast.models.ensemble import Ensemble
from cxr_fast.training.member_alignment import apply_alignment, fit_alignment


class Scaled(nn.Module):
    """A member whose logit is ``scale * x + shift`` of the film's one-number "finding"."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.reshape(-1, 1) + self.shift


def _films(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A finding that separates the classes well but not perfectly."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return rng.normal(labels * 2.0 - 1.0, 0.8).astype(np.float32), labels


def _balanced_accuracy(labels: np.ndarray, called: np.ndarray) -> float:
    return 0.5 * (called[labels == 1].mean() + (~called[labels == 0]).mean())


def test_members_on_different_scales_share_one_threshold_with_their_ensemble():
    # Two members trained apart: one sure that every film is pneumonia, one timid.
    members = [Scaled(2.0, 5.0), Scaled(0.3, 0.5)]
    finding, labels = _films(2000, seed=0)
    folds = np.arange(finding.size) % 2  # each film scored by the member that never saw it
    pairs = zip(finding, folds, strict=True)
    raw = np.array([members[k](torch.tensor(f)).item() for f, k in pairs])
    alignment = fit_alignment(raw, folds, members=2)
    aligned = apply_alignment(raw, folds, alignment)
    threshold = threshold_choice(labels, sigmoid(aligned))["threshold"]
    new, new_labels = _films(2000, seed=1)  # films none of them saw
    with torch.no_grad():
        ensemble = Ensemble(members, alignment)(torch.from_numpy(new)).numpy().reshape(-1)
    called = sigmoid(ensemble) >= threshold
    assert _balanced_accuracy(new_labels, called) > 0.85
    # Without the alignment the threshold chosen on the pooled scores misses the ensemble's.
    unaligned = threshold_choice(labels, sigmoid(raw))["threshold"]
    with torch.no_grad():
        plain = Ensemble(members)(torch.from_numpy(new)).numpy().reshape(-1)
    assert _balanced_accuracy(new_labels, sigmoid(plain) >= unaligned) < 0.75


def test_members_that_agree_are_left_as_they_are():
    finding, _ = _films(30000, seed=2)
    folds = np.arange(finding.size) % 3
    alignment = fit_alignment(2.0 * finding - 0.5, folds, members=3)
    for scale, shift in alignment:
        assert abs(scale - 1) < 0.03 and abs(shift) < 0.05


def test_a_member_with_constant_scores_is_not_rescaled():
    logits = np.array([0.3, 0.3, 0.3, -1.0, 2.0, 0.5])
    folds = np.array([0, 0, 0, 1, 1, 1])
    assert fit_alignment(logits, folds, members=2)[0] == (1.0, 0.0)


def test_an_ensemble_without_alignment_is_the_plain_mean():
    members = [Scaled(1.0, 0.0), Scaled(3.0, 1.0)]
    x = torch.tensor([0.5, -1.0])
    assert torch.allclose(Ensemble(members)(x), (x.reshape(-1, 1) * 4 + 1) / 2)
