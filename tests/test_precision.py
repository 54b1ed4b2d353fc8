import pytest
import torch
from torch import nn

from cxr_fast.data.batch import Batch
from cxr_fast.models import build_model
from cxr_fast.precision import cpu_has_native_bf16, resolve_precision
from cxr_fast.training.loop import train_step

CPU = torch.device("cpu")


def test_auto_on_cpu_is_bf16_only_with_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_precision("auto", CPU).name == "amp-bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not cpu_has_native_bf16()
    assert resolve_precision("auto", CPU).name == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_precision("auto", CPU).name == "amp-bf16"


def test_fp16_needs_cuda_and_names_are_checked():
    assert resolve_precision("amp-bf16", CPU).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("amp-fp16", CPU)
    with pytest.raises(ValueError):
        resolve_precision("fp8", CPU)
    assert not resolve_precision("fp32", CPU).scaler().is_enabled()


def _batch(device: torch.device) -> Batch:
    x = torch.rand(4, 1, 64, 64, device=device).contiguous(memory_format=torch.channels_last)
    return Batch(x=x, y=torch.tensor([0, 1, 0, 1], device=device), index=torch.arange(4))


def _one_step(precision_name: str, device: torch.device) -> tuple[int, float]:
    torch.manual_seed(0)
    model = build_model("cnn").to(device=device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    precision = resolve_precision(precision_name, device)
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_step(
        model,
        _batch(device),
        nn.BCEWithLogitsLoss(),
        optimizer,
        precision.scaler(),
        precision,
        clip_grad=1.0,
    )
    changed = sum(
        not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True)
    )
    assert changed > 0
    return len(steps), loss


@pytest.mark.parametrize("name", ["fp32", "amp-bf16"])
def test_train_step_makes_exactly_one_optimizer_step_on_cpu(name):
    steps, loss = _one_step(name, CPU)
    assert steps == 1 and loss > 0


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fp32", "amp-bf16", "amp-fp16"])
def test_train_step_on_cuda(name):
    device = torch.device("cuda")
    if name == "amp-bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    steps, loss = _one_step(name, device)
    assert steps == 1 and loss == loss  # one step, finite loss
    assert resolve_precision(name, device).scaler().is_enabled() == (name == "amp-fp16")


@pytest.mark.gpu
def test_auto_precision_on_cuda_is_amp_and_channels_last_survives():
    device = torch.device("cuda")
    precision = resolve_precision("auto", device)
    assert precision.name in ("amp-bf16", "amp-fp16")
    model = build_model("resnet18").to(device=device, memory_format=torch.channels_last)
    x = _batch(device).x
    with precision.autocast():
        features = model.conv1(x)
    assert features.dtype == precision.dtype
    assert features.is_contiguous(memory_format=torch.channels_last)


def test_inference_follows_the_training_policy(monkeypatch):
    from cxr_fast.precision import inference_precision

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert inference_precision(CPU).name == "amp-bf16"
    assert inference_precision(CPU, "fp32").name == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert inference_precision(CPU).name == "fp32"


def test_image_convolutions_stay_fp32_under_bf16():
    """The stem sees the image in fp32; the rest of the network computes in bf16."""
    model = build_model("cnn").eval()
    seen = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(
                lambda m, args, out, name=name: seen.__setitem__(name, (args[0].dtype, out.dtype))
            )
    x = torch.rand(2, 1, 64, 64)
    with torch.inference_mode(), resolve_precision("amp-bf16", CPU).autocast(model):
        model(x)
    stem, *rest = seen
    assert seen[stem] == (torch.float32, torch.float32)
    assert all(seen[name][1] == torch.bfloat16 for name in rest)
    with torch.inference_mode(), resolve_precision("amp-bf16", CPU).autocast():
        model(x)  # without the model (training): autocast everywhere, hooks gone
    assert seen[stem][1] == torch.bfloat16


def test_bf16_scores_stay_close_to_fp32_on_real_films(trained_run, kaggle_dir, tmp_path):
    """Real X-rays (tests/data): bf16 probabilities within 0.01 of fp32, precision recorded."""
    import json

    import numpy as np
    import pyarrow.parquet as pq

    from cxr_fast.scoring.score import ScoreConfig, run_score

    probs = {}
    for name in ("fp32", "amp-bf16"):
        out = tmp_path / f"{name}.parquet"
        config = ScoreConfig(
            archive=kaggle_dir, model=trained_run, out=out, device="cpu", workers=0
        )
        run_score(config.__class__(**{**vars(config), "precision": name}))
        table = pq.read_table(out)
        assert json.loads(table.schema.metadata[b"cxr_fast_precision"]) == name
        probs[name] = table["prob_pneumonia"].to_numpy()
    assert len(probs["fp32"]) >= 30
    assert np.abs(probs["fp32"] - probs["amp-bf16"]).max() <= 0.01
