"""How many CPU threads the model gets while DataLoader workers decode on the same cores.

Neither fixed choice wins on a small CPU (docs/benchmarks.md, 2 cores, 2 workers): two model
threads scored fp32 resnet18 at 224 px in 19.8 s per 1,000 full-resolution films against 24.6 s
with one, because there the model is the bottleneck; but one thread was faster for the default
ensemble's int8 export (7.6 s against 9.3 s), its eager bf16 model and one bf16 member (8.4 s
against 10.2 s), because a model spread over threads that share their cores with busy decoding
workers spends CPU time waiting for preempted siblings at every operator. Timing the model
inside the run does not tell these apart (with busy workers a two-thread model waits for its
preempted thread and looks slow either way), so before the workers start the scorer times a
few sample images: decoding them, and the model on them with one thread.

That rule is for OpenMP's default, active wait: threads that spin while they wait. `cxr-fast
score` asks for the passive wait instead (:mod:`cxr_fast.scoring.wait_policy`); then two
threads cost no more CPU time than one and every core went to the model in every case measured,
so the scorer times nothing and gives the model every core.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import ImageReadError, read_gray

# Few: the calibration runs before any scoring, at one thread (~0.2 s for fp32 resnet18 at
# 224 px). Four rather than two: one film's decode time varies 2x with its size.
SAMPLE_IMAGES = 4
# CPU time of a model on every core while the workers decode beside it, as a multiple of its
# one-thread time: 1.3 (fp32 resnet18, 224 px) to 1.7 (int8 and bf16 resnet18, 128 px) from
# the user times of `score` on 1,000 films, 2 cores, 2 workers (docs/benchmarks.md).
THREAD_OVERHEAD = 1.5


def choose_threads(model_s: float, decode_s: float, cores: int, workers: int) -> int:
    """Model threads from per-image seconds: the model on one thread (``model_s``) and one
    decode (``decode_s``). Per image, one model thread takes ``max(model_s, (model_s +
    decode_s) / cores)`` and every core ``(THREAD_OVERHEAD * model_s + decode_s) / cores``: the
    model gets every core only when that is the shorter, i.e. ``model_s * (cores -
    THREAD_OVERHEAD) > decode_s``; otherwise it gets the cores the workers leave (at least one)."""
    model_bound = model_s * (cores - THREAD_OVERHEAD) > decode_s
    return cores if model_bound else max(1, cores - workers)


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
