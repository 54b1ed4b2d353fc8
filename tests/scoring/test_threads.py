"""The model's thread count follows whichever side is the bottleneck."""

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.scoring.threads import choose_threads, measure_costs


@pytest.mark.parametrize(
    ("model_s", "decode_s", "expected"),
    [
        (0.0015, 0.006, 2),  # int8 cnn on full-resolution films: decoding is the bottleneck
        (0.022, 0.006, 4),  # fp32 resnet18: the model is
        (0.003, 0.006, 4),  # a tie goes to the model
    ],
)
def test_choose_threads(model_s, decode_s, expected):
    assert choose_threads(model_s, decode_s, cores=4, workers=2) == expected


def test_at_least_one_thread():
    assert choose_threads(0.0001, 1.0, cores=2, workers=4) == 1


def test_measure_costs_on_real_files(kaggle_dir, tmp_path):
    paths = [str(p) for p in sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))]
    bad = tmp_path / "bad.jpeg"
    bad.write_bytes(b"nope")
    contract = PreprocessContract(image_size=64)
    calls = []

    def logits(x: torch.Tensor) -> torch.Tensor:
        calls.append((x.shape, torch.get_num_threads()))
        return x.mean(dim=(1, 2, 3))

    before = torch.get_num_threads()
    model_s, decode_s = measure_costs([str(bad), *paths], contract, logits)
    assert model_s > 0 and decode_s > 0
    assert calls[0] == (torch.Size([2, 1, 64, 64]), 1)  # the bad file was skipped
    assert torch.get_num_threads() == before
    assert measure_costs([str(bad)], contract, logits) is None
