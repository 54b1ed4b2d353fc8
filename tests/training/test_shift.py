"""Simulated acquisition shift: the grey round trip reproduces every contract's input, and the
shifted scoring pass scores the films as they are and under each shift."""

import numpy as np
import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.inference import sigmoid
from cxr_fast.precision import inference_precision
from cxr_fast.scoring.model import module_model
from cxr_fast.training.shift import (
    CLEAN,
    SHIFTS,
    contract_input,
    grey_contract,
    shifted_probabilities,
)


@pytest.mark.parametrize(
    "contract",
    [
        PreprocessContract(image_size=64),
        PreprocessContract(image_size=64, mean=0.485, std=0.229),
        PreprocessContract(image_size=64, normalize="per-image"),
        PreprocessContract(image_size=64, normalize="equalize"),
    ],
    ids=["none", "mean-std", "per-image", "equalize"],
)
def test_the_grey_round_trip_is_the_contracts_own_input(kaggle_dir, contract):
    records = discover(kaggle_dir)[:6]

    def first(c):
        return next(iter(make_scoring_loader(LoaderSpec(records, c, 6, workers=0), "torch"))).x

    grey = first(grey_contract(contract))
    assert grey.min() >= 0 and grey.max() <= 1
    assert torch.allclose(contract_input(grey, contract), first(contract), atol=1e-5)


class SharpnessAndBrightness(torch.nn.Module):
    """A logit that blur lowers, grain raises and gamma moves: mean neighbour difference and
    mean grey."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sharpness = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))
        return (50 * sharpness + 2 * x.mean(dim=(1, 2, 3)) - 2).unsqueeze(1)


def test_shifted_probabilities_score_every_film_as_it_is_and_under_each_shift(kaggle_dir):
    records = [r for r in discover(kaggle_dir) if r.label is not None][:12]
    # 128 px, the default: at 64 px a 1 px blur of a 224 px film is below one grey level.
    contract = PreprocessContract(image_size=128)
    model = SharpnessAndBrightness()
    precision = inference_precision(torch.device("cpu"), "fp32")
    probs = shifted_probabilities(model, records, contract, precision, workers=0, seed=1)
    assert list(probs) == [CLEAN, *SHIFTS]
    loader = make_scoring_loader(LoaderSpec(records, contract, 5, workers=0), "torch")
    index, logits, _ = module_model(model, contract, precision).predict(loader)
    expected = np.empty(len(records))
    expected[index] = sigmoid(logits)
    assert probs[CLEAN] == pytest.approx(expected, abs=1e-5)
    assert (probs["blur 1 px"] < probs[CLEAN]).all()
    assert (probs["blur 2 px"] < probs["blur 1 px"]).all()
    assert (probs["grain 4 levels"] > probs[CLEAN]).all()
    assert (probs["gamma 0.8"] > probs[CLEAN]).all()  # brighter
    assert (probs["gamma 1.25"] < probs[CLEAN]).all()
    again = shifted_probabilities(model, records, contract, precision, workers=0, seed=1)
    assert all(np.array_equal(probs[k], again[k]) for k in probs)  # the grain is seeded
