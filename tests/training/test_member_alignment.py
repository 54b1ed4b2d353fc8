"""An ensemble's threshold fits the scores the ensemble gives, whatever each member's scale."""

import numpy as np
import pytest
import torch
from torch import nn

from cxr_fast.inference import sigmoid
from cxr_fast.metrics import threshold_choice
from cxr_fast.models.ensemble import Ensemble
from cxr_fast.training.member_alignment import apply_alignment, fit_alignment, fold_into_head


def Scaled(scale: float, shift: float) -> nn.Module:
    """A member whose logit is ``scale * x + shift`` of the film's one-number "finding"."""
    member = nn.Linear(1, 1)
    with torch.no_grad():
        member.weight.fill_(scale)
        member.bias.fill_(shift)
    return member


def _logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).reshape(-1, 1)).numpy().reshape(-1)


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
    raw = np.array([_logits(members[k], np.array([f])).item() for f, k in pairs])
    alignment = fit_alignment(raw, folds, members=2)
    aligned = apply_alignment(raw, folds, alignment)
    threshold = threshold_choice(labels, sigmoid(aligned))["threshold"]
    new, new_labels = _films(2000, seed=1)  # films none of them saw
    # Without the alignment the threshold chosen on the pooled scores misses the ensemble's.
    unaligned = threshold_choice(labels, sigmoid(raw))["threshold"]
    plain = _logits(Ensemble(members), new)
    assert _balanced_accuracy(new_labels, sigmoid(plain) >= unaligned) < 0.75
    for member, (scale, shift) in zip(members, alignment, strict=True):
        fold_into_head(member, scale, shift)  # what training does before saving the ensemble
    called = sigmoid(_logits(Ensemble(members), new)) >= threshold
    assert _balanced_accuracy(new_labels, called) > 0.85


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


def test_folding_into_the_head_scales_and_shifts_the_logit():
    member = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.randn(5, 3)
    with torch.no_grad():
        before = member(x)
        fold_into_head(member, 2.5, -1.0)
        assert torch.allclose(member(x), 2.5 * before - 1.0, atol=1e-6)


def test_a_member_without_one_logit_head_is_refused():
    with pytest.raises(ValueError, match="one-logit linear layer"):
        fold_into_head(nn.Sequential(nn.Linear(3, 2)), 2.0, 0.0)
