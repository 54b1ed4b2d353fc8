"""A run resumed where ``precision: auto`` resolves otherwise (issue 28): started in bf16 (an
H100, a bf16 CPU) or fp32, resumed on a T4 where auto means fp16 with a GradScaler."""

from types import SimpleNamespace

import torch

from cxr_fast.models import build_model
from cxr_fast.precision import Precision
from cxr_fast.training.one_model import _resume_or_start
from cxr_fast.training.state import TrainingState
from cxr_fast.training.writer import RunWriter


def _state(precision: Precision) -> TrainingState:
    torch.manual_seed(0)
    model = build_model("cnn", False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return TrainingState(model, optimizer, scheduler, precision.scaler(), precision=precision.name)


def test_a_bf16_run_resumes_in_fp16_with_a_fresh_scaler_and_one_line(tmp_path):
    bf16 = _state(Precision("amp-bf16", "cpu"))
    bf16.progress.record(1, 0.8)
    bf16.save(tmp_path)
    # fp16's GradScaler on a host with no GPU: the CPU scaler has the same state dict.
    fp16 = _state(Precision("amp-fp16", "cpu"))
    assert fp16.scaler.is_enabled() and not bf16.scaler.state_dict()
    lines = []
    plan = SimpleNamespace(precision=Precision("amp-fp16", "cpu"))
    _resume_or_start(fp16, plan, RunWriter(tmp_path, enabled=True), True, lines.append)
    assert lines[0] == "resuming in amp-fp16: the run was trained in amp-bf16 until now"
    assert fp16.progress.epoch == 1 and fp16.scaler.get_scale() == 2.0**16
    for key, value in bf16.model.state_dict().items():
        assert torch.equal(fp16.model.state_dict()[key], value)


def test_an_fp16_run_resumes_in_bf16_and_keeps_quiet_when_nothing_changed(tmp_path):
    fp16 = _state(Precision("amp-fp16", "cpu"))
    fp16.save(tmp_path)
    assert fp16.scaler.state_dict()  # a real scale, dropped by a disabled scaler
    bf16 = _state(Precision("amp-bf16", "cpu"))
    assert bf16.restore(tmp_path) == "amp-fp16"
    again = _state(Precision("amp-fp16", "cpu"))
    lines = []
    plan = SimpleNamespace(precision=Precision("amp-fp16", "cpu"))
    _resume_or_start(again, plan, RunWriter(tmp_path, enabled=True), True, lines.append)
    assert len(lines) == 1 and lines[0].startswith("resuming ")
