"""The collecting loader (:func:`cxr_fast.data.loaders.make_scoring_loader`): batches that
never lose a file. Decodable images become tensors, the rest error entries of the same
:class:`Batch`.

How one bad file is kept from failing a batch:

- The PIL path decodes each file on its own (in DataLoader workers), so a bad file is just an
  error entry beside the good ones of its batch.
- The DALI path reads the headers (:mod:`cxr_fast.data.headers`; cheap: no pixels; in a
  thread pool; group by group, :data:`HEADER_GROUPS`, the next group's while the current one
  decodes) and gives DALI only files whose header says JPEG or 8-bit grey or RGB PNG (the rule
  training's loader follows) of at least the PIL path's minimum size, and whose end marker is
  there (a truncated file goes to PIL before any pipeline sees it); DICOMs whose frames DALI
  decodes go to their own pipeline, and other PNGs, DICOMs and anything unreadable through
  the PIL path. A file that passes these checks but fails to decode (corrupt data) makes DALI
  abandon the whole pipeline, so that batch's files are decoded one by one with PIL (the bad
  one becomes an error row, the others are scored) and a new pipeline continues with the
  rest of its group.
- The nvJPEG path (torchvision's ``decode_jpeg``, :mod:`cxr_fast.data.nvjpeg`) takes the same
  header-checked JPEGs as DALI, a batch per call; a batch that fails is decoded by PIL file by
  file, and the next batch is decoded as usual.
- Only a decode error is treated that way: DALI names the sample it failed to decode, or PIL
  finds a bad file in the failed batch. Any other pipeline failure (out of memory, a broken
  CUDA or DALI installation) is not one file's fault: the run switches to the PIL loader for
  everything left, once, with a warning, and :class:`LoaderUse` records the switch so the
  output's metadata names the loader that actually decoded the images.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import torch
from torch.utils.data import DataLoader, Dataset

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import Batch, labels_tensor, stack_gray
from cxr_fast.data.dali_dicom import DicomPlan, dicom_dali_batches, route
from cxr_fast.data.dali_pipeline import DaliLoader
from cxr_fast.data.discover import Record
from cxr_fast.data.file_item import FileItem, read_item
from cxr_fast.data.filecheck import is_jpeg_file
from cxr_fast.data.headers import dali_takes, read_headers
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.nvjpeg import decode_batch, read_ahead
from cxr_fast.data.workers import scoring_worker
from cxr_fast.messages import to_stderr

# How DALI reports an undecodable sample ("Failed to decode sample #3 : /a/b.jpeg").
_DECODE_ERROR_MARK = "Failed to decode sample"


@dataclass
class LoaderUse:
    """The loader that is decoding a run's images, and why it changed (None: it did not)."""

    name: str
    fallback: str | None = None


class CollectingLoader:
    """Iterable of :class:`Batch` (with ``sizes``, ``errors``, ``skipped`` and ``info``) over
    ``spec.records[positions]`` (default: ``spec``'s shard), in file order, ``x`` on
    ``spec.device``; ``backend`` (``dali``, ``nvjpeg`` or ``torch``) decodes.

    Built by :func:`cxr_fast.data.loaders.make_scoring_loader`; ``use`` names the backend that
    is decoding (it changes to ``torch`` if a DALI pipeline fails, see the module docstring) and
    ``skipped`` lists (path, reason) of the files that could not be decoded so far, as
    :attr:`cxr_fast.data.torch_loader.TorchLoader.skipped` does. DICOM views in ``skip_views``
    are skipped; ``decoded``: files of the first positions already read, in order, batched
    first; ``keep_workers``: the PIL path's worker processes live on between passes.
    """

    def __init__(
        self,
        spec: LoaderSpec,
        *,
        backend: str,
        positions: Sequence[int] | None = None,
        skip_views: Sequence[str] = (),
        decoded: Sequence[FileItem] = (),
        keep_workers: bool = False,
    ) -> None:
        self.spec, self.records, self.contract = spec, spec.records, spec.contract
        # A loader iterated every epoch (validation) keeps its PIL worker processes.
        self.keep_workers, self._pil = keep_workers, None
        self.positions = spec.positions() if positions is None else list(positions)
        self.device = spec.device
        self.skip_views = tuple(skip_views)
        self.use = LoaderUse(backend)
        self.skipped: list[tuple[str, str]] = []
        # Files read before the loader existed (the scorer's head start): the first positions.
        self.decoded = list(decoded)
        if [item.position for item in self.decoded] != self.positions[: len(self.decoded)]:
            raise ValueError("decoded files must be the loader's first positions, in order")

    def __iter__(self) -> Iterator[Batch]:
        rest = self.positions[len(self.decoded) :]
        if self.use.name == "dali":
            batches = dali_batches(self.spec, rest, use=self.use, skip_views=self.skip_views)
        elif self.use.name == "nvjpeg":
            batches = nvjpeg_batches(self.spec, rest, use=self.use, skip_views=self.skip_views)
        elif self.keep_workers and rest:  # the same worker processes every pass
            if self._pil is None:
                self._pil = pil_loader(
                    self.spec, rest, skip_views=self.skip_views, keep_workers=True
                )
            batches = iter(self._pil)
        else:  # its workers start decoding now, while the decoded files are scored
            batches = pil_batches(self.spec, rest, skip_views=self.skip_views)
        size = self.spec.batch_size
        ready = (
            collate(self.decoded[i : i + size], self.contract, torch.float32)
            for i in range(0, len(self.decoded), size)
        )
        for batch in itertools.chain(ready, batches):
            self.skipped += [(self.records[p].path, reason) for p, reason in batch.errors]
            if batch.x is not None and batch.x.device != self.device:
                batch = batch._replace(x=batch.x.to(self.device, non_blocking=True))
            yield batch


class _Files(Dataset):
    def __init__(
        self, records: Sequence[Record], positions: Sequence[int], contract, skip_views=()
    ) -> None:
        self.paths = [records[p].path for p in positions]
        self.labels = [records[p].label for p in positions]
        self.positions, self.contract = list(positions), contract
        self.skip_views = frozenset(skip_views)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> FileItem:
        return read_item(
            self.paths[i], self.positions[i], self.labels[i], self.contract, self.skip_views
        )


def _batch(
    x: torch.Tensor | None,
    index: Sequence[int],
    labels: Sequence[int | None],
    sizes: Sequence[tuple[int, int]],
    **rest,
) -> Batch:
    """A :class:`Batch` from record positions and labels given as lists."""
    index_tensor = torch.tensor(list(index), dtype=torch.int64)
    return Batch(x=x, y=labels_tensor(list(labels)), index=index_tensor, sizes=list(sizes), **rest)


def collate(items: list[FileItem], contract: PreprocessContract, dtype: torch.dtype) -> Batch:
    """One :class:`Batch` of read files: the decoded ones stacked and normalised, the rest its
    error and skipped entries."""
    good = [item for item in items if item.error is None]
    x = stack_gray([g.pixels for g in good], contract, dtype) if good else None
    return _batch(
        x,
        [g.position for g in good],
        [g.label for g in good],
        [g.size for g in good],
        errors=[(i.position, i.error) for i in items if i.error is not None and not i.skipped],
        skipped=[(i.position, i.error) for i in items if i.skipped],
        info={i.position: i.info for i in items if i.info},
    )


def pil_batches(
    spec: LoaderSpec, positions: Sequence[int], *, skip_views: Sequence[str] = ()
) -> Iterator[Batch]:
    """Batches of ``spec.records[positions]`` decoded by PIL in ``spec.workers`` processes
    (normalised there too), on the CPU. The workers start when this is called, not at the
    first ``next()``."""
    return iter(pil_loader(spec, positions, skip_views=skip_views)) if positions else iter(())


def pil_loader(
    spec: LoaderSpec,
    positions: Sequence[int],
    *,
    skip_views: Sequence[str] = (),
    keep_workers: bool = False,
) -> DataLoader:
    """The DataLoader of :func:`pil_batches`; with ``keep_workers`` its worker processes live
    on between passes (until it is dropped)."""
    workers, contract = spec.workers, spec.contract
    return DataLoader(
        _Files(spec.records, positions, contract, skip_views),
        batch_size=spec.batch_size,
        num_workers=workers,
        # Workers that die with this process: a kill -9 leaves no decoder behind.
        worker_init_fn=functools.partial(scoring_worker, parent=os.getpid()),
        collate_fn=functools.partial(collate, contract=contract, dtype=torch.float32),
        prefetch_factor=4 if workers else None,
        # Its own generator: the seed an iterator draws must not move the global one, which
        # dropout and mixup read when scoring runs between training epochs (validation).
        generator=torch.Generator(),
        persistent_workers=keep_workers and workers > 0,
    )


# Files whose headers are read (and DICOMs routed) before their DALI pipeline starts: the first
# group small, so the GPU starts early; later ones larger, so the archive takes few pipelines
# (each builds its thread pool, decoder state and buffers). The next group's headers are read
# while the current one decodes.
HEADER_GROUPS = (512, 4096, 32768)


@dataclass
class _Routed:
    """One group of files by the path that decodes them."""

    positions: list[int]
    images: list[int]  # header-checked JPEGs and 8-bit PNGs: DALI
    sizes: dict[int, tuple[int, int]]  # their original sizes
    dicoms: dict[int, DicomPlan]  # DICOM frames DALI decodes
    others: list[int]  # the PIL (and pydicom) path


def _groups(positions: Sequence[int]) -> Iterator[list[int]]:
    start, sizes = 0, iter(HEADER_GROUPS)
    size = next(sizes)
    while start < len(positions):
        yield list(positions[start : start + size])
        start += size
        size = next(sizes, size)


def _route_group(spec: LoaderSpec, positions: list[int], skip_views: Sequence[str]) -> _Routed:
    images, sizes, others = split_by_header(spec, positions)
    device, _ = spec.dali_device()
    # DICOMs whose frames DALI decodes on this device skip pydicom's decoding (dali_dicom.py).
    dicoms, others = route(
        {p: spec.records[p].path for p in others}, device, skip_views, workers=spec.workers
    )
    return _Routed(positions, images, sizes, dicoms, others)


def _ahead(items: list, work: Callable) -> Iterator:
    """``work(item)`` for each item, in order; the next one's in a thread while the caller
    uses the current one."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxr-route") as pool:
        pending = pool.submit(work, items[0])
        for item in items[1:]:
            current = pending.result()
            pending = pool.submit(work, item)
            yield current
        yield pending.result()


def dali_batches(
    spec: LoaderSpec,
    positions: Sequence[int],
    *,
    use: LoaderUse | None = None,
    skip_views: Sequence[str] = (),
) -> Iterator[Batch]:
    """Batches of ``spec.records[positions]`` through DALI for header-checked JPEGs and 8-bit
    PNGs, PIL for everything else; group by group (:data:`HEADER_GROUPS`). ``use`` (updated in
    place) says whether a pipeline failure switched the run to PIL."""
    use = use if use is not None else LoaderUse("dali")
    route_group = functools.partial(_route_group, spec, skip_views=skip_views)
    for group in _ahead(list(_groups(positions)), route_group):
        if use.name != "dali":  # a pipeline failure switched the run to PIL
            yield from pil_batches(spec, group.positions, skip_views=skip_views)
            continue
        yield from pil_batches(spec, group.others, skip_views=skip_views)
        yield from _dicom_batches(spec, group.dicoms, skip_views)
        yield from _dali_jpeg_batches(spec, group.images, group.sizes, use)


def _dicom_batches(
    spec: LoaderSpec, dicoms: dict[int, DicomPlan], skip_views: Sequence[str]
) -> Iterator[Batch]:
    """The DICOMs whose frames DALI decodes; a frame it cannot decode goes to pydicom's path."""
    records = spec.records
    device, device_id = spec.dali_device()
    in_process = replace(spec, workers=0)
    for out in dicom_dali_batches(
        {p: records[p].path for p in dicoms},
        dicoms,
        spec.contract,
        batch_size=spec.batch_size,
        device=device,
        device_id=device_id,
        num_threads=max(1, spec.workers),
    ):
        if out.x is None:  # undecodable in DALI: pydicom's path says why
            yield from pil_batches(in_process, out.positions, skip_views=skip_views)
            continue
        labels = [records[p].label for p in out.positions]
        originals = [dicoms[p].size for p in out.positions]
        info = {p: dicoms[p].info for p in out.positions}
        yield _batch(out.x, out.positions, labels, originals, info=info)


def split_by_header(
    spec: LoaderSpec, positions: Sequence[int], *, jpeg_only: bool = False
) -> tuple[list[int], dict[int, tuple[int, int]], list[int]]:
    """(files a GPU decoder takes, their original sizes, the other positions) of
    ``spec.records[positions]``, by each file's header (:func:`cxr_fast.data.headers.dali_takes`:
    the one rule of the DALI and nvJPEG paths; ``jpeg_only``: JPEGs alone, nvJPEG's share),
    headers read in ``spec.workers`` threads."""
    records = spec.records
    sizes: dict[int, tuple[int, int]] = {}
    others: list[int] = []
    headers = read_headers([records[p].path for p in positions], spec.workers)
    for position, (size, decodes) in zip(positions, headers, strict=True):
        takes = dali_takes(size, decodes)
        if takes and (not jpeg_only or is_jpeg_file(records[position].path)):
            sizes[position] = size
        else:
            others.append(position)
    return [p for p in positions if p in sizes], sizes, others


def nvjpeg_batches(
    spec: LoaderSpec,
    positions: Sequence[int],
    *,
    use: LoaderUse | None = None,
    skip_views: Sequence[str] = (),
) -> Iterator[Batch]:
    """Batches of ``spec.records[positions]`` through torchvision's ``decode_jpeg`` (nvJPEG on
    CUDA) for header-checked JPEGs, PIL for everything else (DICOM included). ``use`` (updated
    in place) says whether a failure that was no file's fault switched the run to PIL."""
    use = use if use is not None else LoaderUse("nvjpeg")
    split = functools.partial(split_by_header, spec, jpeg_only=True)
    for group, (jpegs, sizes, others) in zip(
        _groups(positions), _ahead(list(_groups(positions)), split), strict=True
    ):
        if use.name != "nvjpeg":  # a failure that was no file's switched the run to PIL
            yield from pil_batches(spec, group, skip_views=skip_views)
            continue
        yield from pil_batches(spec, others, skip_views=skip_views)
        yield from _nvjpeg_jpeg_batches(spec, jpegs, sizes, use)


def _nvjpeg_jpeg_batches(
    spec: LoaderSpec, jpegs: list[int], sizes: dict[int, tuple[int, int]], use: LoaderUse
) -> Iterator[Batch]:
    """The header-checked JPEGs, a batch per ``decode_jpeg`` call, the next batch's bytes read
    in threads meanwhile. A batch that fails goes to PIL file by file; when PIL finds no bad
    file in it, the failure was not a file's (a broken CUDA, out of memory) and PIL decodes
    the rest."""
    records, size = spec.records, spec.batch_size
    chunks = [jpegs[i : i + size] for i in range(0, len(jpegs), size)]
    paths = [[records[p].path for p in chunk] for chunk in chunks]
    for k, (chunk, reads) in enumerate(zip(chunks, read_ahead(paths, spec.workers), strict=True)):
        try:
            x = decode_batch([f.result() for f in reads], spec.contract, spec.device)
        except (RuntimeError, OSError, ValueError) as exc:
            decoded = list(pil_batches(replace(spec, workers=0), chunk))
            yield from decoded
            if any(b.errors for b in decoded):
                continue
            use.name = "torch"
            use.fallback = f"nvJPEG decoding failed ({_first_line(exc)}); PIL decoded the rest"
            to_stderr(f"cxr-fast: {use.fallback}")
            yield from pil_batches(spec, [p for c in chunks[k + 1 :] for p in c])
            return
        labels = [records[p].label for p in chunk]
        yield _batch(x, chunk, labels, [sizes[p] for p in chunk])


def _dali_jpeg_batches(
    spec: LoaderSpec, jpegs: list[int], sizes: dict[int, tuple[int, int]], use: LoaderUse
) -> Iterator[Batch]:
    """The header-checked JPEGs through DALI pipelines: a decode error sends the failed batch
    to PIL and a new pipeline goes on after it; any other failure sends the rest to PIL."""
    records, batch_size = spec.records, spec.batch_size
    start = 0
    while start < len(jpegs):
        segment = jpegs[start:]
        done = 0
        try:
            # Inside the try: the iterator decodes its first batch while it is built.
            part = replace(spec, records=[records[p] for p in segment], shard_id=0, num_shards=1)
            for batch in DaliLoader(part):
                local = batch.index.tolist()
                index = [segment[i] for i in local]
                done += len(local)
                labels = [records[p].label for p in index]
                yield _batch(batch.x, index, labels, [sizes[p] for p in index])
            start = len(jpegs)
        except RuntimeError as exc:
            # Eval order is file order, so the failed batch is the next batch_size files.
            failed = segment[done : done + batch_size]
            decoded = list(pil_batches(replace(spec, workers=0), failed))
            yield from decoded
            start += done + len(failed)
            if _is_decode_error(exc) or any(b.errors for b in decoded):
                continue  # one file's fault: a new pipeline goes on with the files after it
            use.name = "torch"
            use.fallback = f"DALI pipeline failed ({_first_line(exc)}); PIL decoded the rest"
            to_stderr(f"cxr-fast: {use.fallback}")
            yield from pil_batches(spec, jpegs[start:])
            return


def _is_decode_error(exc: BaseException) -> bool:
    """DALI names the sample it could not decode; other failures are the pipeline's own."""
    return _DECODE_ERROR_MARK in str(exc)


def _first_line(exc: BaseException) -> str:
    """The telling line of a DALI error (its text repeats the pipeline definition)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if "rror" in line and "Critical error" not in line]
    return (telling or lines or [type(exc).__name__])[-1][:200]
