"""ONNX export (the dynamo exporter) and the ONNX Runtime backend, on a tiny trained run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import discover
from cxr_fast.export import ExportError, export_run, load_exported
from cxr_fast.export import onnx as onnx_format
from cxr_fast.export.verify import load_images, probabilities
from cxr_fast.run_folder import load_run
from cxr_fast.scoring.score import ScoreConfig, run_score

pytest.importorskip("onnxruntime", reason="the onnx extra (make test installs it)")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def onnx_fp32(tiny_run, synth_small):
    return export_run(tiny_run, "onnx", data=synth_small)


@pytest.fixture(scope="module")
def onnx_int8(tiny_run, synth_small):
    return export_run(tiny_run, "onnx", precision="int8", data=synth_small)


@pytest.mark.parametrize("n", [1, 5, 40])
def test_onnx_fp32_matches_eager_within_1e4(tiny_run, kaggle_dir, onnx_fp32, n):
    eager, info = load_run(tiny_run)
    x, _ = load_images(discover(kaggle_dir)[:n], info.contract)
    model, sidecar = load_exported(onnx_fp32.path)
    assert sidecar["format"] == "onnx" and sidecar["precision"] == "fp32"
    diff = (probabilities(eager, x, CPU) - probabilities(model, x, CPU)).abs().max()
    assert float(diff) <= 1e-4
    assert onnx_fp32.max_abs_diff <= 1e-4


def test_contract_travels_in_metadata_props(tiny_run, onnx_fp32):
    import onnx

    proto = onnx.load(str(onnx_fp32.path))
    props = {p.key: p.value for p in proto.metadata_props}
    _, info = load_run(tiny_run)
    assert json.loads(props["contract.json"]) == info.contract.to_dict()
    # A dynamic batch: the input's first dimension is symbolic, not a number.
    first = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert first.dim_param and not first.dim_value


def test_onnx_int8_keeps_roc_auc(onnx_int8):
    sidecar = json.loads(onnx_int8.sidecar.read_text())
    report = sidecar["int8"]
    assert report["roc_auc_eager"] - report["roc_auc_int8"] <= 0.005
    assert onnx_int8.notes[0].startswith("int8: ROC-AUC ")
    assert "speedup_vs_eager" in sidecar["speed"]


def test_score_runs_an_onnx_file(onnx_fp32, kaggle_dir, tmp_path):
    out = tmp_path / "p.parquet"
    summary = run_score(
        ScoreConfig(archive=kaggle_dir, model=onnx_fp32.path, out=out, device="cpu", workers=0)
    )
    assert summary.backend == "onnx-fp32" and summary.errors == 0
    meta = pq.read_schema(out).metadata
    assert json.loads(meta[b"cxr_fast_backend"]) == "onnx-fp32"
    probs = pq.read_table(out)["prob_pneumonia"].to_numpy()
    assert np.all((probs >= 0) & (probs <= 1))


def test_missing_extra_is_one_line(tiny_run, monkeypatch):
    monkeypatch.setattr(onnx_format, "onnx_missing", lambda runtime_only=False: "onnxscript")
    with pytest.raises(ExportError, match=r"needs onnxscript.*pip install 'cxr-fast\[onnx\]'"):
        export_run(tiny_run, "onnx")


def test_io_binding_gives_the_sessions_own_logits(onnx_fp32, kaggle_dir):
    # The CUDA path's call, run here on the CPU provider: same binding, same output layout.
    model, sidecar = load_exported(onnx_fp32.path)
    module = model.module  # the OnnxModule inside the ExportedModel
    x, _ = load_images(discover(kaggle_dir)[:5], PreprocessContract.from_dict(sidecar["contract"]))
    bound = onnx_format.run_bound(module.session(), x)
    assert bound.shape == (5, 1) and torch.equal(bound, module(x))


def test_a_cuda_session_is_given_its_gpu(onnx_fp32, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    module = onnx_format.OnnxModule(onnx_fp32.path, torch.device("cuda", 1))
    assert module.providers[0] == ("CUDAExecutionProvider", {"device_id": 1})
