"""Loading-side checks that need no GPU: batches above an export's batch_max are split, and a
TensorRT engine's recorded GPU and TensorRT release are checked before it is deserialised."""

import pytest
import torch

from cxr_fast.export.common import ExportError
from cxr_fast.export.engine_target import check_engine_target
from cxr_fast.export.loading import ExportedModel

H100 = {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "tensorrt": "10.13.3.9"}


class _AtMost(torch.nn.Module):
    """Stands in for an engine built for batches up to ``limit``: larger ones fail."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            raise RuntimeError(f"batch {len(x)} is outside the engine's profile")
        self.seen.append(len(x))
        return x.mean(dim=(1, 2, 3)).reshape(-1, 1)


def test_a_batch_above_batch_max_runs_in_pieces_in_order():
    engine = _AtMost(4)
    model = ExportedModel(engine, torch.device("cpu"), image_size=8, batch_max=4)
    x = torch.rand(10, 1, 8, 8)
    logits = model(x)
    assert engine.seen == [4, 4, 2]
    torch.testing.assert_close(logits, x.mean(dim=(1, 2, 3)).reshape(-1, 1))
    unsplit = ExportedModel(_AtMost(4), torch.device("cpu"), image_size=8)
    with pytest.raises(RuntimeError, match="outside the engine's profile"):
        unsplit(x)  # what --batch-size 300 did against a 256 engine


def test_same_architecture_and_tensorrt_release_load():
    a100_80 = {"gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0", "tensorrt": "10.13.1"}
    a100_40 = {**a100_80, "gpu": "NVIDIA A100-SXM4-40GB", "tensorrt": "10.13.3.9"}
    check_engine_target(a100_80, a100_40, "m.trt.pt2")  # no error


def test_an_h100_engine_on_an_a100_is_one_clear_error():
    a100 = {"gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0", "tensorrt": "10.13.3.9"}
    with pytest.raises(ExportError, match=r"built on NVIDIA H100.*9\.0.*A100.*8\.0.*re-export"):
        check_engine_target(H100, a100, "m.trt.pt2")


def test_another_tensorrt_release_and_an_old_sidecar_are_errors():
    with pytest.raises(ExportError, match=r"TensorRT 10\.13\.3\.9, this host has TensorRT 10\.9"):
        check_engine_target(H100, {**H100, "tensorrt": "10.9.0"}, "m.trt.pt2")
    with pytest.raises(ExportError, match="does not record the GPU"):
        check_engine_target(None, H100, "m.trt.pt2")
