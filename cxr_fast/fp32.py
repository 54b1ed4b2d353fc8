"""Full-precision fp32 on CUDA for a block of code, set through torch's own flags."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_IEEE = "ieee"


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """IEEE fp32 convolutions, RNNs and matmuls on CUDA for the duration (no TF32).

    cuDNN convolutions default to TF32 (10-bit mantissa) in PyTorch 2.14, so two fp32 models
    compared under TF32 differ by ~1e-3, and a TorchScript trace records the flag in every
    ``aten::_convolution`` it makes. Every reader must also see consistent flags: torch checks
    that cuDNN conv, cuDNN RNN and the legacy ``cudnn.allow_tf32`` agree whenever something
    asks the legacy question (``cudnn.allow_tf32``, ``torch.export``), and raises "a mix of
    the legacy and new APIs" otherwise. So the legacy flag and both cuDNN operators are set
    together, and all three restored on exit. The flags are process-wide and only CUDA reads
    them; on the CPU this changes what is recorded in traces, nothing that is computed.
    """
    cudnn = torch.backends.cudnn
    legacy = torch._C._get_cudnn_allow_tf32()
    saved = [(op, op.fp32_precision) for op in (cudnn.conv, cudnn.rnn, torch.backends.cuda.matmul)]
    torch._C._set_cudnn_allow_tf32(False)  # legacy flag first: it rewrites conv and rnn
    for op, _ in saved:
        op.fp32_precision = _IEEE
    try:
        yield
    finally:
        torch._C._set_cudnn_allow_tf32(legacy)
        for op, value in saved:
            op.fp32_precision = value
