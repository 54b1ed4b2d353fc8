import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loaders import DEFAULT_CPU_LOADER, make_loader, resolve_loader
from cxr_fast.data.torch_loader import TorchLoader

CPU = torch.device("cpu")
JPEG = [Record("/a/x.jpeg", 0, "train", "x")]
DICOM = [*JPEG, Record("/a/y.dcm", None, None, "y")]


def test_auto_picks_the_measured_cpu_default_and_torch_for_dicom():
    expected = DEFAULT_CPU_LOADER if dali_available() else "torch"
    assert resolve_loader("auto", CPU, JPEG) == expected
    assert resolve_loader("auto", CPU, DICOM) == "torch"
    assert resolve_loader("torch", CPU, JPEG) == "torch"


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_explicit_choices_and_their_errors():
    assert resolve_loader("dali", CPU, JPEG) == "dali"
    assert resolve_loader("auto", torch.device("cuda"), JPEG) == "dali"
    with pytest.raises(ValueError, match="DICOM"):
        resolve_loader("dali", CPU, DICOM)
    with pytest.raises(ValueError, match="loader"):
        resolve_loader("opencv", CPU, JPEG)


def test_make_loader_builds_each_backend(kaggle_dir):
    records = discover(kaggle_dir)[:5]
    contract = PreprocessContract(image_size=32)
    torch_loader = make_loader(records, contract, batch_size=4, loader="torch", device="cpu")
    assert isinstance(torch_loader, TorchLoader)
    assert [b.x.shape[0] for b in torch_loader] == [4, 1]
    if dali_available():
        dali_loader = make_loader(records, contract, batch_size=4, loader="dali", device="cpu")
        assert isinstance(dali_loader, DaliLoader)
        assert [b.x.shape[0] for b in dali_loader] == [4, 1]


def test_user_mistakes_are_value_errors(kaggle_dir):
    records = discover(kaggle_dir)[:2]
    with pytest.raises(ValueError, match="batch size"):
        make_loader(records, PreprocessContract(), batch_size=0)
    with pytest.raises(ValueError, match="no images"):
        make_loader([], PreprocessContract(), batch_size=2)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            make_loader(records, PreprocessContract(), batch_size=2, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_gpu_dali_batches_are_float32_channels_last_on_device(kaggle_dir):
    records = discover(kaggle_dir)
    contract = PreprocessContract(image_size=64)
    gpu = make_loader(records, contract, batch_size=8, device="cuda")
    batches = list(gpu)
    # float32 whatever the precision: autocast lowers it, and an fp32 model rejects Half.
    assert batches[0].x.is_cuda and batches[0].x.dtype == torch.float32
    assert batches[0].x.is_contiguous(memory_format=torch.channels_last)
    cpu = make_loader(records, contract, batch_size=8, loader="dali", device="cpu")
    gpu_x = torch.cat([b.x for b in batches]).cpu()
    cpu_x = torch.cat([b.x for b in cpu])
    assert float((gpu_x - cpu_x).abs().mean()) < 0.01  # nvJPEG vs libjpeg-turbo
