"""``export_run``: a trained run -> a TorchScript, pt2 or TensorRT file plus its JSON sidecar,
checked against the eager model on real images before it is put in place."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from cxr_fast.choices import EXPORT_BATCH_SIZE
from cxr_fast.data.discover import Record, discover, require_images
from cxr_fast.device import resolve_device
from cxr_fast.export.auto import auto_export
from cxr_fast.export.common import (
    DEFAULT_PRECISION,
    EXPORT_PRECISIONS,
    FORMATS,
    INT8_FORMATS,
    INT8_MAX_AUC_DROP,
    PT2_MAX_BATCH,
    TOLERANCES,
    TRT_MAX_BATCH,
    TRT_OPT_BATCH,
    ExportError,
    ExportResult,
    default_out_path,
    sidecar_path,
)
from cxr_fast.export.int8 import quantize_int8, require_int8_kernels
from cxr_fast.export.loading import ExportedModel, open_artifact
from cxr_fast.export.notes import warnings_to_notes
from cxr_fast.export.onnx import quantize_onnx_int8, require_onnx, save_onnx
from cxr_fast.export.pt2 import save_pt2
from cxr_fast.export.sidecar import export_fields, label_counts, write_sidecar
from cxr_fast.export.speed import measure_speedup
from cxr_fast.export.tensorrt import require_tensorrt, save_tensorrt
from cxr_fast.export.torchscript import save_torchscript
from cxr_fast.export.verify import (
    OUTSIDE_CALIBRATION,
    Selection,
    check_sizes,
    describe_data_images,
    iter_images,
    load_images,
    max_abs_diff,
    probabilities,
    roc_auc,
    select_images,
    select_run_images,
    traceable,
)
from cxr_fast.export.wrappers import HalfPrecision
from cxr_fast.leakage import leakage
from cxr_fast.outputs import writable_file
from cxr_fast.run_folder import MODEL_FILE, RunInfo, load_run, read_run, sha256

_CALIBRATION_BATCH = 32


def _check_options(fmt: str, precision: str | None, batch_size: int) -> str:
    """The precision to use; ExportError for an unknown or impossible combination."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    precision = DEFAULT_PRECISION[fmt] if precision is None else precision
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(
            f"unknown precision {precision!r}; choose one of {', '.join(EXPORT_PRECISIONS)}"
        )
    if batch_size < 1:
        raise ExportError(f"batch size must be at least 1, got {batch_size}")
    if precision == "int8" and fmt not in INT8_FORMATS:
        raise ExportError(
            f"int8 export writes TorchScript (CPU FX quantization) or ONNX (ONNX Runtime QDQ), "
            f"not {fmt}: use --format torchscript or --format onnx"
        )
    return precision


def _export_device(fmt: str, precision: str, device: str) -> torch.device:
    """Where to build the export; ExportError when the format or precision cannot run there."""
    if fmt == "tensorrt":
        if device == "cpu":
            raise ExportError("TensorRT export needs a CUDA GPU; --device cpu was given")
        require_tensorrt()  # before anything touches CUDA or the run: one clear line
        device = "cuda" if device == "auto" else device
    elif fmt == "onnx":
        require_onnx()  # one line naming the extra, before the run is loaded
        if precision == "fp16":
            raise ExportError("ONNX export is fp32 or int8 (fp16 ONNX is not supported here)")
        # Built and checked with ONNX Runtime's CPU provider unless a GPU is asked for by name.
        device = "cpu" if device == "auto" or precision == "int8" else device
    elif precision == "int8":
        if device.startswith("cuda"):
            raise ExportError(
                f"int8 export runs on the CPU (x86 quantized kernels), not {device}: "
                "use --device cpu"
            )
        require_int8_kernels()
        device = "cpu"
    elif precision == "fp16":
        if device == "cpu":
            raise ExportError("fp16 export needs a CUDA GPU; --device cpu was given")
        if not torch.cuda.is_available():
            raise ExportError("fp16 export needs a CUDA GPU; none is visible (use fp32 or int8)")
    try:
        return resolve_device(device)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc


def _auto_device(device: str) -> torch.device:
    try:
        return resolve_device(device)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc


def _load(run_dir: Path, device: torch.device, tta: bool = False) -> tuple[nn.Module, RunInfo]:
    try:
        return load_run(run_dir, device, tta=tta)
    except (FileNotFoundError, ValueError) as exc:
        raise ExportError(str(exc)) from exc


def run_records(root: Path, info: RunInfo) -> tuple[list[Record], list[Record]] | None:
    """The run's own (training, validation) records under ``root``, by the patients its
    config.json lists for each side (``test/`` never); None when it lists none."""
    saved = info.config.get("data")
    patients = saved.get("patients") if isinstance(saved, dict) else None
    if not isinstance(patients, dict) or not patients.get("train"):
        return None
    train_ids, val_ids = set(patients["train"]), set(patients.get("val", []))
    val_folder = saved.get("val_source") == "val folder"
    labeled = [r for r in discover(root) if r.label is not None and r.split != "test"]
    train = [r for r in labeled if r.patient in train_ids and r.split != "val"]
    val = [
        r
        for r in labeled
        if r.patient in val_ids and ((r.split == "val") if val_folder else (r.split != "val"))
    ]
    return (train, val) if train else None


def _selection(
    run_dir: Path, info: RunInfo, data: Path | None, precision: str, batch_size: int
) -> tuple[Path, list[Record], object, str]:
    """(data root, all its records, the Selection, where its images came from)."""
    root, records = _data_records(run_dir, info, data)
    own = run_records(root, info) if data is None else None
    if own is None:
        chosen = select_images(records, precision, batch_size)
        measured = describe_data_images(leakage(info.config, chosen.heldout))
        return root, records, replace(chosen, measured=measured), f"--data {root}"
    train, val = own
    source = (
        f"the run's validation records ({len(val)}); int8 calibration: its training records"
        if val
        else f"the run's training records ({len(train)}; it keeps no validation records)"
    )
    return root, records, select_run_images(train, val, precision, batch_size), source


def _data_records(run_dir: Path, info: RunInfo, data: Path | None) -> tuple[Path, list[Record]]:
    """The folder of real images to check the export with, and its records."""
    if data is not None:
        root = Path(data)
        if not root.exists():
            raise ExportError(f"--data {root} does not exist")
    else:
        recorded = info.config.get("data")
        path = recorded.get("root") if isinstance(recorded, dict) else None
        path = path or info.config.get("train", {}).get("data")
        if not path:
            raise ExportError(
                f"{run_dir} does not record its training data: pass --data DIR "
                "(real images to verify the export with)"
            )
        root = Path(path)
        if not root.exists():
            raise ExportError(
                f"the run's training data {root} is gone: pass --data DIR "
                "(real images to verify the export with)"
            )
    return root, require_images(discover(root), str(root), " to verify the export")


def _verify(
    eager: nn.Module, exported: ExportedModel, x: torch.Tensor, device: torch.device
) -> float:
    """Max |probability difference| over the traced batch size and a different one."""
    worst = 0.0
    for n in check_sizes(len(x)):
        reference = probabilities(eager, x[:n], device)
        worst = max(worst, max_abs_diff(reference, probabilities(exported, x[:n], device)))
    return worst


@dataclass(frozen=True)
class _Int8Check:
    """int8 against eager fp32 on images outside the calibration set (``films`` says which)."""

    images: int
    calibration_images: int
    auc_eager: float | None
    auc_int8: float | None
    max_abs_diff: float
    threshold: float = 0.5
    decisions_changed: int = 0
    films: str = OUTSIDE_CALIBRATION

    @property
    def auc_drop(self) -> float | None:
        if self.auc_eager is None or self.auc_int8 is None:
            return None
        return self.auc_eager - self.auc_int8

    def note(self) -> str:
        if not self.images:
            return f"int8: no {OUTSIDE_CALIBRATION} to measure the accuracy change on"
        rest = (
            f"{self.decisions_changed} of {self.images} decisions change at the run's threshold "
            f"{self.threshold:.3g}, max probability change {self.max_abs_diff:.4f}"
        )
        if self.auc_eager is None or self.auc_int8 is None:
            return f"int8: ROC-AUC not measured ({self.films} lack a class); {rest}"
        return (
            f"int8: ROC-AUC {self.auc_eager:.4f} -> {self.auc_int8:.4f} "
            f"({self.auc_int8 - self.auc_eager:+.4f}) on {self.images} {self.films}, "
            f"calibrated on {self.calibration_images} others; {rest}"
        )

    def to_dict(self) -> dict:
        return {
            "calibration_images": self.calibration_images,
            "heldout_images": self.images,  # the key kept for readers; measured_on says what
            "measured_on": self.films,
            "roc_auc_eager": self.auc_eager,
            "roc_auc_int8": self.auc_int8,
            "max_auc_drop": INT8_MAX_AUC_DROP,
            "heldout_max_abs_diff": self.max_abs_diff,
            "threshold": self.threshold,
            "decisions_changed": self.decisions_changed,
        }


def _check_int8(
    eager: nn.Module,
    exported: ExportedModel,
    records: list[Record],
    info: RunInfo,
    n_cal: int,
    films: str = OUTSIDE_CALIBRATION,
) -> _Int8Check:
    cpu = torch.device("cpu")
    ref, got, labels = [], [], []
    for x, y in iter_images(records, info.contract) if records else ():
        ref.append(probabilities(eager, x, cpu))
        got.append(probabilities(exported, x, cpu))
        labels.append(y)
    if not ref:
        return _Int8Check(0, n_cal, None, None, 0.0, info.threshold, films=films)
    ref_p, got_p = torch.cat(ref), torch.cat(got)
    y = torch.cat(labels).numpy()
    changed = (ref_p >= info.threshold) != (got_p >= info.threshold)
    return _Int8Check(
        images=len(y),
        calibration_images=n_cal,
        auc_eager=roc_auc(y, ref_p.numpy()),
        auc_int8=roc_auc(y, got_p.numpy()),
        max_abs_diff=max_abs_diff(ref_p, got_p),
        threshold=info.threshold,
        decisions_changed=int(changed.sum()),
        films=films,
    )


def _judge(
    fmt: str, precision: str, diff: float, tolerance: float, images: int, int8: _Int8Check | None
) -> None:
    """ExportError unless the export passes its rule.

    int8 with both classes among the images it is measured on: ROC-AUC may drop by at most
    INT8_MAX_AUC_DROP (ranking is what screening uses; single probabilities may move more).
    Otherwise: max |probability difference| on the verification batch within the tolerance.
    """
    drop = int8.auc_drop if int8 is not None else None
    if drop is not None:
        if drop > INT8_MAX_AUC_DROP:
            raise ExportError(
                f"int8 model loses {drop:.4f} ROC-AUC on {int8.images} {int8.films} "
                f"({int8.auc_eager:.4f} -> {int8.auc_int8:.4f}), more than the "
                f"{INT8_MAX_AUC_DROP} allowed; export fp32 instead"
            )
    elif not diff <= tolerance:  # also catches NaN
        raise ExportError(
            f"exported model differs from eager by {diff:.3g} > tolerance {tolerance:g} "
            f"({fmt} {precision}, max |probability difference| on {images} images)"
        )


def _build(
    fmt: str,
    precision: str,
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    contract: dict,
    batch_size: int,
    calibration: list[Record],
    info: RunInfo,
) -> None:
    """Write the export of ``model`` to ``path`` (unchecked)."""
    batches = (x for x, _ in iter_images(calibration, info.contract, _CALIBRATION_BATCH))
    if fmt == "onnx":
        # ONNX Runtime quantises the exported graph itself (QDQ), not a torch module.
        if precision == "int8":
            quantize_onnx_int8(model, example, path, contract, PT2_MAX_BATCH, batches)
        else:
            save_onnx(model, example, path, contract, PT2_MAX_BATCH)
        return
    if precision == "int8":
        module = quantize_int8(model, example, batches, info.arch)
    elif precision == "fp16":
        module = HalfPrecision(copy.deepcopy(model))
    else:
        module = copy.deepcopy(model)
    if fmt == "torchscript":
        save_torchscript(module, example, path, contract)
    elif fmt == "pt2":
        # Weights stay channels_last: measured 261 vs 168 images/s on the CPU (Kaggle cnn,
        # 224 px, batch 32) against plain-layout weights.
        try:
            save_pt2(module, example, path, contract, PT2_MAX_BATCH)
        except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"torch.export failed for {info.arch}: {first}") from exc
    else:
        save_tensorrt(
            # TensorRT picks its own layouts; plain weights are what its converters expect.
            module.to(memory_format=torch.contiguous_format),
            example,
            path,
            contract,
            fp16=precision == "fp16",
            # Tuned for the batch CUDA scoring sends, not the verification batch.
            opt_batch=TRT_OPT_BATCH,
            max_batch=max(batch_size, TRT_MAX_BATCH),
            device=example.device,
        )


def _refuse_other_export(out: Path, fmt: str, precision: str, source_sha: str) -> None:
    """ExportError when ``out`` holds something other than this run's ``fmt``/``precision``
    export (another run, another format or precision, or a file without its sidecar): one
    overwrite policy for every command, ``--overwrite`` replaces it. Re-exporting the same
    checkpoint the same way rewrites it."""
    if not out.exists() and not sidecar_path(out).exists():
        return
    try:
        import json

        old = json.loads(sidecar_path(out).read_text())
        same = (old.get("source_sha256"), old.get("format"), old.get("precision")) == (
            source_sha,
            fmt,
            precision,
        )
        what = (
            f"a {old.get('format')} {old.get('precision')} export of "
            f"{old.get('source', '?')} (model.pt {str(old.get('source_sha256'))[:12]}…)"
        )
    except (OSError, ValueError):
        same, what = False, "a file that is not a cxr-fast export"
    if not same:
        raise ExportError(
            f"{out} already holds {what}: pass --overwrite to replace it, or choose another --out"
        )


def _max_batch(fmt: str, batch_size: int) -> int | None:
    if fmt in ("pt2", "onnx"):
        return PT2_MAX_BATCH
    if fmt == "tensorrt":
        return max(batch_size, TRT_MAX_BATCH)
    return None  # a traced TorchScript graph takes any batch size


@dataclass(frozen=True)
class _Inputs:
    """An export's settled inputs: format, precision, device, model, images and output path."""

    run_dir: Path
    fmt: str
    precision: str
    target: torch.device
    model: nn.Module
    info: RunInfo
    source_sha: str
    data_root: Path
    selection: Selection
    source: str
    x: torch.Tensor
    example: torch.Tensor
    contract: dict
    out: Path
    notes: list[str]


@dataclass(frozen=True)
class _Artifact:
    """A verified export in place at its output path, with what checking it measured."""

    diff: float
    tolerance: float
    int8: _Int8Check | None
    speed: dict
    file_sha: str


def _resolve(
    run_dir: Path,
    fmt: str,
    precision: str | None,
    batch_size: int,
    out: Path | None,
    data: Path | None,
    device: str,
    tta: bool,
    overwrite: bool,
) -> _Inputs:
    """Resolve --format auto, check the options, load model and images, settle the output."""
    run_dir = Path(run_dir)
    notes: list[str] = []
    if fmt == "auto":
        fmt, auto_precision, why = auto_export(read_run(run_dir)[1].arch, _auto_device(device))
        precision = precision or auto_precision
        notes.append(f"--format auto: {fmt} {precision} ({why})")
    precision = _check_options(fmt, precision, batch_size)
    target = _export_device(fmt, precision, device)
    model, info = _load(run_dir, target, tta)
    out = Path(out) if out is not None else default_out_path(run_dir, fmt, precision, tta)
    writable_file(out)  # before the model is traced and checked, not at the end
    source_sha = sha256(run_dir / MODEL_FILE)
    data_root, _, selection, source = _selection(run_dir, info, data, precision, batch_size)
    x, _ = load_images(selection.verify, info.contract)
    example = traceable(x).to(target)
    contract = info.contract.to_dict()
    if not overwrite:
        _refuse_other_export(out, fmt, precision, source_sha)
    return _Inputs(
        run_dir,
        fmt,
        precision,
        target,
        model,
        info,
        source_sha,
        data_root,
        selection,
        source,
        x,
        example,
        contract,
        out,
        notes,
    )


def _make_artifact(inp: _Inputs, batch_size: int) -> _Artifact:
    """Build the file beside ``inp.out``, verify and time it, and only then put it in place."""
    fmt, precision, model, target, x = inp.fmt, inp.precision, inp.model, inp.target, inp.x
    selection, notes = inp.selection, inp.notes
    # Same suffix as the target (torch.export and Torch-TensorRT look at it); hidden, so a
    # half-written or failed export never sits where a reader looks.
    tmp = inp.out.with_name(f".tmp-{os.getpid()}-{inp.out.name}")
    int8 = None
    try:
        with warnings_to_notes(notes):
            _build(
                fmt,
                precision,
                model,
                inp.example,
                tmp,
                inp.contract,
                batch_size,
                selection.calibration,
                inp.info,
            )
            exported = open_artifact(
                tmp, fmt, precision, inp.contract, target, _max_batch(fmt, batch_size)
            )
            diff = _verify(model, exported, x, target)
            if precision == "int8":
                int8 = _check_int8(
                    model,
                    exported,
                    selection.heldout,
                    inp.info,
                    len(selection.calibration),
                    selection.measured,
                )
        tolerance = TOLERANCES[precision]
        if int8 is not None:
            notes.insert(0, int8.note())  # the number the user asked for comes first
        _judge(fmt, precision, diff, tolerance, len(x), int8)
        with warnings_to_notes(notes):
            speed = measure_speedup(model, exported, x, target)
        file_sha = sha256(tmp)
        os.replace(tmp, inp.out)
    finally:
        tmp.unlink(missing_ok=True)
    return _Artifact(diff, tolerance, int8, speed, file_sha)


def _finish_export(inp: _Inputs, made: _Artifact, tta: bool, batch_size: int) -> ExportResult:
    """Write the JSON sidecar describing the export beside it and return the result."""
    fields = export_fields(
        inp.info,
        fmt=inp.fmt,
        precision=inp.precision,
        out=inp.out,
        file_sha=made.file_sha,
        source=inp.run_dir,
        source_sha=inp.source_sha,
        tta=tta,
        device=inp.target,
        batch_size=batch_size,
        batch_max=_max_batch(inp.fmt, batch_size),
        diff=made.diff,
        tolerance=made.tolerance,
        verification={
            "data": str(inp.data_root),
            "source": inp.source,
            "images": len(inp.x),
            "batch_sizes": check_sizes(len(inp.x)),
            "labels": label_counts(inp.selection.verify),
        },
        int8=made.int8.to_dict() if made.int8 is not None else None,
        speed=made.speed,
        notes=inp.notes,
    )
    side = write_sidecar(inp.out, fields)
    return ExportResult(
        path=inp.out,
        sidecar=side,
        format=inp.fmt,
        precision=inp.precision,
        max_abs_diff=made.diff,
        tolerance=made.tolerance,
        notes=inp.notes,
        speed=made.speed,
    )


def export_run(
    run_dir: Path,
    fmt: str,
    *,
    precision: str | None = None,
    batch_size: int = EXPORT_BATCH_SIZE,
    out: Path | None = None,
    data: Path | None = None,
    device: str = "auto",
    tta: bool = False,
    overwrite: bool = False,
) -> ExportResult:
    """Export the run's model as ``fmt`` ("torchscript", "pt2", "tensorrt") at ``precision``
    ("fp32", "fp16", "int8"; None: fp16 for tensorrt, else fp32) to ``out`` (default
    ``RUN/export/model[.PRECISION][.tta].{ts,pt2,trt.pt2}``) with a JSON sidecar; ``tta``
    exports the test-time-augmented model (three views per image).

    `data` = folder of real images for the verification batch (``batch_size`` images) and int8
    calibration; default: the run's training data root from config.json (clear ExportError if
    it's gone: 'pass --data DIR'). The written file is reloaded and compared with the eager
    fp32 model; past the precision's tolerance nothing is kept and ExportError says by how much.
    Prints nothing: notes to show the user come back in the result.
    """
    inp = _resolve(run_dir, fmt, precision, batch_size, out, data, device, tta, overwrite)
    made = _make_artifact(inp, batch_size)
    return _finish_export(inp, made, tta, batch_size)
