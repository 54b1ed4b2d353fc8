"""ieee_fp32(): TF32 off for conv, RNN and matmul, consistently for every reader of the flags."""

import pytest
import torch

from cxr_fast.export.torchscript import load_torchscript, save_torchscript
from cxr_fast.fp32 import ieee_fp32


def _flags() -> tuple:
    cudnn = torch.backends.cudnn
    return (
        cudnn.conv.fp32_precision,
        cudnn.rnn.fp32_precision,
        torch.backends.cuda.matmul.fp32_precision,
        torch._C._get_cudnn_allow_tf32(),
    )


def test_inside_every_flag_is_ieee_and_the_legacy_readers_work():
    before = _flags()
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()).eval()
    with ieee_fp32():
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cudnn.rnn.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        # Both read the legacy flag, which raises when conv and rnn disagree with it.
        assert torch.backends.cudnn.allow_tf32 is False
        torch.export.export(model, (torch.rand(2, 1, 8, 8),))
    assert _flags() == before


def test_flags_are_restored_after_an_error():
    before = _flags()
    with pytest.raises(RuntimeError, match="boom"), ieee_fp32():
        raise RuntimeError("boom")
    assert _flags() == before


def _tf32_flags(module: torch.jit.ScriptModule) -> list[bool]:
    """The allow_tf32 argument (the last) of every aten::_convolution in the graph."""
    nodes = [n for n in module.inlined_graph.nodes() if n.kind() == "aten::_convolution"]
    return [list(n.inputs())[-1].toIValue() for n in nodes]


def test_torchscript_export_records_ieee_convolutions(tmp_path):
    """The trace bakes the TF32 flag into every convolution: it must say False, or the file
    runs TF32 on Ampere and later while eager fp32 (under ieee_fp32) does not."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    example = torch.rand(2, 1, 16, 16)
    traced_plain = torch.jit.trace(model, example, check_trace=False)
    assert _tf32_flags(traced_plain) == [True]  # what tracing does by default
    save_torchscript(model, example, tmp_path / "m.ts", {"image_size": 16})
    loaded, _ = load_torchscript(tmp_path / "m.ts", torch.device("cpu"))
    assert _tf32_flags(loaded) == [False]


def test_nested_and_overlapping_blocks_restore_the_flags_once_the_last_leaves():
    import threading

    before = _flags()
    inside, leave = threading.Event(), threading.Event()

    def other_thread():
        with ieee_fp32():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other_thread)
    with ieee_fp32():
        thread.start()
        inside.wait(10)
        with ieee_fp32():
            pass
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"  # still inside the outer
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"  # the other thread still is
    leave.set()
    thread.join(10)
    assert _flags() == before


@pytest.mark.parametrize(
    ("fmt", "precision", "ieee"), [("pt2", "fp32", True), ("pt2", "fp16", False)]
)
def test_a_pt2_fp32_export_scores_under_the_precision_it_was_verified_with(
    monkeypatch, fmt, precision, ieee
):
    from cxr_fast.export import loading

    seen = []

    def forward(x):
        seen.append(torch.backends.cudnn.conv.fp32_precision == "ieee")
        return x.flatten(1).mean(1, keepdim=True)

    contract = {"image_size": 8}
    monkeypatch.setattr(loading, "load_pt2", lambda path, device: (forward, contract))
    monkeypatch.setattr(loading, "check_device", lambda *args: None)
    model = loading.open_artifact("x.pt2", fmt, precision, contract, torch.device("cpu"))
    model(torch.rand(2, 1, 8, 8))
    assert seen == [ieee]
