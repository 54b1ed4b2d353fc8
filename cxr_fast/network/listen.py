"""``run_listen(ListenConfig)``: receive films over DICOM, answer each with a row and an SR.

The model loads once (as ``score`` loads it); the spool's unanswered films are answered first;
then the Storage SCP receives, the main thread scores in micro-batches, with ``--send-to`` a
thread sends the SRs, and another prunes the spool past ``--keep-days`` (retention.py).
Ctrl-C or SIGTERM stops it and publishes the Parquet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from cxr_fast.choices import SCORE_BATCH_SIZE
from cxr_fast.device import resolve_device
from cxr_fast.errors import UserInputError
from cxr_fast.messages import Log, to_stdout
from cxr_fast.network.answer import LISTEN_SCHEMA, Answerer
from cxr_fast.network.listen_config import ListenConfig
from cxr_fast.network.retention import Retention, pruned_text
from cxr_fast.network.send import Sender
from cxr_fast.network.spool import Spool
from cxr_fast.outputs import exclusive_output, writable_file
from cxr_fast.scoring import identity
from cxr_fast.scoring.model import ScoringModel, load_scoring_model
from cxr_fast.scoring.parquet_out import ChunkedParquetWriter, metadata_json, staging_dir
from cxr_fast.text import plural


@dataclass(frozen=True)
class ListenResult:
    """How a listener that was started ended."""

    out: Path
    received: int
    answered: int
    sent: int
    rows: int

    def summary(self) -> str:
        return (
            f"stopped: {plural(self.received, 'film')} received, {self.answered:,} answered, "
            f"{plural(self.sent, 'SR')} sent; {plural(self.rows, 'row')} -> {self.out}"
        )


def open_writer(out: Path, model: ScoringModel, config: ListenConfig) -> ChunkedParquetWriter:
    """The Parquet writer of a listener; a published file from an earlier run becomes its
    first chunk, so rows accumulate across restarts."""
    metadata = {
        **identity.model_metadata(model),
        "cxr_fast_spool": str(config.spool.resolve()),
    }
    staging = staging_dir(out)
    if out.exists():
        # Chunks beside a published file: a stop killed after publishing them, before
        # removing them. The file holds their rows already.
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        os.replace(out, staging / "chunk-000000.parquet")
    # Each batch's rows are flushed by the answerer: no size or age trigger is needed.
    writer = ChunkedParquetWriter(
        out, metadata_json(metadata), 1 << 30, float("inf"), schema=LISTEN_SCHEMA
    )
    writer.drop_unreadable()
    return writer


def _load(config: ListenConfig) -> ScoringModel:
    """The model ``score --model`` would use on this device (its export, its input gate)."""
    device = resolve_device(config.device)
    return load_scoring_model(config.run, config.backend, device, precision=config.precision)


def _explainer(config: ListenConfig, model: ScoringModel):
    """The Grad-CAM explainer of ``--cam`` (None without it), drawing for ``model``'s rows."""
    if not config.cam:
        return None
    from cxr_fast.explain.explainer import Explainer

    # accept_ood: the rows' gate has spoken, only their ok films get an overlay.
    return Explainer(config.run, device=config.device, scoring=model, accept_ood=True)


def _batch_size(config: ListenConfig, model: ScoringModel) -> int:
    """``--batch-size``, else score's default for the model's device."""
    kind = model.device.type
    return config.batch_size or SCORE_BATCH_SIZE.get(kind, SCORE_BATCH_SIZE["cuda"])


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event):
    """SIGTERM (a service manager stopping listen) ends it as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _answerer(
    config: ListenConfig, model: ScoringModel, spool: Spool, writer: ChunkedParquetWriter, log: Log
) -> Answerer:
    """The answering side: the model's rows and SRs."""
    return Answerer(
        model, identity.algorithm(model), spool, writer, _batch_size(config, model),
        config.accept_ood, log, _explainer(config, model),
    )  # fmt: skip


def run_listen(
    config: ListenConfig, log: Log = to_stdout, stop: threading.Event | None = None
) -> ListenResult:
    """Listen until Ctrl-C, SIGTERM or ``stop`` is set (see the module docstring)."""
    from cxr_fast.network.scp import StorageSCP

    stop = stop or threading.Event()
    writable_file(config.out)
    model = _load(config)
    spool = Spool.open(config.spool)
    with contextlib.ExitStack() as held:
        held.enter_context(exclusive_output(config.out, "cxr-fast listen"))
        writer = open_writer(config.out, model, config)
        answerer = _answerer(config, model, spool, writer, log)
        moved = answerer.recover()
        retention = Retention(spool, config.keep_days, log)
        pruned = retention.prune()
        scp = StorageSCP(spool, config.ae_title, config.allow_aet, log)
        sender = (
            None if config.send_to is None else Sender(spool, config.send_to, config.ae_title, log)
        )
        threads = []
        if sender is not None:
            threads.append(threading.Thread(target=sender.serve, args=(answerer.queued, stop)))
        if config.keep_days:
            threads.append(threading.Thread(target=retention.serve, args=(stop,)))
        try:
            port = scp.start(config.host, config.port)
        except OSError as exc:
            raise UserInputError(f"cannot listen on {config.host}:{config.port}: {exc}") from None
        for thread in threads:
            thread.start()
        log(_banner(config, port, model, len(spool.unanswered()), moved, pruned))
        try:
            with _stop_on_sigterm(stop):
                answerer.serve(scp.arrived, stop, config.max_wait)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            scp.stop()
            for thread in threads:
                thread.join()
            rows = writer.finish()
    return ListenResult(
        config.out, scp.received, answerer.answered, 0 if sender is None else sender.sent, rows
    )


def _banner(
    config: ListenConfig,
    port: int,
    model: ScoringModel,
    waiting: int,
    moved: int,
    pruned: tuple[int, int],
) -> str:
    """The line listen prints once it accepts associations."""
    line = f"listening on {config.host}:{port} as {config.ae_title} ({model.backend})"
    if config.send_to is not None:
        title, host, to_port = config.send_to
        line += f", SRs to {title}@{host}:{to_port}"
    if waiting:
        line += f"; {plural(waiting, 'spooled film')} to answer first"
    if moved:
        line += f"; {plural(moved, 'film')} found answered after a stop"
    if any(pruned):
        line += f"; {pruned_text(*pruned, config.keep_days)}"
    return line
