"""Full-precision fp32 on CUDA for a block of code, set through torch's own flags."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_IEEE = "ieee"


class _Holders:
    """How many blocks (in any thread) are inside :func:`ieee_fp32`, and the flags to put back
    when the last one leaves: the flags are process-wide, and a scorer or server may run an
    export's calls in several threads at once."""

    lock = threading.Lock()
    count = 0
    saved: tuple | None = None


def _set_ieee() -> tuple:
    cudnn = torch.backends.cudnn
    legacy = torch._C._get_cudnn_allow_tf32()
    saved = [(op, op.fp32_precision) for op in (cudnn.conv, cudnn.rnn, torch.backends.cuda.matmul)]
    torch._C._set_cudnn_allow_tf32(False)  # legacy flag first: it rewrites conv and rnn
    for op, _ in saved:
        op.fp32_precision = _IEEE
    return legacy, saved


def _restore(flags: tuple) -> None:
    legacy, saved = flags
    torch._C._set_cudnn_allow_tf32(legacy)
    for op, value in saved:
        op.fp32_precision = value


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """IEEE fp32 convolutions, RNNs and matmuls on CUDA for the duration (no TF32).

    cuDNN convolutions default to TF32 (10-bit mantissa) in PyTorch 2.14, so two fp32 models
    compared under TF32 differ by ~1e-3, and a TorchScript trace records the flag in every
    ``aten::_convolution`` it makes. Every reader must also see consistent flags: torch checks
    that cuDNN conv, cuDNN RNN and the legacy ``cudnn.allow_tf32`` agree whenever something
    asks the legacy question (``cudnn.allow_tf32``, ``torch.export``), and raises "a mix of
    the legacy and new APIs" otherwise. So the legacy flag and both cuDNN operators are set
    together, and all three restored when the last block inside (nested, or in another
    thread) leaves. The flags are process-wide and only CUDA reads them; on the CPU this
    changes what is recorded in traces, nothing that is computed.
    """
    with _Holders.lock:
        if _Holders.count == 0:
            _Holders.saved = _set_ieee()
        _Holders.count += 1
    try:
        yield
    finally:
        with _Holders.lock:
            _Holders.count -= 1
            if _Holders.count == 0:
                _restore(_Holders.saved)
                _Holders.saved = None
