"""Check a set of images cheaply before a long job depends on every one of them.

Each file gets the header read and a draft decode (JPEGs at 1/8 scale: every byte of the
entropy-coded stream is still read, so truncated data fails here), in parallel threads (PIL
releases the GIL while decoding). The result is cached under a key made of every file's path,
size and modification time, so running again on unchanged data costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cxr_fast.data.decode import ImageReadError, probe
from cxr_fast.data.discover import Record, display_path
from cxr_fast.text import plural

CACHE_ENV = "CXR_FAST_CACHE"
CACHE_VERSION = 1


@dataclass(frozen=True)
class BadFile:
    """A file that failed the check, and why."""

    path: str
    reason: str


def cache_dir() -> Path:
    """``$CXR_FAST_CACHE/filecheck``, else ``~/.cache/cxr-fast/filecheck``."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cxr-fast"
    )
    return Path(base) / "filecheck"


def data_key(paths: Sequence[str]) -> str:
    """A fingerprint of the files' identity and content version: path, size, mtime."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for path in sorted(paths):
        name = os.fsencode(path)  # the name's bytes, also where they are not UTF-8
        try:
            info = os.stat(path)
            digest.update(name + f"\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(name + b"\0missing\n")
    return digest.hexdigest()


def _check(path: str) -> BadFile | None:
    try:
        probe(path)
    except ImageReadError as exc:
        return BadFile(path, exc.reason)
    return None


def _read_cache(key: str) -> list[BadFile] | None:
    try:
        data = json.loads((cache_dir() / f"{key}.json").read_text())
        return [BadFile(**item) for item in data["bad"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(key: str, bad: list[BadFile]) -> None:
    """Best effort: an unwritable cache only costs the next run the check again."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"bad": [vars(b) for b in bad]}))
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass


def find_bad_files(records: Sequence[Record], workers: int | None = None) -> list[BadFile]:
    """The records' files that cannot be decoded, in path order (cached per data key)."""
    paths = sorted({r.path for r in records})
    key = data_key(paths)
    cached = _read_cache(key)
    if cached is not None:
        return cached
    threads = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        bad = [b for b in pool.map(_check, paths) if b is not None]
    _write_cache(key, bad)
    return bad


def reasons(bad: Sequence[BadFile], shown: int = 3) -> str:
    """The first ``shown`` bad files with their reasons, and how many more there are."""
    first = "; ".join(f"{display_path(b.path)}: {b.reason}" for b in bad[:shown])
    return first + (f"; and {len(bad) - shown:,} more" if len(bad) > shown else "")


def describe(bad: Sequence[BadFile], total: int, shown: int = 3) -> str:
    """One line: how many of ``total`` files are bad, and the first few with their reasons."""
    return f"{len(bad):,} of {plural(total, 'image')} cannot be read ({reasons(bad, shown)})"


def skipped_line(bad: Sequence[BadFile], shown: int = 3) -> str:
    """``2 unreadable images (a.jpeg: ...; b.jpeg: ...)``: what --skip-bad trains without."""
    return f"{plural(len(bad), 'unreadable image')} ({reasons(bad, shown)})"
