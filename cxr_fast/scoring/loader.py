"""Scoring batches that never lose a file: decodable images become tensors, the rest errors.

How one bad file is kept from failing a batch:

- The PIL path decodes each file on its own (in DataLoader workers), so a bad file is just an
  error entry beside the good ones of its batch.
- The DALI path first reads every header (cheap: no pixels; in a thread pool) and gives DALI
  only files whose header says JPEG of at least the PIL path's minimum size; PNG, DICOM and
  anything unreadable go through the PIL path. A JPEG that passes the header check but fails to
  decode (truncated data) makes DALI abandon the whole pipeline, so that batch's files are
  decoded one by one with PIL (the bad one becomes an error row, the others are scored) and a
  new pipeline continues with the files after them.
- Only a decode error is treated that way: DALI names the sample it failed to decode, or PIL
  finds a bad file in the failed batch. Any other pipeline failure (out of memory, a broken
  CUDA or DALI installation) is not one file's fault: the run switches to the PIL loader for
  everything left, once, with a warning, and :class:`LoaderUse` records the switch so the
  output's metadata names the loader that actually decoded the images.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import stack_gray
from cxr_fast.data.dali_dicom import dicom_dali_batches, route
from cxr_fast.data.dali_pipeline import DaliLoader
from cxr_fast.data.decode import ImageReadError, ImageSkipped, read_image
from cxr_fast.data.discover import Record
from cxr_fast.data.workers import steady_memory_worker
from cxr_fast.scoring.headers import dali_takes, read_headers

log = logging.getLogger(__name__)
# How DALI reports an undecodable sample ("Failed to decode sample #3 : /a/b.jpeg").
_DECODE_ERROR_MARK = "Failed to decode sample"


@dataclass
class LoaderUse:
    """The loader that is decoding a run's images, and why it changed (None: it did not)."""

    name: str
    fallback: str | None = None


@dataclass
class ScoreBatch:
    """``x`` [M,1,S,S] for the decodable files, ``index`` their record positions and ``sizes``
    their original (width, height); ``errors`` (record position, reason) for the others,
    ``skipped`` (position, reason) for files deliberately not scored; ``info``: position ->
    extra columns (DICOM identifiers, warnings) of any of them."""

    x: torch.Tensor | None
    index: list[int]
    sizes: list[tuple[int, int]]
    errors: list[tuple[int, str]]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    info: dict[int, dict] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index) + len(self.errors) + len(self.skipped)


class _Files(Dataset):
    def __init__(
        self, paths: Sequence[str], positions: Sequence[int], contract, skip_views=()
    ) -> None:
        self.paths, self.positions, self.contract = list(paths), list(positions), contract
        self.skip_views = frozenset(skip_views)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        """(position, pixels, size, error, info, skipped)"""
        position = self.positions[i]
        try:
            read = read_image(self.paths[i], self.contract, self.skip_views)
            return position, read.pixels, read.size, None, read.info, False
        except ImageReadError as exc:  # ImageSkipped included
            return position, None, None, exc.reason, exc.info, isinstance(exc, ImageSkipped)
        except Exception as exc:  # never let one file stop the run
            return position, None, None, f"{type(exc).__name__}: {exc}", {}, False


def _collate(items, contract: PreprocessContract, dtype: torch.dtype) -> ScoreBatch:
    good = [item for item in items if item[3] is None]
    x = None
    if good:
        x = stack_gray([g[1] for g in good], contract, dtype)
    return ScoreBatch(
        x=x,
        index=[g[0] for g in good],
        sizes=[g[2] for g in good],
        errors=[(item[0], item[3]) for item in items if item[3] is not None and not item[5]],
        skipped=[(item[0], item[3]) for item in items if item[5]],
        info={item[0]: item[4] for item in items if item[4]},
    )


def pil_batches(
    records: Sequence[Record],
    positions: Sequence[int],
    contract: PreprocessContract,
    *,
    batch_size: int,
    workers: int,
    skip_views: Sequence[str] = (),
) -> Iterator[ScoreBatch]:
    """Score batches decoded by PIL in ``workers`` processes (normalised there too)."""
    if not positions:
        return
    dataset = _Files([records[i].path for i in positions], positions, contract, skip_views)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=steady_memory_worker,
        collate_fn=functools.partial(_collate, contract=contract, dtype=torch.float32),
        prefetch_factor=4 if workers else None,
    )
    yield from loader


def dali_batches(
    records: Sequence[Record],
    positions: Sequence[int],
    contract: PreprocessContract,
    *,
    batch_size: int,
    workers: int,
    device: str,
    device_id: int = 0,
    use: LoaderUse | None = None,
    skip_views: Sequence[str] = (),
) -> Iterator[ScoreBatch]:
    """Score batches through DALI for header-checked JPEGs, PIL for everything else.
    ``use`` (updated in place) says whether a pipeline failure switched the run to PIL."""
    use = use if use is not None else LoaderUse("dali")
    sizes: dict[int, tuple[int, int]] = {}
    others: list[int] = []
    headers = read_headers([records[p].path for p in positions], workers)
    for position, (size, is_jpeg) in zip(positions, headers, strict=True):
        if dali_takes(size, is_jpeg):
            sizes[position] = size
        else:
            others.append(position)
    jpegs = [p for p in positions if p in sizes]
    # DICOMs whose frames DALI decodes on this device skip pydicom's decoding (dali_dicom.py).
    dicoms, others = route({p: records[p].path for p in others}, device, skip_views)
    pil = functools.partial(pil_batches, records, contract=contract, batch_size=batch_size)
    yield from pil(others, workers=workers, skip_views=skip_views)
    for out in dicom_dali_batches(
        {p: records[p].path for p in dicoms},
        dicoms,
        contract,
        batch_size=batch_size,
        device=device,
        device_id=device_id,
        num_threads=max(1, workers),
    ):
        if out.x is None:  # undecodable in DALI: pydicom's path says why
            yield from pil(out.positions, workers=0, skip_views=skip_views)
            continue
        info = {p: dicoms[p].info for p in out.positions}
        originals = [dicoms[p].size for p in out.positions]
        yield ScoreBatch(x=out.x, index=out.positions, sizes=originals, errors=[], info=info)
    start = 0
    while start < len(jpegs):
        segment = jpegs[start:]
        done = 0
        try:
            # Inside the try: the iterator decodes its first batch while it is built.
            loader = DaliLoader(
                [records[p] for p in segment],
                contract,
                batch_size=batch_size,
                device=device,
                device_id=device_id,
                num_threads=max(1, workers),
            )
            for batch in loader:
                local = batch.index.tolist()
                index = [segment[i] for i in local]
                done += len(local)
                yield ScoreBatch(x=batch.x, index=index, sizes=[sizes[p] for p in index], errors=[])
            start = len(jpegs)
        except RuntimeError as exc:
            # Eval order is file order, so the failed batch is the next batch_size files.
            failed = segment[done : done + batch_size]
            decoded = list(pil_batches(records, failed, contract, batch_size=batch_size, workers=0))
            yield from decoded
            start += done + len(failed)
            if _is_decode_error(exc) or any(b.errors for b in decoded):
                continue  # one file's fault: a new pipeline goes on with the files after it
            use.name = "torch"
            use.fallback = f"DALI pipeline failed ({_first_line(exc)}); PIL decoded the rest"
            log.warning("cxr-fast: %s", use.fallback)
            rest = jpegs[start:]
            yield from pil_batches(records, rest, contract, batch_size=batch_size, workers=workers)
            return


def _is_decode_error(exc: BaseException) -> bool:
    """DALI names the sample it could not decode; other failures are the pipeline's own."""
    return _DECODE_ERROR_MARK in str(exc)


def _first_line(exc: BaseException) -> str:
    """The telling line of a DALI error (its text repeats the pipeline definition)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if "rror" in line and "Critical error" not in line]
    return (telling or lines or [type(exc).__name__])[-1][:200]
