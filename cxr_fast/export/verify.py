"""Real images for verification and calibration, and the numbers an export is judged by."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.decode import ImageReadError
from cxr_fast.data.discover import Record
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.export.common import CALIBRATION_IMAGES, HELDOUT_IMAGES, ExportError
from cxr_fast.fp32 import ieee_fp32 as ieee_fp32  # re-exported: the checks' precision

_LOAD_BATCH = 64


def evenly_spaced(n: int, k: int) -> list[int]:
    """``min(k, n)`` distinct indices spread evenly over ``range(n)``, first and last included.

    Records are sorted by path, so an even spread covers every class folder and split instead
    of the first few alphabetically (all NORMAL in the Kaggle layout).
    """
    if k >= n:
        return list(range(n))
    if k == 1:
        return [(n - 1) // 2]
    return [i * (n - 1) // (k - 1) for i in range(k)]


# What the int8 accuracy check's images are, after their count in its messages. Only images no
# member of the run trained on are called held-out.
OUTSIDE_CALIBRATION = "images outside the calibration set"
VALIDATION_IMAGES = "held-out validation images (the run never trained on them)"
TRAINING_IMAGES = "training images outside the calibration set (not held out: the run keeps none)"


@dataclass(frozen=True)
class Selection:
    """Which images verify the export, calibrate int8 and measure int8's accuracy
    (``heldout``: never among ``calibration``; ``measured`` says what else they are)."""

    verify: list[Record]
    calibration: list[Record]
    heldout: list[Record]
    measured: str = OUTSIDE_CALIBRATION


def select_images(records: Sequence[Record], precision: str, batch_size: int) -> Selection:
    """Deterministic picks from ``records``.

    fp32/fp16: ``batch_size`` images spread over the data. int8: up to 256 calibration images
    (never more than half, so a held-out set remains), up to 256 held-out images from the rest,
    and the verification batch from the held-out images, which calibration never saw.
    """
    records = list(records)
    if precision != "int8":
        return Selection([records[i] for i in evenly_spaced(len(records), batch_size)], [], [])
    n_cal = min(CALIBRATION_IMAGES, max(1, len(records) // 2))
    cal_index = evenly_spaced(len(records), n_cal)
    chosen = set(cal_index)
    rest = [r for i, r in enumerate(records) if i not in chosen]
    heldout = [rest[i] for i in evenly_spaced(len(rest), HELDOUT_IMAGES)]
    calibration = [records[i] for i in cal_index]
    source = heldout or calibration
    verify = [source[i] for i in evenly_spaced(len(source), batch_size)]
    return Selection(verify, calibration, heldout)


def select_run_images(
    train: Sequence[Record], val: Sequence[Record], precision: str, batch_size: int
) -> Selection:
    """Picks from a run's own records: int8 calibrates on its training records only and is
    measured and verified on its validation records (which neither training nor calibration
    saw); other precisions verify on validation records. A run without validation records (an
    ensemble: every training image trained some member) falls back to
    :func:`select_images` over the training records; ``test/`` is never among either."""
    train, val = list(train), list(val)
    if not val:
        chosen = select_images(train, precision, batch_size)
        return Selection(chosen.verify, chosen.calibration, chosen.heldout, TRAINING_IMAGES)
    if precision != "int8":
        return Selection([val[i] for i in evenly_spaced(len(val), batch_size)], [], [])
    calibration = [train[i] for i in evenly_spaced(len(train), CALIBRATION_IMAGES)]
    heldout = [val[i] for i in evenly_spaced(len(val), HELDOUT_IMAGES)]
    verify = [heldout[i] for i in evenly_spaced(len(heldout), batch_size)]
    return Selection(verify, calibration, heldout, VALIDATION_IMAGES)


def describe_data_images(found: dict | None) -> str:
    """What the int8 check's images from ``--data`` are, by their overlap with the run's
    training patients (:func:`cxr_fast.leakage.leakage` of them; None: the run lists none)."""
    if found is None:
        return f"{OUTSIDE_CALIBRATION} from --data (the run lists no patients to check them by)"
    if found["training_patients"]:
        return (
            f"{OUTSIDE_CALIBRATION} from --data ({found['training_images']} of them from "
            "patients the run trained on)"
        )
    return "held-out images from --data (no patient the run trained on; outside calibration)"


def iter_images(
    records: Sequence[Record], contract: PreprocessContract, batch_size: int = _LOAD_BATCH
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` CPU batches in record order, preprocessed exactly as training and scoring do
    (the PIL loader, in-process: export runs once, worker start-up would dominate)."""
    loader = make_scoring_loader(LoaderSpec(records, contract, batch_size, workers=0), "torch")
    try:
        for batch in loader:
            _refuse_skipped(loader)  # the loader leaves unreadable files out; checks need all
            yield batch.x, batch.y
    except (ImageReadError, OSError, ValueError) as exc:
        raise ExportError(f"cannot read an image for the export checks: {exc}") from exc
    _refuse_skipped(loader)  # a last batch of unreadable files yields nothing


def _refuse_skipped(loader) -> None:
    if getattr(loader, "skipped", None):
        path, reason = loader.skipped[0]
        raise ExportError(f"cannot read an image for the export checks: {path}: {reason}")


def load_images(
    records: Sequence[Record], contract: PreprocessContract
) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``records`` as one CPU batch ``x`` [N,1,S,S] (channels_last) and labels ``y``."""
    xs, ys = zip(*iter_images(records, contract), strict=True)
    x = torch.cat(xs).contiguous(memory_format=torch.channels_last)
    return x, torch.cat(ys)


def traceable(x: torch.Tensor) -> torch.Tensor:
    """``x`` with at least two samples: torch.export specialises a dimension of size 1."""
    return x if len(x) >= 2 else torch.cat([x, x]).contiguous(memory_format=torch.channels_last)


def check_sizes(n: int) -> list[int]:
    """Batch sizes to verify with: the traced one and a different one (32 -> 32 and 17), so a
    graph that baked in its batch size fails here rather than in scoring."""
    other = n // 2 + 1
    return [n, other if other != n else 1] if n > 1 else [1]


def probabilities(
    run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """sigmoid of ``run(x)`` as a float64 CPU vector; the output must be one logit per image."""
    with torch.no_grad(), ieee_fp32():
        logits = run(x.to(device))
    if tuple(logits.shape) != (len(x), 1):
        raise ExportError(f"model output has shape {tuple(logits.shape)}, expected ({len(x)}, 1)")
    return torch.sigmoid(logits.detach().double().cpu()).reshape(-1)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference; NaN anywhere counts as infinitely different."""
    diff = (a - b).abs()
    return float("inf") if torch.isnan(diff).any() else float(diff.max())


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """ROC-AUC, or None when the labels do not hold both classes."""
    from cxr_fast.metrics import roc_auc as known_roc_auc

    known = labels >= 0
    return known_roc_auc(labels[known], probs[known])
