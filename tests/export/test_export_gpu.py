"""CUDA-only exports: fp16 (TorchScript, pt2), CUDA-built fp32 files loaded on the CPU, and
TensorRT, checked like the CPU ones."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import discover
from cxr_fast.data.loaders import make_loader
from cxr_fast.export import TOLERANCES, export_run, load_exported
from cxr_fast.export.verify import ieee_fp32
from cxr_fast.run_folder import load_run

pytestmark = pytest.mark.gpu

needs_trt = pytest.mark.skipif(
    importlib.util.find_spec("torch_tensorrt") is None, reason="needs torch_tensorrt"
)


def _check(result, run_dir, data, device="cuda", sizes=(5, 17)):
    model, sidecar = load_exported(result.path, device=device)
    eager, _ = load_run(run_dir, device)
    contract = PreprocessContract.from_dict(sidecar["contract"])
    records = discover(data)
    for n in sizes:
        (batch,) = make_loader(records[:n], contract, batch_size=n, loader="torch", workers=0)
        x = batch.x.to(device)
        with torch.no_grad(), ieee_fp32():  # eager fp32 without TF32 rounding
            want = torch.sigmoid(eager(x)).reshape(-1)
            got = torch.sigmoid(model(x)).reshape(-1)
        assert got.dtype == torch.float32
        assert (got - want).abs().max() <= result.tolerance


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_fp16_on_cuda(tiny_run, synth_small, fmt, tmp_path):
    result = export_run(tiny_run, fmt, precision="fp16", device="cuda", out=tmp_path / f"m.{fmt}")
    assert result.precision == "fp16" and result.tolerance == TOLERANCES["fp16"]
    assert result.max_abs_diff <= result.tolerance
    _check(result, tiny_run, synth_small)


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_fp32_built_on_cuda_loads_on_cpu(tiny_run, synth_small, fmt, tmp_path):
    result = export_run(tiny_run, fmt, device="auto", out=tmp_path / f"m.{fmt}")
    assert result.max_abs_diff <= 1e-4
    _check(result, tiny_run, synth_small, device="cpu")


@needs_trt
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt(tiny_run, synth_small, precision):
    result = export_run(tiny_run, "tensorrt", precision=precision)
    suffix = ".fp16.trt.pt2" if precision == "fp16" else ".trt.pt2"
    assert result.path.name == "model" + suffix
    assert result.max_abs_diff <= result.tolerance == TOLERANCES[precision]
    _check(result, tiny_run, synth_small, sizes=(1, 5, 17))


@needs_trt
def test_tensorrt_defaults_to_fp16(tiny_run, tmp_path):
    result = export_run(tiny_run, "tensorrt", out=tmp_path / "m.trt.pt2")
    assert result.precision == "fp16"
