"""Labels reach the GPU without the host waiting for them (issue 28): a copy from pageable
memory is a host/GPU synchronisation on every training step."""

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import to_device_async
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.torch_loader import TorchLoader

CONTRACT = PreprocessContract(image_size=64)


def test_on_the_cpu_the_labels_are_the_tensor_itself():
    labels = torch.tensor([0, 1, -1])
    assert to_device_async(labels, torch.device("cpu")) is labels


@pytest.mark.gpu
def test_a_gpu_copy_of_labels_does_not_synchronise():
    labels = torch.tensor([0, 1, 1, 0])
    # the check below can fail: a pageable copy waits
    with pytest.raises(RuntimeError), _no_sync():
        labels.to("cuda")
    with _no_sync():
        on_gpu = to_device_async(labels, torch.device("cuda"))
    assert on_gpu.device.type == "cuda" and on_gpu.cpu().tolist() == [0, 1, 1, 0]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_training_batches_reach_the_gpu_without_a_sync_for_labels(kaggle_dir, backend):
    if backend == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI is not installed")
    records = discover(kaggle_dir)
    spec = LoaderSpec(records, CONTRACT, 8, workers=0 if backend == "torch" else 2, device="cuda")
    make = TorchLoader if backend == "torch" else DaliLoader
    batches = iter(make(spec, TrainMode(seed=1)))
    next(batches)  # start-up (pipeline build, first copies) may wait
    torch.cuda.synchronize()
    labels = [r.label for r in records]
    with _no_sync() if backend == "torch" else _labels_no_sync():
        batch = next(batches)
    assert batch.y.device.type == "cuda"
    assert batch.y.cpu().tolist() == [labels[i] for i in batch.index.tolist()]


class _no_sync:
    """torch raises on any synchronising CUDA call inside."""

    def __enter__(self):
        torch.cuda.set_sync_debug_mode("error")

    def __exit__(self, *exc):
        torch.cuda.set_sync_debug_mode("default")


class _labels_no_sync(_no_sync):
    """DALI's iterator itself waits for its pipeline: only the label copy is checked."""

    def __enter__(self):
        import cxr_fast.data.dali_pipeline as dp

        self._module, self._was = dp, dp.to_device_async

        def checked(tensor, device):
            torch.cuda.set_sync_debug_mode("error")
            try:
                return self._was(tensor, device)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        dp.to_device_async = checked

    def __exit__(self, *exc):
        self._module.to_device_async = self._was
