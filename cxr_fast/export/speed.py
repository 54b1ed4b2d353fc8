"""How much faster an export runs than the eager model it came from, measured at export on the
host that builds it: what ``score --backend auto`` ranks a run's exports by (backend_choice.py).

The two are timed in alternation on the same real batch (the scoring batch size of the device),
so a busy machine slows both alike and the ratio stays meaningful where absolute images/s do not.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from cxr_fast.choices import SCORE_BATCH_SIZE
from cxr_fast.precision import inference_precision

# Alternating rounds; each round runs each model once on the batch. The median ratio is kept.
ROUNDS = 5


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure_speedup(
    eager: torch.nn.Module,
    exported: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    device: torch.device,
) -> dict:
    """{"speedup_vs_eager", "images_per_second", "eager_images_per_second", "eager_precision",
    "batch", "threads"}: the export against the eager model at the device's ``auto`` inference
    precision (what `score` runs without an export), medians over :data:`ROUNDS` rounds."""
    batch = SCORE_BATCH_SIZE.get(device.type, SCORE_BATCH_SIZE["cuda"])
    sample = x[:batch].to(device)
    precision = inference_precision(device)

    def run_eager() -> None:
        with torch.inference_mode(), precision.autocast(eager):
            eager(sample)
        _sync(device)

    def run_exported() -> None:
        with torch.inference_mode():
            exported(sample)
        _sync(device)

    run_eager(), run_exported()  # first calls allocate and pick kernels
    eager_s, export_s = [], []
    for _ in range(ROUNDS):
        eager_s.append(_seconds(run_eager))
        export_s.append(_seconds(run_exported))
    ratios = sorted(e / x for e, x in zip(eager_s, export_s, strict=True))
    n = len(sample)
    return {
        "speedup_vs_eager": round(ratios[len(ratios) // 2], 3),
        "images_per_second": round(n / sorted(export_s)[len(export_s) // 2], 1),
        "eager_images_per_second": round(n / sorted(eager_s)[len(eager_s) // 2], 1),
        "eager_precision": precision.name,
        "batch": n,
        "threads": torch.get_num_threads(),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
