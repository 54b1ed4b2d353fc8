"""The model's thread count follows whichever side is the bottleneck, after the cost of
spreading the model over cores that the decoding workers share."""

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.scoring.threads import SAMPLE_IMAGES, choose_threads, measure_costs


@pytest.mark.parametrize(
    ("model_s", "decode_s", "expected"),
    [
        # measure_costs on this project's 2-core host (ms per image, model on one thread):
        (0.0015, 0.0055, 1),  # int8 cnn on full-resolution films: decoding is the bottleneck
        (0.0048, 0.0055, 1),  # the default ensemble's int8 export: 7.6 s vs 9.3 s on 2 threads
        (0.0061, 0.0055, 1),  # one eager bf16 resnet18 member, 128 px: 8.4 s vs 10.2 s
        (0.0183, 0.0060, 2),  # fp32 resnet18 at 224 px: 24.6 s on 1 thread vs 19.8 s on 2
    ],
)
def test_choose_threads_on_two_cores(model_s, decode_s, expected):
    assert choose_threads(model_s, decode_s, cores=2, workers=2) == expected


def test_more_cores_go_to_a_model_that_is_the_bottleneck():
    # 16 cores, 2 workers: a model as slow as two decodes is the bottleneck and gets all 16;
    # one far faster than decoding gets the 14 cores the workers leave.
    assert choose_threads(0.006, 0.012, cores=16, workers=2) == 16
    assert choose_threads(0.0001, 0.012, cores=16, workers=2) == 14


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
    assert calls[0] == (torch.Size([SAMPLE_IMAGES, 1, 64, 64]), 1)  # the bad file was skipped
    assert torch.get_num_threads() == before
    assert measure_costs([str(bad)], contract, logits) is None
