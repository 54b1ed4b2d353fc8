"""Checks that an output location can be written before any work goes into filling it, and
the lock that keeps two runs from writing one output at once."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from cxr_fast.errors import OutputError


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def writable_folder(folder: Path, option: str = "--out") -> Path:
    """Create ``folder`` (and its parents) and prove a file can be written in it; one-line
    :class:`OutputError` for a folder under a file, a read-only mount, /sys or /proc, or one
    the user may not write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(
            f"cannot use {option} {folder}: a file of that name is in the way; choose another"
        ) from None
    except OSError as exc:
        raise OutputError(
            f"cannot create {folder} for {option}: {_why(exc)}; choose another location"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".cxr-fast-write-test.", dir=folder)
    except OSError as exc:
        raise OutputError(
            f"cannot write in {folder} ({option}): {_why(exc)}; choose another location"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return folder


def creatable_folder(folder: Path, option: str = "--out") -> Path:
    """Prove that ``folder`` can be created (or is a folder) and written in, creating nothing:
    for a check before any other, after which a run may still be refused and must leave
    nothing behind. One-line :class:`OutputError` as :func:`writable_folder`."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        raise OutputError(
            f"cannot use {option} {folder}: a file of that name is in the way; choose another"
        )
    if not existing.is_dir():
        raise OutputError(
            f"cannot create {folder} for {option}: {existing} is a file, not a folder; choose "
            "another location"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".cxr-fast-write-test.", dir=existing)
    except OSError as exc:
        where = "" if existing == folder else f" (in {existing})"
        raise OutputError(
            f"cannot write in {folder} ({option}): {_why(exc)}{where}; choose another location"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return folder


def writable_file(path: Path, option: str = "--out") -> Path:
    """A file path whose folder is writable and which is not itself a folder."""
    if path.is_dir():
        raise OutputError(
            f"{option} {path} is a folder: give a file name such as {path / 'preds.parquet'}"
        )
    writable_folder(path.parent, option)
    return path


def lock_path(out: Path) -> Path:
    """The hidden lock file beside ``out`` (``.NAME.lock``)."""
    return out.parent / f".{out.name}.lock"


def _holder(fd: int) -> str:
    """The pid the lock's holder wrote in the lock file ("unknown" until it has)."""
    try:
        return os.pread(fd, 32, 0).decode().strip() or "unknown"
    except (OSError, UnicodeDecodeError):
        return "unknown"


# Outputs this process holds locked (record locks exclude other processes only).
_HELD: set[str] = set()
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def exclusive_output(out: Path, command: str = "cxr-fast score") -> Iterator[None]:
    """Hold an exclusive lock on ``out`` while the body runs (a POSIX record lock on
    :func:`lock_path`, which names the holder's pid): a second run on the same output, which
    would delete or rename the first one's files under it, gets a one-line
    :class:`OutputError` instead. The kernel drops the lock when its holder dies, even by
    SIGKILL; a record lock, unlike flock, is not inherited by forked decoding workers, so a
    worker that outlived its scorer cannot keep the output locked. Call after
    :func:`writable_file`: the folder must exist."""
    lock = lock_path(out)
    key = os.path.realpath(lock)
    with _HELD_GUARD:  # record locks do not exclude their own process: this does
        if key in _HELD:
            raise OutputError(
                f"another {command} is writing {out} (pid {os.getpid()}, this process): wait "
                "for it to finish or choose another --out"
            )
        _HELD.add(key)
    try:
        with _locked(lock, out, command):
            yield
    finally:
        with _HELD_GUARD:
            _HELD.discard(key)


@contextlib.contextmanager
def _locked(lock: Path, out: Path, command: str) -> Iterator[None]:
    """The record lock of :func:`exclusive_output` on ``lock``, held while the body runs."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot create the lock file {lock}: {_why(exc)}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise OutputError(f"cannot lock {lock}: {_why(exc)}") from None
            pid = _holder(fd)
            os.close(fd)
            raise OutputError(
                f"another {command} is writing {out} (pid {pid}): wait for it to finish or "
                "choose another --out"
            ) from None
        # The holder before us may have removed the file between our open and our lock:
        # only a lock on the file that is there now counts.
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)  # before the release: a run that opened it retries
        os.close(fd)
