"""Head start: decode an archive's first films while `cxr-fast score` is still starting.

Before its DataLoader workers decode anything, the scorer imports torch, loads the model and
times it on a few films: about 1.5 s on one core, while the other cores of a small CPU idle
(docs/benchmarks.md). The head start forks decoding processes *before* torch is imported
(a fork of a small process without threads is cheap and safe), which read the archive's
films in order, with the contract named in the model's export sidecar, until the scorer is
ready. The scorer then takes the contiguous prefix they finished and its loader decodes the
rest (:class:`cxr_fast.data.collecting_loader.CollectingLoader`, ``decoded``).

Only a plain run gets one (no --resume, --shard or torchrun, a CPU scorer, worker processes,
fork available, a sidecar naming the contract), and the scorer uses what it decoded only when
its model's contract is that contract and the files are its first positions: otherwise the
decoded films are dropped, which costs the time saved and nothing else. This module imports
neither torch nor the decoders (its processes import those themselves).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Imported for its side effect, before the fork: the decode budget its processes share with the
# scorer's DataLoader workers.
import cxr_fast.data.decode_budget  # noqa: F401
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import Discovery, Record, scan
from cxr_fast.export.common import EXPORT_DIR, sidecar_path

if TYPE_CHECKING:
    from cxr_fast.data.file_item import FileItem

# Set to 0 to score without a head start (benchmarks compare both).
ENV_SWITCH = "CXR_FAST_HEAD_START"
# Decoded films held at most (all processes together), in bytes of model pixels: the scorer
# starts in seconds, so this only bounds a many-core machine.
MAX_BYTES = 256 * 2**20
# How long ``take`` waits for a process to finish the film it is decoding.
STOP_TIMEOUT_S = 30.0


def contract_hint(model: Path) -> PreprocessContract | None:
    """The preprocessing contract an export sidecar names for ``model`` (a run folder: any
    export in ``RUN/export/``; an exported file: its own sidecar), read without torch; None
    when there is none or it cannot be read. A hint: the scorer checks it against the model
    it loads."""
    model = Path(model)
    sides = sorted((model / EXPORT_DIR).glob("*.json")) if model.is_dir() else [sidecar_path(model)]
    for side in sides:
        try:
            contract = json.loads(side.read_text())["contract"]
            return PreprocessContract.from_dict(contract)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _decode_ahead(
    paths: Sequence[str],
    labels: Sequence[int | None],
    contract: PreprocessContract,
    skip_views: tuple[str, ...],
    start: int,
    step: int,
    limit: int,
    stop,
    results,
    parent: int,
) -> None:
    """One head-start process: files ``start, start + step, ...`` until stopped or ``limit``
    are done, each put on ``results``; then None. Dies with ``parent`` (the scorer's pid)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scorer's to handle
    from cxr_fast.data.workers import die_with_parent, steady_memory_worker

    # First: a scorer killed now (kill -9 while it starts) must not leave this process behind,
    # blocked for ever on flushing ``results`` to a pipe nobody reads.
    die_with_parent(parent)
    from cxr_fast.data.file_item import read_item

    steady_memory_worker(start)
    for i in range(start, len(paths), step)[:limit]:
        if stop.is_set() or os.getppid() != parent:  # stopped, or the scorer was killed
            break
        results.put(read_item(paths[i], i, labels[i], contract, skip_views))
    results.put(None)


class HeadStart:
    """Decoding processes over ``records`` (the archive's files in discovery order), started
    at construction; :meth:`take` stops them and returns what they finished."""

    def __init__(
        self,
        records: list[Record],
        contract: PreprocessContract,
        processes: int,
        skip_views: Sequence[str] = (),
        discovery: Discovery | None = None,
    ) -> None:
        self.records, self.contract = records, contract
        self.discovery = discovery  # the walk ``records`` came from, for the scorer's counts
        self.started = time.perf_counter()  # when decoding began (the scorer's rate counts it)
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._results = context.Queue()
        limit = max(1, MAX_BYTES // (contract.image_size**2 * processes))
        paths = [r.path for r in records]
        queues = (self._stop, self._results)
        labels = [r.label for r in records]
        here = os.getpid()
        self._processes = [
            context.Process(
                target=_decode_ahead,
                args=(
                    *(paths, labels, contract, tuple(skip_views)),
                    *(i, processes, limit, *queues, here),
                ),
                daemon=True,
                name=f"cxr-fast-head-start-{i}",
            )
            for i in range(processes)
        ]
        for process in self._processes:
            process.start()
        self._taken: list[FileItem] | None = None

    def take(self) -> list[FileItem]:
        """Stop the processes and return the files decoded so far from the first one on, in
        order (a file decoded after a gap is dropped). Once; later calls return []."""
        if self._taken is not None:
            return []
        self._stop.set()
        items: dict[int, FileItem] = {}
        finished = 0
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while finished < len(self._processes) and time.monotonic() < deadline:
            try:
                item = self._results.get(timeout=0.1)
            except queue.Empty:
                if not any(process.is_alive() for process in self._processes):
                    break  # one died without its end mark (a crash): keep what came
                continue  # still decoding; a file slower than the deadline is the loader's
            if item is None:
                finished += 1
            else:
                items[item.position] = item
        self._end(terminate=finished < len(self._processes))
        prefix: list[FileItem] = []
        while len(prefix) in items:
            prefix.append(items[len(prefix)])
        self._taken = prefix
        return prefix

    @property
    def taken(self) -> int:
        """How many decoded films :meth:`take` handed over (0 before it is called)."""
        return len(self._taken or [])

    def close(self) -> None:
        """Stop the processes at once unless :meth:`take` did (what they hold is dropped)."""
        if self._taken is None:
            self._taken = []
            self._end(terminate=True)

    def _end(self, terminate: bool) -> None:
        self._stop.set()
        for process in self._processes:
            if terminate and process.is_alive():
                process.terminate()
            process.join()
        self._results.close()


def begin(
    archive: Path | None,
    model: Path,
    *,
    device: str,
    workers: int,
    resume: bool,
    shard: tuple[int, int] | None,
    skip_views: Sequence[str] = (),
    env: dict[str, str] | None = None,
    outputs: Sequence[Path] = (),
) -> HeadStart | None:
    """A head start for ``cxr-fast score ARCHIVE --model MODEL`` with these options, or None
    where none can help or be used (see the module docstring); ``outputs``: the run's own
    outputs (:func:`cxr_fast.scoring.own_outputs.own_outputs`), left out as the scorer does.
    Never raises: a mistake in the arguments is left for the scorer to report."""
    env = os.environ if env is None else env
    if archive is None or env.get(ENV_SWITCH, "1") == "0" or resume or shard or "WORLD_SIZE" in env:
        return None
    if "torch" in sys.modules:  # too late to gain anything, and forking now copies its threads
        return None
    if device not in ("auto", "cpu") or workers < 1:
        return None
    if device == "auto" and Path("/dev/nvidiactl").exists():
        return None  # a CUDA host decodes on its GPU
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    contract = contract_hint(model)
    if contract is None:
        return None
    try:
        found = scan(Path(archive).resolve(), exclude=outputs)
    except Exception:  # the scorer reports it in its own words
        return None
    records = found.records
    if not records:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2:
        return None  # no core idles while the scorer starts
    # The scorer's own start-up keeps one core busy; the others decode.
    processes = min(workers, cores - 1)
    try:
        return HeadStart(records, contract, processes, skip_views, found)
    except OSError:  # no processes to spare (a limit): score without a head start
        return None
