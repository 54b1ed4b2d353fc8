"""Set-up shared by decoding worker processes: flat memory, and no orphan outliving its parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
_MMAP_THRESHOLD_BYTES = 128 * 1024
_PR_SET_PDEATHSIG = 1  # prctl option number, from linux/prctl.h
# How often the fallback watchdog looks for its parent (where prctl is missing).
WATCHDOG_INTERVAL_S = 0.5


def _libc_function(name: str):
    """libc's ``name``, looked up now, in the parent: a worker forked while another thread
    (the background scikit-learn import) held the dynamic loader's lock would block for ever
    in dlopen or dlsym, so workers only call what was resolved before the fork."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):  # not glibc, or no such function: nothing to call
        return None


_MALLOPT = _libc_function("mallopt")
_PRCTL = _libc_function("prctl") if sys.platform.startswith("linux") else None


def steady_memory_worker(_worker_id: int) -> None:
    """``worker_init_fn`` that keeps a long-running worker's memory flat.

    glibc raises its mmap threshold after large frees, so decoded images of varying sizes then
    come from the heap and fragment it: without this a worker's RSS grew by ~75 KB per image
    over a 4,000-image archive (bench/memory.py). A fixed threshold keeps large buffers in mmap,
    returned to the system as soon as they are freed.
    """
    if _MALLOPT is not None:  # not glibc: nothing to tune
        _MALLOPT(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where it cannot."""
    return _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCHDOG_INTERVAL_S)
    os._exit(1)  # no clean-up: it could block on a queue nobody reads any more


def die_with_parent(parent: int) -> None:
    """Make this worker process end when ``parent`` (its parent's pid, taken before the fork)
    dies, even by SIGKILL: otherwise a worker blocked on a queue nobody reads lives on, adopted
    by PID 1, for ever (issue 26). prctl(PR_SET_PDEATHSIG) on Linux (sent when the *thread*
    that forked ends: start workers from one that outlives them, as the scorer's main thread
    does); elsewhere a watchdog thread that polls the parent's pid."""
    if not _set_parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def scoring_worker(worker_id: int, parent: int) -> None:
    """``worker_init_fn`` of the scorer's DataLoader workers (with ``functools.partial`` for
    ``parent``, the pid of the process that starts them): flat memory, and gone with it."""
    die_with_parent(parent)
    steady_memory_worker(worker_id)
