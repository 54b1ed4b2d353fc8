"""Answering spooled films in micro-batches: rows into the Parquet, SRs into the outbox.

The order makes a kill at any moment harmless: a batch's SRs are written to the outbox first,
then its rows (one durable chunk), and only then are its films moved out of incoming/. After a
kill, a film still in incoming/ whose row is already written is just moved; any other is scored
again, and its SR, whose UID is derived from the film and the model, replaces the queued one or
is not queued again once the PACS has it (spool.py).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pydicom
from pydicom.errors import InvalidDicomError

from cxr_fast.data.decode import ImageReadError
from cxr_fast.data.discover import Record
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.messages import Log
from cxr_fast.network.capture import cam_capture, cam_uids
from cxr_fast.network.spool import OUTBOX, Spool, received_ns
from cxr_fast.network.sr import MANUFACTURER
from cxr_fast.network.sr_file import file_bytes, report_file
from cxr_fast.scoring.model import ScoringModel
from cxr_fast.scoring.parquet_out import SCHEMA, STATUS_ERROR, STATUS_OK, ChunkedParquetWriter
from cxr_fast.scoring.row_info import STATUS_SKIPPED
from cxr_fast.scoring.rows import batch_rows

if TYPE_CHECKING:
    from cxr_fast.explain.explainer import Explainer

# score's columns, then who sent the film and when it arrived.
LISTEN_SCHEMA = SCHEMA.append(pa.field("calling_ae", pa.string())).append(
    pa.field("received_at", pa.timestamp("us", tz="UTC"))
)
# Decoding happens in this thread: worker processes would be started for every small batch.
_LOADER, _WORKERS = "torch", 0


class Answerer:
    """Scores spooled films with one loaded model and answers each (row, SR)."""

    def __init__(
        self,
        model: ScoringModel,
        identity: Mapping[str, object],
        spool: Spool,
        writer: ChunkedParquetWriter,
        batch_size: int,
        accept_ood: bool = False,
        log: Log | None = None,
        explainer: Explainer | None = None,
    ):
        self.model, self.identity, self.spool, self.writer = model, identity, spool, writer
        self.batch_size, self.accept_ood = batch_size, accept_ood
        self.log = log or (lambda _: None)
        self.explainer = explainer  # --cam: a Grad-CAM Secondary Capture beside each SR
        self.answered = 0
        # Set by whoever queues an SR (the sender waits on it).
        self.queued = threading.Event()

    def recover(self) -> int:
        """Move out of incoming/ the films whose rows were written before a kill; how many."""
        done = self.writer.done_paths()
        films = [f for f in self.spool.unanswered() if str(self.spool.answered_path(f)) in done]
        self.spool.mark_answered(films)
        return len(films)

    def answer(self, films: list[Path]) -> list[dict]:
        """Score ``films`` (paths in incoming/), queue their SRs, write their rows, move them
        to answered/; their rows."""
        records = [Record(str(film), None, None, "") for film in films]
        spec = LoaderSpec(
            records, self.model.contract, self.batch_size, _WORKERS, self.model.device
        )
        by_path: dict[str, dict] = {}
        for batch in make_scoring_loader(spec, _LOADER):
            for row in batch_rows(batch, records, self.model, self.accept_ood):
                by_path[row["path"]] = row
        completed = [self._complete(film, by_path[str(film)]) for film in films]
        self._queue_answers(films, completed)
        self.spool.sync(OUTBOX)  # the answers are durable before the rows that say so
        rows = [row for row, _ in completed]
        for row in rows:
            self.writer.add(row)
        self.writer.flush()
        self.spool.mark_answered(films)
        self.answered += len(films)
        return rows

    def _complete(self, film: Path, row: dict) -> tuple[dict, pydicom.Dataset | None]:
        """(the film's row completed: where it will lie, who sent it, when; its header, None
        when it gets no answer)."""
        try:
            header = pydicom.dcmread(film, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError) as exc:
            header = None
            row = {**row, "status": STATUS_ERROR, "error": f"not a DICOM file: {exc}"}
        calling = None if header is None else header.file_meta.get("SourceApplicationEntityTitle")
        row = {
            **row,
            "path": str(self.spool.answered_path(film)),
            "calling_ae": None if calling is None else str(calling).strip(),
            "received_at": dt.datetime.fromtimestamp(received_ns(film) / 1e9, dt.UTC),
        }
        if header is not None and header.get("Manufacturer") == MANUFACTURER:
            # cxr-fast's own answer, routed back by the PACS: never answered in turn.
            row = {**row, "status": STATUS_SKIPPED, "error": "an answer of cxr-fast's"}
            row |= {"prob_pneumonia": None, "pred": None}
        return row, None if row["status"] == STATUS_SKIPPED else header

    def _queue_answers(self, films: list[Path], completed: list[tuple[dict, Any]]) -> None:
        """Queue the SR (and with --cam the overlay) of every film that has a header; a film
        that gets none keeps its row, with why in its warnings."""
        pairs = zip(films, completed, strict=True)
        answered = [(film, row, header) for film, (row, header) in pairs if header is not None]
        built = [report_file(header, row, self.identity) for _, row, header in answered]
        for (film, row, header), result in zip(answered, built, strict=True):
            why = result if isinstance(result, str) else None
            if why is None and self.spool.put_outbox(*result, sync=False):
                self.queued.set()
            if why is None and self.explainer is not None and row["status"] == STATUS_OK:
                why = self._queue_cam(film, header)
            if why is not None:  # the row is kept; the film just gets no SR (or overlay)
                self.log(f"cxr-fast: {film.name}: {why}")
                warnings = row.get("warnings")
                row["warnings"] = f"{warnings}; {why}" if warnings else why

    def _queue_cam(self, film: Path, header: pydicom.Dataset) -> str | None:
        """Queue the film's Grad-CAM Secondary Capture; why not, when it cannot be made."""
        instance, _ = cam_uids(header, self.identity)
        if self.spool.was_sent(instance):
            return None
        try:
            overlay = self.explainer.explain_file(str(film)).overlay
            capture = cam_capture(header, overlay, self.identity)
        except (ImageReadError, AttributeError, KeyError, TypeError, ValueError) as exc:
            return f"no Grad-CAM: {type(exc).__name__}: {exc}"
        if self.spool.put_outbox(capture.SOPInstanceUID, file_bytes(capture), sync=False):
            self.queued.set()
        return None

    def serve(self, arrived: threading.Event, stop: threading.Event, max_wait: float) -> None:
        """Answer films as they arrive until ``stop``: a batch goes once it is full or its
        oldest film has waited ``max_wait`` seconds."""
        while not stop.is_set():
            films = self.spool.unanswered()
            if not films:
                arrived.wait(0.5)
                arrived.clear()
                continue
            waited = time.time() - received_ns(films[0]) / 1e9
            if len(films) < self.batch_size and waited < max_wait:
                arrived.wait(max_wait - waited)
                arrived.clear()
                continue
            batch = films[: self.batch_size]
            try:
                self.answer(batch)
            except Exception as exc:  # one bad batch (a full disk) must not stop the listener
                self.log(f"cxr-fast: answering {len(batch)} films failed ({exc}); retrying")
                stop.wait(1.0)
