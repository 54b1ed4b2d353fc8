"""DataLoader worker set-up shared by every PIL loader."""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
_MMAP_THRESHOLD_BYTES = 128 * 1024


def steady_memory_worker(_worker_id: int) -> None:
    """``worker_init_fn`` that keeps a long-running worker's memory flat.

    glibc raises its mmap threshold after large frees, so decoded images of varying sizes then
    come from the heap and fragment it: without this a worker's RSS grew by ~75 KB per image
    over a 4,000-image archive (bench/memory.py). A fixed threshold keeps large buffers in mmap,
    returned to the system as soon as they are freed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
