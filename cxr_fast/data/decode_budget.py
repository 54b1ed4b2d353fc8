"""A budget on the decoded pixels in flight across every decoding process of one run.

A file's size says little about its pixels: a 0.7 MB PNG of 9400x9400 16-bit RGBA decodes to
353 MB of RGBA plus an 88 MB grey copy. Each decoding process (DataLoader workers, the scorer's
head start) decodes one file at a time, but with all of them on such files at once a run on
two cores went from 0.9 GB to 2 GB (issue 26). So a decode above :data:`LARGE_DECODE_BYTES`
first takes slots of :data:`SLOT_BYTES` from a budget of :data:`BUDGET_BYTES` shared by the
processes, and waits while others hold them; smaller ones (every usual film, JPEGs decoded in
draft mode) never wait and cost nothing.

The budget is a file of POSIX record locks, one byte per slot, opened (and unlinked) when this
module is imported: processes forked afterwards share it, and the kernel frees the slots of a
process that dies, even by SIGKILL. A process started otherwise (spawn) has its own budget.
Free of PIL and torch, so the head start can import it before it forks.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import math
import tempfile
import threading
from collections.abc import Iterator

# Decodes above this take slots (bytes of the decoded image and its grey copy).
LARGE_DECODE_BYTES = 64 * 2**20
SLOT_BYTES = 64 * 2**20
# Large decodes in flight at once, every process together: one 9400x9400 RGBA film (7 slots).
BUDGET_BYTES = 512 * 2**20
SLOTS = BUDGET_BYTES // SLOT_BYTES

_BUSY = (errno.EACCES, errno.EAGAIN)  # what a refused non-blocking lockf raises


def _open_budget():
    try:
        return tempfile.TemporaryFile(prefix="cxr-fast-decode-budget.")
    except OSError:  # no usable temporary folder: each process decodes unbudgeted
        return None


_file = _open_budget()
if _file is not None:  # closed at exit, not left to the garbage collector's warning
    atexit.register(_file.close)
# Record locks belong to a process, not a thread: one thread of a process at a time takes slots.
_threads = threading.Lock()


def _lock(slot: int, *, wait: bool) -> bool:
    """Lock byte ``slot`` of the budget file; False when another process holds it."""
    assert _file is not None
    try:
        fcntl.lockf(_file.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB), 1, slot)
    except OSError as exc:
        if exc.errno in _BUSY and not wait:
            return False
        raise
    return True


def _unlock(slots: list[int]) -> None:
    assert _file is not None
    for slot in slots:
        fcntl.lockf(_file.fileno(), fcntl.LOCK_UN, 1, slot)


def _take(count: int) -> list[int]:
    """Lock ``count`` slots (bytes 1..SLOTS). Byte 0 is a turnstile: one process gathers slots
    at a time, so two cannot each hold half of what both need and wait for ever."""
    _lock(0, wait=True)
    held: list[int] = []
    try:
        while len(held) < count:
            for slot in range(1, SLOTS + 1):
                if len(held) < count and slot not in held and _lock(slot, wait=False):
                    held.append(slot)
            if len(held) < count:  # too few free: wait for one (its holder only releases)
                slot = next(s for s in range(1, SLOTS + 1) if s not in held)
                _lock(slot, wait=True)
                held.append(slot)
    except BaseException:
        _unlock(held)
        raise
    finally:
        _unlock([0])
    return held


def slots_for(nbytes: int) -> int:
    """Slots a decode of ``nbytes`` takes: 0 up to :data:`LARGE_DECODE_BYTES`, else its size
    in slots, at most the whole budget."""
    if nbytes <= LARGE_DECODE_BYTES:
        return 0
    return min(SLOTS, math.ceil(nbytes / SLOT_BYTES))


@contextlib.contextmanager
def decode_budget(nbytes: int) -> Iterator[None]:
    """Hold budget for a decode of ``nbytes`` (decoded image and copies) while the body runs;
    a small decode passes at once."""
    count = slots_for(nbytes)
    if count == 0 or _file is None:
        yield
        return
    with _threads:
        held = _take(count)
        try:
            yield
        finally:
            _unlock(held)
