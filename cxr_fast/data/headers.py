"""File headers read in a thread pool: which files the collecting loader's DALI path may take,
and their original sizes, before DALI decodes them."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from cxr_fast.data.decode import MIN_IMAGE_SIDE
from cxr_fast.data.filecheck import HEAD_BYTES, dali_decodes_head, ends_whole, special_file_reason


def header_size(path: str) -> tuple[tuple[int, int] | None, bool]:
    """((width, height), whether DALI decodes it as PIL does) from the file's header and its
    last bytes alone: a JPEG, or an 8-bit grey or RGB PNG (the rule training's loader follows,
    :func:`cxr_fast.data.filecheck.dali_decodes`), with its end marker (a truncated file would
    stop a DALI pipeline). (None, False) when unreadable or not a regular file (opening a
    FIFO would block)."""
    if special_file_reason(path) is not None:
        return None, False
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
            handle.seek(0)
            with Image.open(handle) as image:
                size = image.size
            return size, dali_decodes_head(head) and ends_whole(handle, head)
    except Exception:  # the PIL path will name the problem
        return None, False


def dali_takes(size: tuple[int, int] | None, dali_decodes: bool) -> bool:
    """True for a file DALI decodes (see :func:`header_size`) that the PIL path would also
    accept by size: DALI decodes films under MIN_IMAGE_SIDE that PIL refuses, and GPU and CPU
    scoring must give the same rows."""
    return dali_decodes and size is not None and min(size) >= MIN_IMAGE_SIDE


def read_headers(paths: Sequence[str], workers: int) -> list[tuple[tuple[int, int] | None, bool]]:
    """:func:`header_size` of every path, in order, ``max(1, workers)`` files at a time.

    One at a time, an archive on network storage spends seconds to minutes in open() latency
    before the GPU sees a batch; threads suffice, the work is waiting on the file system.
    """
    if workers <= 1 or len(paths) < 2:
        return [header_size(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxr-header") as pool:
        return list(pool.map(header_size, paths, chunksize=64))
