"""Names, tolerances, file names and the result/error types shared by every export format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_fast.choices import EXPORT_FORMATS, SCORE_BATCH_SIZE
from cxr_fast.choices import EXPORT_PRECISIONS as EXPORT_PRECISIONS  # re-exported
from cxr_fast.errors import CxrFastError

FORMATS = EXPORT_FORMATS
# What ``precision=None`` means per format: TensorRT exists to run fast on a GPU, and fp16 is
# where its speed is; the portable formats stay fp32, within 1e-4 of eager, by default.
DEFAULT_PRECISION = {"torchscript": "fp32", "pt2": "fp32", "tensorrt": "fp16", "onnx": "fp32"}

# Largest allowed max |sigmoid(exported) - sigmoid(eager fp32)| on the verification batch.
# fp32: only operator order and BatchNorm folding separate the two (measured <= 2e-6), so 1e-4
#   leaves room for other kernels on other hosts while catching any real change.
# fp16: a 10-bit mantissa gives ~1e-3 relative error per layer; through a deep convnet that
#   stays well under 1e-2 in probability, while a broken cast (overflow) lands far above.
# int8: most probabilities move by < 1e-3, but images whose logit sits near 0, where the sigmoid
#   is steepest, move by hundredths (measured max 0.059 over 256 held-out images, Kaggle cnn at
#   224 px). 0.1 leaves headroom for deeper networks and still fails a broken calibration
#   (tenths). It decides only when ROC-AUC cannot be measured: see INT8_MAX_AUC_DROP.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.1}
# int8 fails when held-out ROC-AUC drops by more than this (when both classes are present):
# ranking is what a screening threshold relies on.
INT8_MAX_AUC_DROP = 0.005
CALIBRATION_IMAGES = 256
HELDOUT_IMAGES = 256
# Dynamic batch ranges. pt2 costs nothing for a wide range; a TensorRT engine is tuned for its
# range, so it stays near what scoring uses.
PT2_MAX_BATCH = 1024
TRT_MAX_BATCH = 256
# The batch a TensorRT engine is tuned for: the one `cxr-fast score` sends on CUDA (kernels are
# chosen for opt_shape; other batches in the range run, more slowly).
TRT_OPT_BATCH = SCORE_BATCH_SIZE["cuda"]

EXPORT_DIR = "export"
SUFFIXES = {"torchscript": ".ts", "pt2": ".pt2", "tensorrt": ".trt.pt2", "onnx": ".onnx"}
# Formats that have an int8 path on the CPU: TorchScript (torch.ao FX) and ONNX (ONNX Runtime QDQ).
INT8_FORMATS = ("torchscript", "onnx")
# Name of the contract file carried inside every exported archive (TorchScript, pt2, TensorRT;
# the ONNX metadata_props key).
CONTRACT_FILE = "contract.json"


class ExportError(CxrFastError):
    """An export or load that cannot go ahead; the message is one line for the user."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how closely it matches the eager model."""

    path: Path
    sidecar: Path
    format: str
    precision: str
    max_abs_diff: float
    tolerance: float
    notes: list[str]
    speed: dict | None = None  # measured against eager at export (speed.measure_speedup)

    def summary(self) -> str:
        """The notes, the files written and the check against the eager model."""
        notes = "".join(f"note: {note}\n" for note in self.notes)
        return (
            f"{notes}exported {self.format} ({self.precision}) -> {self.path}\n"
            f"sidecar: {self.sidecar}\n"
            f"max |probability - eager| on a real batch: {self.max_abs_diff:.2e} "
            f"(tolerance {self.tolerance:g})" + self._speed_line()
        )

    def _speed_line(self) -> str:
        if not self.speed:
            return ""
        s = self.speed
        return (
            f"\nspeed: {s['images_per_second']:.0f} images/s, {s['speedup_vs_eager']:.2f}x the "
            f"eager model ({s['eager_precision']}) on this host, batch {s['batch']}"
        )


def default_out_path(run_dir: Path, fmt: str, precision: str, tta: bool = False) -> Path:
    """``RUN/export/model[.PRECISION][.tta].{ts,pt2,trt.pt2}``; fp32 files carry no precision
    tag."""
    tag = ("" if precision == "fp32" else f".{precision}") + (".tta" if tta else "")
    return Path(run_dir) / EXPORT_DIR / f"model{tag}{SUFFIXES[fmt]}"


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar beside an exported file: ``model.ts`` -> ``model.ts.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")
