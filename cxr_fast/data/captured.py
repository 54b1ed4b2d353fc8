"""Warnings raised while reading one file, kept for that file's row instead of the terminal."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def capture_warnings(into: list[str]) -> Iterator[None]:
    """Append the text of every warning raised inside the block to ``into`` (each once), and
    print none of them: they would land between progress-bar updates.

    ``catch_warnings`` swaps process-wide state, so use it where one file is decoded at a time
    per process (DataLoader workers, the main process), not from concurrent threads."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                text = " ".join(str(warning.message).split())
                if text not in into:
                    into.append(text)


_scratch: dict[int, object] = {}  # pid -> this process's reusable temporary file


@contextmanager
def capture_native_stderr(into: list[str]) -> Iterator[None]:
    """Append what native decoders (GDCM, OpenJPEG, CharLS) write straight to file descriptor
    2 inside the block to ``into``, instead of the terminal. Process-wide like the above: one
    file decoded at a time per process."""
    import os
    import sys
    import tempfile

    scratch = _scratch.get(os.getpid())
    if scratch is None:
        # Kept open for the process's life: one file per process, not one per decoded image.
        scratch = _scratch[os.getpid()] = tempfile.TemporaryFile()  # noqa: SIM115
    sys.stderr.flush()
    saved = os.dup(2)
    scratch.seek(0)
    scratch.truncate()
    os.dup2(scratch.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        scratch.seek(0)
        for line in scratch.read().decode(errors="replace").splitlines():
            text = " ".join(line.split())
            if text and text not in into:
                into.append(text)
