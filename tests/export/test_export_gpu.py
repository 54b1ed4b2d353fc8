"""CUDA-only exports: fp16 (TorchScript, pt2), CUDA-built fp32 files loaded on the CPU, and
TensorRT, checked like the CPU ones."""

from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq
import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.export import TOLERANCES, export_run, load_exported
from cxr_fast.fp32 import ieee_fp32
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
        (batch,) = make_scoring_loader(LoaderSpec(records[:n], contract, n, workers=0), "torch")
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


@needs_trt
def test_tensorrt_sidecar_records_the_gpu_and_scoring_uses_its_batches(
    tiny_run, synth_small, tmp_path
):
    """The engine is tuned for the CUDA scoring batch; a DALI scoring run ends on a partial
    batch (160 films, batch 48), and --batch-size 300 exceeds the engine's 256."""
    from cxr_fast.choices import SCORE_BATCH_SIZE
    from cxr_fast.scoring.score import ScoreConfig, run_score

    result = export_run(tiny_run, "tensorrt", out=tmp_path / "m.fp16.trt.pt2")
    sidecar = json.loads(result.sidecar.read_text())
    major, minor = torch.cuda.get_device_capability()
    assert sidecar["engine"]["compute_capability"] == f"{major}.{minor}"
    assert sidecar["engine"]["gpu"] == torch.cuda.get_device_name()
    assert sidecar["engine"]["tensorrt"]
    assert sidecar["batch_opt"] == SCORE_BATCH_SIZE["cuda"]
    assert sidecar["input"]["batch_max"] == 256
    probs = {}
    for name, model, batch in (
        ("eager", tiny_run, 48),
        ("partial", result.path, 48),
        ("above_max", result.path, 300),
    ):
        out = tmp_path / f"{name}.parquet"
        summary = run_score(
            ScoreConfig(
                archive=synth_small,
                model=model,
                out=out,
                loader="dali",
                device="cuda",
                batch_size=batch,
                workers=2,
            )
        )
        assert summary.errors == 0 and summary.rows == len(discover(synth_small))
        probs[name] = {r["path"]: r["prob_pneumonia"] for r in pq.read_table(out).to_pylist()}
    for name in ("partial", "above_max"):
        assert probs[name].keys() == probs["eager"].keys()
        diff = max(abs(probs[name][p] - probs["eager"][p]) for p in probs["eager"])
        assert diff <= 0.05  # fp16 engine vs bf16/fp16 eager autocast


@needs_trt
def test_tensorrt_on_the_second_gpu(tiny_run, synth_small, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    result = export_run(tiny_run, "tensorrt", device="cuda:1", out=tmp_path / "m.trt.pt2")
    model, _ = load_exported(result.path, device="cuda:1")
    records = discover(synth_small)
    contract = PreprocessContract.from_dict(json.loads(result.sidecar.read_text())["contract"])
    (batch,) = make_scoring_loader(LoaderSpec(records[:1], contract, 1, workers=0), "torch")
    assert torch.cuda.current_device() == 0  # the engine runs on GPU 1 without being current
    logits = model(batch.x)
    assert logits.device == torch.device("cuda", 1) and logits.shape == (1, 1)
