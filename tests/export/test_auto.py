"""``auto_export``: which file ``export --format auto`` builds on a CPU host, and why."""

import pytest
import torch

from cxr_fast.export import auto
from cxr_fast.export.auto import FX_INT8_FASTER, auto_export
from cxr_fast.export.int8 import QUANTIZED_ENGINE

pytestmark = pytest.mark.skipif(
    QUANTIZED_ENGINE not in torch.backends.quantized.supported_engines,
    reason="no x86 int8 kernels in this PyTorch",
)


def test_measured_fx_architectures_get_torchscript_int8():
    for arch in FX_INT8_FASTER:
        fmt, precision, why = auto_export(arch, torch.device("cpu"))
        assert (fmt, precision) == ("torchscript", "int8")
        assert arch in why


def test_other_architectures_get_onnx_runtime_int8_without_claiming_a_measurement(monkeypatch):
    monkeypatch.setattr(auto, "onnx_missing", lambda: None)
    fmt, precision, why = auto_export("resnet50", torch.device("cpu"))
    assert (fmt, precision) == ("onnx", "int8")
    assert "faster only for cnn, resnet18" in why


def test_without_onnx_runtime_falls_back_to_fx_and_says_how_to_install(monkeypatch):
    monkeypatch.setattr(auto, "onnx_missing", lambda: "onnxruntime")
    fmt, precision, why = auto_export("resnet50", torch.device("cpu"))
    assert (fmt, precision) == ("torchscript", "int8")
    assert "pip install 'cxr-fast[onnx]'" in why and "onnxruntime missing" in why
