"""File headers read in a thread pool: which files the collecting loader's DALI path may take,
and their original sizes, before the first GPU batch."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from cxr_fast.data.decode import MIN_IMAGE_SIDE
from cxr_fast.data.filecheck import special_file_reason


def header_size(path: str) -> tuple[tuple[int, int] | None, bool]:
    """((width, height), is_jpeg) from the file header alone; (None, False) when unreadable
    or not a regular file (opening a FIFO would block)."""
    if special_file_reason(path) is not None:
        return None, False
    try:
        with Image.open(path) as image:
            return image.size, image.format == "JPEG"
    except Exception:  # the PIL path will name the problem
        return None, False


def dali_takes(size: tuple[int, int] | None, is_jpeg: bool) -> bool:
    """True for a JPEG the PIL path would also accept by size: DALI decodes films under
    MIN_IMAGE_SIDE that PIL refuses, and GPU and CPU scoring must give the same rows."""
    return is_jpeg and size is not None and min(size) >= MIN_IMAGE_SIDE


def read_headers(paths: Sequence[str], workers: int) -> list[tuple[tuple[int, int] | None, bool]]:
    """:func:`header_size` of every path, in order, ``max(1, workers)`` files at a time.

    One at a time, an archive on network storage spends seconds to minutes in open() latency
    before the GPU sees a batch; threads suffice, the work is waiting on the file system.
    """
    if workers <= 1 or len(paths) < 2:
        return [header_size(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxr-header") as pool:
        return list(pool.map(header_size, paths, chunksize=64))
