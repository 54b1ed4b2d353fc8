"""DALI's GPU path on its first run: batches on a GPU other than 0, batches that stay valid
after the next one, and channels_last kept from the loader into the model's activations."""

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.models import build_model
from cxr_fast.precision import resolve_precision

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed"),
]
CONTRACT = PreprocessContract(image_size=64)


def _gpu(index: int) -> torch.device:
    if torch.cuda.device_count() <= index:
        pytest.skip(f"needs {index + 1} GPUs")
    return torch.device("cuda", index)


@pytest.mark.parametrize("index", [0, 1])
def test_batches_land_on_the_chosen_gpu_and_stay_valid(kaggle_dir, index):
    device = _gpu(index)
    records = discover(kaggle_dir)
    loader = DaliLoader(LoaderSpec(records, CONTRACT, 8, device=device))
    batches = iter(loader)
    first = next(batches)
    assert first.x.device == device and first.y.device == device
    kept = first.x.clone().cpu()
    rest = list(batches)  # later batches must not reuse or overwrite the first one's memory
    torch.cuda.synchronize(device)
    assert torch.equal(first.x.cpu(), kept)
    assert all(batch.x.device == device for batch in rest)
    cpu = DaliLoader(LoaderSpec(records, CONTRACT, 8))
    (reference, *_) = list(cpu)
    assert float((kept - reference.x).abs().mean()) < 0.01  # nvJPEG vs libjpeg-turbo


def test_first_convolution_runs_channels_last_from_the_loader(kaggle_dir):
    """A [N,1,H,W] batch is 'channels_last' whatever its layout (one channel), so the check is
    on the first convolution's output, which has 64 channels."""
    device = _gpu(0)
    model = build_model("resnet18").to(device=device, memory_format=torch.channels_last).eval()
    seen = {}
    model.conv1.register_forward_hook(lambda _m, _i, out: seen.update(out=out))
    (batch, *_) = list(DaliLoader(LoaderSpec(discover(kaggle_dir), CONTRACT, 8, device="cuda")))
    precision = resolve_precision("auto", device)
    with torch.no_grad(), precision.autocast():
        model(batch.x)
    out = seen["out"]
    assert out.shape[1] == 64 and out.dtype == precision.dtype
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
