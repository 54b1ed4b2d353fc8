"""Building SRs, in listen's own process or in worker processes (``--report-workers``):
highdicom is pure Python, so in listen's process the reports of a batch take turns with
receiving films and sending answers for one interpreter. Workers are spawned (never forked from
a process holding PyTorch's threads) and import the SR modules only. On the 2-core development
host they were slower than none (docs/hospital.md), hence the default of 0.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from io import BytesIO

import pydicom

from cxr_fast.network.sr_template import templated_report


def report_file(
    source: pydicom.Dataset, row: Mapping[str, object], identity: Mapping[str, object]
) -> tuple[str, bytes] | str:
    """(SOP Instance UID, DICOM file bytes) of the SR answering ``source`` with ``row`` (built
    from the model's template: highdicom's report, faster), or why it cannot be made (a header
    highdicom refuses)."""
    try:
        report = templated_report(source, row, identity)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        return f"no SR: {type(exc).__name__}: {exc}"
    return str(report.SOPInstanceUID), file_bytes(report)


def file_bytes(dataset: pydicom.Dataset) -> bytes:
    """A dataset with its file meta (an SR, a capture) as a DICOM file's bytes."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _ready() -> None:
    """Nothing: submitted once per worker so that it starts at once."""


class ReportPool:
    """``build(jobs)``: the SR file of each (source, row) job, in order; in ``workers``
    processes, or in this one for 0."""

    def __init__(self, identity: Mapping[str, object], workers: int):
        self.identity = dict(identity)
        self._pool: Executor | None = None
        if workers > 0:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, mp_context=context)
            # Started now (they import highdicom), not on the first batch.
            for _ in range(workers):
                self._pool.submit(_ready)

    def build(
        self, jobs: Sequence[tuple[pydicom.Dataset, Mapping[str, object]]]
    ) -> list[tuple[str, bytes] | str]:
        if self._pool is None or len(jobs) < 2:
            return [report_file(source, row, self.identity) for source, row in jobs]
        sources = [source for source, _ in jobs]
        rows = [dict(row) for _, row in jobs]
        try:
            return list(self._pool.map(report_file, sources, rows, [self.identity] * len(jobs)))
        except BrokenProcessPool:  # a worker died (killed, out of memory): carry on without
            self.close()
            return self.build(jobs)

    def close(self) -> None:
        """Stop the workers (the SRs of a batch in flight are built again on restart)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
