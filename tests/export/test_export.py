"""Export on the CPU: every file matches the eager model on real images at batch sizes it was
not traced with, carries the run's contract inside and beside it, and refuses to load when
file, sidecar and contract disagree. GPU-only paths say exactly what is missing."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.export import (
    EXPORT_PRECISIONS,
    FORMATS,
    TOLERANCES,
    ExportError,
    export_run,
    exporter,
    load_exported,
    sidecar_path,
)
from cxr_fast.export.notes import AO_QUANTIZATION_NOTE, TORCHSCRIPT_NOTE
from cxr_fast.export.verify import (
    describe_data_images,
    evenly_spaced,
    select_images,
    select_run_images,
)
from cxr_fast.run_folder import load_run, read_json, sha256


def _real_batch(folder, contract, n, offset=0):
    """``n`` images from ``folder`` preprocessed by the contract, as scoring will load them."""
    records = discover(folder)[offset : offset + n]
    (batch,) = make_scoring_loader(LoaderSpec(records, contract, n, workers=0), "torch")
    return batch.x


def _eager_probs(run_dir, x):
    model, _ = load_run(run_dir)
    with torch.no_grad():
        return torch.sigmoid(model(x)).reshape(-1)


def _probs(fn, x):
    return torch.sigmoid(fn(x)).reshape(-1)


def sidecar_contract(sidecar):
    return PreprocessContract.from_dict(sidecar["contract"])


@pytest.fixture(scope="module")
def ts_export(tiny_run):
    # device="cpu": the same path on every host (test_export_gpu.py covers CUDA).
    return export_run(tiny_run, "torchscript", batch_size=32, device="cpu")


@pytest.fixture(scope="module")
def pt2_export(tiny_run, kaggle_dir):
    # --data: real Kaggle X-rays instead of the run's (synthetic) training folder.
    return export_run(tiny_run, "pt2", batch_size=32, data=kaggle_dir, device="cpu")


@pytest.fixture(scope="module")
def int8_export(tiny_run, synth_small):
    return export_run(tiny_run, "torchscript", precision="int8", data=synth_small)


def test_public_names():
    assert FORMATS == ("torchscript", "pt2", "tensorrt", "onnx")
    assert EXPORT_PRECISIONS == ("fp32", "fp16", "int8")
    assert TOLERANCES["fp32"] == 1e-4 and TOLERANCES["fp16"] == 1e-2
    assert TOLERANCES["fp32"] < TOLERANCES["fp16"] < TOLERANCES["int8"] <= 0.1


@pytest.mark.parametrize("n", [5, 17])
def test_torchscript_matches_eager_at_other_batch_sizes(tiny_run, synth_small, ts_export, n):
    assert ts_export.path == tiny_run / "export" / "model.ts"
    assert ts_export.sidecar == tiny_run / "export" / "model.ts.json"
    assert ts_export.format == "torchscript" and ts_export.precision == "fp32"
    assert 0 <= ts_export.max_abs_diff <= ts_export.tolerance == 1e-4
    model, sidecar = load_exported(ts_export.path)
    x = _real_batch(synth_small, sidecar_contract(sidecar), n, offset=3)
    got = _probs(model, x)
    assert got.shape == (n,) and got.dtype == torch.float32
    assert (got - _eager_probs(tiny_run, x)).abs().max() <= 1e-4
    # contiguous input works as well as channels_last
    assert (_probs(model, x.contiguous()) - got).abs().max() <= 1e-6


def test_contract_travels_inside_and_beside_torchscript(tiny_run, ts_export):
    _, info = load_run(tiny_run)
    extra = {"contract.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(ts_export.path), _extra_files=extra)
    inside = json.loads(extra["contract.json"])
    beside = read_json(ts_export.sidecar)
    assert inside == beside["contract"] == info.contract.to_dict()
    assert beside["source_sha256"] == sha256(tiny_run / "model.pt")
    assert beside["file_sha256"] == sha256(ts_export.path)
    assert beside["threshold"] == info.threshold
    assert beside["arch"] == "cnn"
    assert (beside["format"], beside["precision"], beside["batch_size"]) == (
        "torchscript",
        "fp32",
        32,
    )
    assert beside["max_abs_diff"] == ts_export.max_abs_diff
    assert beside["tolerance"] == 1e-4
    assert beside["torch"] == torch.__version__ and beside["cxr_fast"]
    assert beside["created"]
    assert beside["verification"]["batch_sizes"] == [32, 17]


def test_known_torch_warnings_become_notes(tiny_run, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ts = export_run(tiny_run, "torchscript", batch_size=4, out=tmp_path / "m.ts", device="cpu")
        load_exported(ts.path)
        pt2 = export_run(tiny_run, "pt2", batch_size=4, out=tmp_path / "m.pt2", device="cpu")
        load_exported(pt2.path)
    assert [str(w.message) for w in caught] == []
    assert ts.notes == [TORCHSCRIPT_NOTE]
    assert pt2.notes == []
    assert ts.sidecar == tmp_path / "m.ts.json"


@pytest.mark.parametrize("n", [1, 5, 17, 40])
def test_pt2_has_a_dynamic_batch(tiny_run, kaggle_dir, pt2_export, n):
    assert pt2_export.path == tiny_run / "export" / "model.pt2"
    assert pt2_export.max_abs_diff <= 1e-4
    model, sidecar = load_exported(pt2_export.path)
    assert sidecar["input"]["batch_min"] == 1 and sidecar["input"]["batch_max"] >= 40
    assert sidecar["verification"]["data"] == str(kaggle_dir)
    x = _real_batch(kaggle_dir, sidecar_contract(sidecar), n)
    assert (_probs(model, x) - _eager_probs(tiny_run, x)).abs().max() <= 1e-4


def test_pt2_loads_in_plain_pytorch(tiny_run, kaggle_dir, pt2_export):
    """What docs/export.md shows: no cxr-fast needed to run the file."""
    extra = {"contract.json": ""}
    module = torch.export.load(str(pt2_export.path), extra_files=extra).module()
    assert json.loads(extra["contract.json"]) == read_json(pt2_export.sidecar)["contract"]
    x = _real_batch(kaggle_dir, sidecar_contract(read_json(pt2_export.sidecar)), 3)
    with torch.no_grad():
        got = torch.sigmoid(module(x)).reshape(-1)
    assert (got - _eager_probs(tiny_run, x)).abs().max() <= 1e-4


def test_int8_on_cpu_reports_its_accuracy_change(tiny_run, synth_small, int8_export):
    assert int8_export.path == tiny_run / "export" / "model.int8.ts"
    assert int8_export.precision == "int8"
    assert int8_export.tolerance == TOLERANCES["int8"]
    assert int8_export.max_abs_diff <= int8_export.tolerance
    note = int8_export.notes[0]
    # --data is the run's own training data: its images are not called held-out.
    assert note.startswith("int8: ROC-AUC ") and "held-out" not in note
    assert "images outside the calibration set from --data (" in note
    assert "from patients the run trained on)" in note and "calibrated on 80 others" in note
    assert AO_QUANTIZATION_NOTE in int8_export.notes
    model, sidecar = load_exported(int8_export.path)
    report = sidecar["int8"]
    assert report["calibration_images"] == report["heldout_images"] == 80  # half of 160 each
    assert report["measured_on"] in note
    assert report["roc_auc_eager"] - report["roc_auc_int8"] <= 0.005
    x = _real_batch(synth_small, sidecar_contract(sidecar), 9, offset=1)
    diff = (_probs(model, x) - _eager_probs(tiny_run, x)).abs().max()
    assert 0 < diff <= TOLERANCES["int8"]  # quantized (not a copy of fp32), and close
    assert any("quantized" in str(node) for node in model.module.graph.nodes())


def test_int8_images_are_split_without_overlap(synth_small):
    records = discover(synth_small)
    chosen = select_images(records, "int8", 32)
    calibration = {r.path for r in chosen.calibration}
    heldout = {r.path for r in chosen.heldout}
    assert len(calibration) == len(heldout) == 80 and not calibration & heldout
    assert {r.path for r in chosen.verify} <= heldout and len(chosen.verify) == 32
    assert {r.label for r in chosen.verify} == {0, 1}  # spread over both class folders
    assert evenly_spaced(10, 3) == [0, 4, 9]
    assert evenly_spaced(3, 8) == [0, 1, 2]
    assert len(set(evenly_spaced(1000, 256))) == 256


def test_int8_images_are_called_held_out_only_when_no_member_trained_on_them(synth_small):
    """An ensemble keeps no validation records: its int8 check measures on training images
    outside the calibration set and says so; --data images are held out only without any
    training patient among them."""
    records = [r for r in discover(synth_small) if r.split != "test"]
    ensemble = select_run_images(records, [], "int8", 32)
    assert not {r.path for r in ensemble.calibration} & {r.path for r in ensemble.heldout}
    assert ensemble.measured.startswith("training images") and "held-out" not in ensemble.measured
    check = exporter._Int8Check(80, 80, 0.99, 0.99, 0.01, films=ensemble.measured)
    assert "held-out" not in check.note() and "on 80 training images outside" in check.note()
    single = select_run_images(records[:100], records[100:], "int8", 32)
    assert single.measured.startswith("held-out validation images")
    assert "held-out" not in describe_data_images(None)
    overlap = {"training_patients": 3, "training_images": 5}
    assert "held-out" not in describe_data_images(overlap)
    assert "5 of them from patients the run trained on" in describe_data_images(overlap)
    clean = {"training_patients": 0, "training_images": 0}
    assert describe_data_images(clean).startswith("held-out images from --data")


def test_int8_rule_gates_on_roc_auc_then_tolerance():
    check = exporter._Int8Check(
        images=200, calibration_images=256, auc_eager=0.99, auc_int8=0.98, max_abs_diff=0.01
    )
    with pytest.raises(ExportError, match=r"loses 0\.0100 ROC-AUC on 200 images outside the c"):
        exporter._judge("torchscript", "int8", 0.01, 0.05, 32, check)
    small_drop = exporter._Int8Check(200, 256, 0.99, 0.987, 0.2)
    exporter._judge("torchscript", "int8", 0.2, 0.05, 32, small_drop)  # AUC rule decides
    one_class = exporter._Int8Check(200, 256, None, None, 0.2)
    with pytest.raises(ExportError, match=r"differs from eager by 0\.2 > tolerance 0\.05"):
        exporter._judge("torchscript", "int8", 0.2, 0.05, 32, one_class)
    with pytest.raises(ExportError, match="differs from eager by nan"):
        exporter._judge("pt2", "fp32", float("nan"), 1e-4, 32, None)


def test_failed_check_keeps_no_file(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(exporter, "_verify", lambda *args: 0.5)
    out = tmp_path / "bad.pt2"
    with pytest.raises(
        ExportError, match=r"^exported model differs from eager by 0\.5 > tolerance"
    ):
        export_run(tiny_run, "pt2", batch_size=4, out=out, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_without_cuda_says_so(tiny_run, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ExportError) as error:
        export_run(tiny_run, "tensorrt")
    assert str(error.value) == "TensorRT export needs a CUDA GPU; none is visible"
    assert not list((tiny_run / "export").glob("*.trt.pt2*"))


def test_tensorrt_without_the_package_says_so(tiny_run, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # import raises ImportError
    with pytest.raises(ExportError) as error:
        export_run(tiny_run, "tensorrt")
    assert str(error.value) == "Torch-TensorRT is not installed: pip install 'cxr-fast[trt]'"


def test_tensorrt_calls_follow_the_documented_api(monkeypatch, tmp_path):
    """Stand-ins with the documented signatures (see cxr_fast/export/tensorrt.py) record how
    the real compile/save would be called; the real ones run in test_export_gpu.py."""
    calls = {}

    class Input:
        def __init__(self, *, min_shape, opt_shape, max_shape, dtype):
            calls["input"] = (min_shape, opt_shape, max_shape, dtype)

    def compile(module, ir="default", inputs=None, arg_inputs=None, **kwargs):
        calls["compile"] = dict(module=module, ir=ir, arg_inputs=arg_inputs, **kwargs)
        return "compiled"

    def save(module, file_path="", *, output_format, arg_inputs, dynamic_shapes, extra_files):
        calls["save"] = dict(module=module, path=file_path, output_format=output_format)
        calls["save"].update(example=arg_inputs[0], dynamic_shapes=dynamic_shapes)
        calls["save"].update(extra_files=extra_files)

    current = []  # the torch.cuda.device each call ran under

    @contextlib.contextmanager
    def cuda_device(device):
        current.append(device)
        yield
        current.pop()

    def within(call):
        def wrapped(*args, **kwargs):
            calls[f"{call.__name__}_device"] = current[-1] if current else None
            return call(*args, **kwargs)

        return wrapped

    fake = types.SimpleNamespace(Input=Input, compile=within(compile), save=within(save))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", cuda_device)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    from cxr_fast.export.tensorrt import save_tensorrt
    from cxr_fast.export.wrappers import HalfPrecision

    module = HalfPrecision(torch.nn.Conv2d(1, 1, 3))
    example = torch.zeros(4, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    contract = {"image_size": 64}
    path = tmp_path / "m.trt.pt2"
    gpu = torch.device("cuda", 1)
    save_tensorrt(
        module, example, path, contract, fp16=True, opt_batch=64, max_batch=256, device=gpu
    )
    assert calls["input"] == ((1, 1, 64, 64), (64, 1, 64, 64), (256, 1, 64, 64), torch.float32)
    # --device cuda:1: traced, compiled and saved with GPU 1 current and named.
    assert calls["compile"]["device"] == gpu
    assert calls["compile_device"] == gpu and calls["save_device"] == gpu
    assert calls["compile"]["ir"] == "dynamo" and calls["compile"]["module"] is module
    assert "enabled_precisions" not in calls["compile"]  # deprecated: dtypes come from the model
    assert calls["compile"]["disable_tf32"] is False
    assert calls["save"]["output_format"] == "exported_program"
    assert calls["save"]["path"] == str(path) and calls["save"]["module"] == "compiled"
    assert calls["save"]["example"].is_contiguous()
    (dims,) = calls["save"]["dynamic_shapes"]
    assert (dims[0].min, dims[0].max) == (1, 256)
    assert json.loads(calls["save"]["extra_files"]["contract.json"]) == contract


def test_fp16_needs_cuda(tiny_run, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ExportError, match="fp16 export needs a CUDA GPU; none is visible"):
        export_run(tiny_run, "torchscript", precision="fp16")
    with pytest.raises(ExportError, match="--device cpu"):
        export_run(tiny_run, "pt2", precision="fp16", device="cpu")


@pytest.mark.parametrize(
    ("fmt", "precision", "message"),
    [
        ("keras", "fp32", "unknown export format 'keras'"),
        ("pt2", "bf16", "unknown precision 'bf16'"),
        ("pt2", "int8", "int8 export writes TorchScript .* or ONNX"),
        ("tensorrt", "int8", "int8 export writes TorchScript .* or ONNX"),
        ("onnx", "fp16", "ONNX export is fp32 or int8"),
    ],
)
def test_bad_combinations(tiny_run, fmt, precision, message):
    with pytest.raises(ExportError, match=message):
        export_run(tiny_run, fmt, precision=precision)


def test_missing_training_data_asks_for_data(tiny_run, tmp_path):
    run = tmp_path / "moved-run"
    run.mkdir()
    shutil.copy(tiny_run / "model.pt", run / "model.pt")
    config = read_json(tiny_run / "config.json")
    config["data"]["root"] = str(tmp_path / "gone")
    config["train"]["data"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"training data \S+gone is gone: pass --data DIR"):
        export_run(run, "torchscript")
    with pytest.raises(ExportError, match="not a trained run"):
        export_run(tmp_path / "nothing", "torchscript")


def test_unreadable_check_image_is_a_clear_error(tiny_run, kaggle_dir, tmp_path):
    data = tmp_path / "train" / "NORMAL"
    data.mkdir(parents=True)
    for source in sorted((kaggle_dir / "train" / "NORMAL").iterdir())[:3]:
        shutil.copy(source, data / source.name)
    (data / "IM-9999-0001.jpeg").write_bytes(b"not a jpeg")
    out = tmp_path / "m.ts"
    with pytest.raises(ExportError, match=r"cannot read an image .*IM-9999-0001\.jpeg"):
        export_run(tiny_run, "torchscript", data=tmp_path, out=out, device="cpu")
    assert not out.exists()


def test_tampered_contract_is_refused(ts_export, tmp_path):
    path = tmp_path / "model.ts"
    sidecar = read_json(ts_export.sidecar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(ts_export.path))
        other = {**sidecar["contract"], "image_size": 128}
        torch.jit.save(module, str(path), _extra_files={"contract.json": json.dumps(other)})
    # A consistent sidecar for the new file, so only the contract inside differs.
    (tmp_path / "model.ts.json").write_text(json.dumps({**sidecar, "file_sha256": sha256(path)}))
    with pytest.raises(ExportError, match="contract inside the file differs from its sidecar"):
        load_exported(path)


def test_changed_or_unknown_files_are_refused(ts_export, tmp_path):
    path = tmp_path / "model.ts"
    shutil.copy(ts_export.path, path)
    with pytest.raises(ExportError, match=r"has no sidecar model\.ts\.json"):
        load_exported(path)
    sidecar = read_json(ts_export.sidecar)
    sidecar_path(path).write_text(json.dumps(sidecar))
    load_exported(path)  # a copy with its sidecar loads
    with path.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ExportError, match="not the file its sidecar describes"):
        load_exported(path)
    sidecar_path(path).write_text(json.dumps({**sidecar, "format": "keras"}))
    with pytest.raises(ExportError, match="unknown export format 'keras'"):
        load_exported(path)


def test_loaded_model_checks_input_shape(ts_export):
    model, _ = load_exported(ts_export.path)
    with pytest.raises(ValueError, match=r"expected input \[N, 1, 64, 64\]"):
        model(torch.zeros(2, 1, 32, 32))


def test_files_refuse_a_device_they_cannot_run_on(int8_export, ts_export, tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="int8 export runs on the CPU"):
        export_run(int8_export.path.parent.parent, "torchscript", precision="int8", device="cuda")
    # Sidecars claiming a GPU-only precision or format, on a copy of a real file.
    path = tmp_path / "model.ts"
    shutil.copy(ts_export.path, path)
    sidecar = read_json(ts_export.sidecar)
    for claim, message in [
        ({"precision": "fp16"}, "fp16 export runs on CUDA only"),
        ({"format": "tensorrt"}, "TensorRT export runs on CUDA only"),
    ]:
        sidecar_path(path).write_text(json.dumps({**sidecar, **claim}))
        with pytest.raises(ExportError, match=message):
            load_exported(path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # let 'cuda' resolve
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)
    with pytest.raises(ExportError, match=r"Torch-TensorRT is not installed: pip install"):
        load_exported(path, device="cuda")
    with pytest.raises(ExportError, match="int8 export runs on the CPU only"):
        load_exported(int8_export.path, device="cuda")


def test_probabilities_are_deterministic_across_loads(pt2_export, kaggle_dir):
    a, sidecar = load_exported(pt2_export.path)
    b, _ = load_exported(pt2_export.path)
    x = _real_batch(kaggle_dir, sidecar_contract(sidecar), 4)
    assert np.array_equal(a(x).numpy(), b(x).numpy())


def test_int8_names_an_architecture_fx_cannot_trace():
    from cxr_fast.export.int8 import quantize_int8

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else -self.conv(x)  # data-dependent branch

    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(ExportError, match=r"int8: torch\.fx cannot trace the branchy architecture"):
        quantize_int8(Branchy(), x, [x], "branchy")


def test_an_edited_threshold_or_contract_in_the_sidecar_is_refused(ts_export, tmp_path):
    path = tmp_path / "model.ts"
    shutil.copy(ts_export.path, path)
    sidecar = read_json(ts_export.sidecar)
    assert sidecar["meaning_sha256"]
    for edit in ({"threshold": 0.99}, {"arch": "resnet18"}):
        sidecar_path(path).write_text(json.dumps({**sidecar, **edit}))
        with pytest.raises(ExportError, match=r"was edited.*calibrate"):
            load_exported(path)
    old = {k: v for k, v in sidecar.items() if k != "meaning_sha256"}
    sidecar_path(path).write_text(json.dumps(old))
    with pytest.raises(ExportError, match="re-export"):
        load_exported(path)


def test_int8_resnet_traces_without_a_generalisation_warning():
    """FX hands the residual add's calibrated scale to quantized.add_relu as a 0-d tensor;
    tracing that warned "the trace might not generalize to other inputs". Stored as numbers,
    they trace as the constants they are: no note, and the traced model computes the same."""
    from cxr_fast.export.int8 import quantize_int8
    from cxr_fast.export.notes import warnings_to_notes
    from cxr_fast.models import build_model

    torch.manual_seed(0)
    x = torch.rand(4, 1, 64, 64)
    notes: list[str] = []
    with warnings_to_notes(notes), torch.no_grad():
        quantized = quantize_int8(build_model("resnet18").eval(), x, [x], "resnet18")
        traced = torch.jit.trace(quantized, x, check_trace=False)
        other = torch.rand(3, 1, 64, 64)
        assert torch.equal(traced(other), quantized(other))
    assert not [note for note in notes if note.startswith("trace:")]


def test_an_ensembles_int8_check_does_not_call_its_training_films_held_out(
    tiny_ensemble, monkeypatch, tmp_path
):
    """Every film of an ensemble trained some member: the note and the sidecar say the int8
    change was measured on training images outside the calibration set."""
    # A 1-epoch ensemble ranks near-ties: the wording, not the AUC gate, is under test here.
    monkeypatch.setattr(exporter, "_judge", lambda *args: None)
    out = tmp_path / "ens.int8.ts"
    result = export_run(tiny_ensemble, "torchscript", precision="int8", device="cpu", out=out)
    note = result.notes[0]
    assert note.startswith("int8: ") and "held-out" not in note
    assert "training images outside the calibration set" in note
    _, sidecar = load_exported(result.path)
    assert sidecar["int8"]["measured_on"].startswith("training images")
    assert "no validation records" in sidecar["verification"]["source"]
