import json

import pytest

from cxr_fast.contract import PreprocessContract


def test_json_round_trip_keeps_every_field():
    contract = PreprocessContract(image_size=320, interpolation="cubic", mean=0.5, std=0.25)
    text = contract.to_json()
    assert json.loads(text)["version"] == 1
    assert PreprocessContract.from_json(text) == contract


def test_defaults_scale_to_unit_range():
    contract = PreprocessContract()
    assert contract.image_size == 224
    assert contract.grayscale
    assert (contract.shift, contract.divisor) == (0.0, 1.0)
    assert contract.scale == pytest.approx(1 / 255)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image_size": 4},
        {"interpolation": "lanczos"},
        {"mean": 0.5},
        {"mean": 0.5, "std": 0.0},
        {"grayscale": False},
    ],
)
def test_invalid_contracts_are_rejected(kwargs):
    with pytest.raises(ValueError):
        PreprocessContract(**kwargs)


def test_unknown_keys_and_versions_are_rejected():
    data = PreprocessContract().to_dict()
    with pytest.raises(ValueError, match="unknown"):
        PreprocessContract.from_dict({**data, "colour": "rgb"})
    with pytest.raises(ValueError, match="version"):
        PreprocessContract.from_dict({**data, "version": 99})
