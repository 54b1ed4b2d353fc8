"""How many CPU threads the model gets while DataLoader workers decode on the same cores.

Neither fixed choice wins on a small CPU (docs/benchmarks.md, 2 cores, 2 workers): one model
thread scored the int8 cnn at 177-211 images/s against 130-193 with two, because decoding is
the bottleneck and a second model thread only takes a core from it; but one thread cut fp32
resnet18 from 43 to 28 images/s, because there the model is the bottleneck. Timing the model
inside the run does not tell them apart (with busy workers a two-thread model waits for its
preempted thread and looks slow either way), so before the workers start the scorer times a
few sample images: decoding them, and the model on them with one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import ImageReadError, read_gray

# Few: the calibration runs before any scoring, at one thread (~0.1 s for fp32 resnet18).
SAMPLE_IMAGES = 2


def choose_threads(model_s: float, decode_s: float, cores: int, workers: int) -> int:
    """Model threads from per-image seconds: the model on one thread (``model_s``) and one
    decode (``decode_s``). When ``workers`` decode faster than one model thread scores, the
    model is the bottleneck and gets every core; otherwise it gets the cores the workers leave."""
    decode_bound = model_s * workers < decode_s
    return max(1, cores - workers) if decode_bound else cores


def measure_costs(
    paths: Sequence[str],
    contract: PreprocessContract,
    logits: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[float, float] | None:
    """(model seconds per image on one thread, decode seconds per image) on up to
    :data:`SAMPLE_IMAGES` readable files of ``paths``; None when none is readable."""
    planes, decode = [], []
    for path in paths[: 4 * SAMPLE_IMAGES]:
        started = time.perf_counter()
        try:
            planes.append(read_gray(path, contract)[0])
        except ImageReadError:
            continue
        decode.append(time.perf_counter() - started)
        if len(planes) == SAMPLE_IMAGES:
            break
    if not planes:
        return None
    x = stack_gray(planes, contract)
    decode_s = float(np.median(decode))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model_s = float("inf")
        for _ in range(2):  # the first call also pays for allocation and kernel selection
            started = time.perf_counter()
            logits(x)
            model_s = (time.perf_counter() - started) / len(planes)
            if model_s < decode_s / 4:
                break  # cold and still 4x faster than a decode: no need to time it warm
    finally:
        torch.set_num_threads(previous)
    return model_s, decode_s
