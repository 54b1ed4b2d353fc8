"""Helpers of the listen tests: a listener in a thread or a process, a modality that pushes
films (pynetdicom as SCU), and a minimal PACS that keeps the SRs it is sent."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
from pydicom import uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from cxr_fast.network.listen import ListenResult, run_listen
from cxr_fast.network.listen_config import ListenConfig
from cxr_fast.network.scp import TRANSFER_SYNTAXES
from cxr_fast.scoring.score import run_score
from cxr_fast.scoring.score_config import ScoreConfig

ROOT = Path(__file__).parents[2]
LOOPBACK = "127.0.0.1"
_PORT = re.compile(r"listening on [0-9.]+:(\d+)")


@dataclass
class Listener:
    """A running listener: its port, what it logged, and (in a thread) how it ended."""

    port: int
    lines: list[str]
    result: list[ListenResult] = field(default_factory=list)


def wait_until(condition, timeout: float = 30, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def listening(config: ListenConfig) -> Iterator[Listener]:
    """``run_listen(config)`` in a thread until the block ends (then stopped, Parquet out)."""
    lines: list[str] = []
    stop = threading.Event()
    listener = Listener(0, lines)

    def run() -> None:
        listener.result.append(run_listen(config, log=lines.append, stop=stop))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: any(_PORT.search(line) for line in lines) or not thread.is_alive())
        found = [m for m in map(_PORT.search, lines) if m]
        assert found, f"listen did not start: {lines}"
        listener.port = int(found[0].group(1))
        yield listener
    finally:
        stop.set()
        thread.join(60)


def listen_process(args: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    """``cxr-fast listen ARGS`` as a process (its output into ``log``); (process, port)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = len(_ports(log))
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cxr_fast", "listen", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    wait_until(
        lambda: len(_ports(log)) > before or process.poll() is not None, 90, "listen to start"
    )
    ports = _ports(log)
    assert len(ports) > before, f"listen did not start: {log.read_text()[-2000:]}"
    return process, ports[-1]


def _ports(log: Path) -> list[int]:
    """The ports of every "listening on" line in ``log`` so far."""
    text = log.read_text() if log.exists() else ""
    return [int(m.group(1)) for m in map(_PORT.search, text.splitlines()) if m]


def push(
    files: Iterable[Path], port: int, calling: str = "MODALITY", called: str = "CXRFAST"
) -> list[int]:
    """C-STORE ``files`` to a listener in one association; the status of each."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    # One context per transfer syntax of the radiograph classes: a film goes as it is stored.
    for sop_class in (
        uid.DigitalXRayImageStorageForPresentation,
        uid.ComputedRadiographyImageStorage,
    ):
        for syntax in TRANSFER_SYNTAXES:
            ae.add_requested_context(sop_class, [syntax])
    for sop_class in (uid.SecondaryCaptureImageStorage, uid.CTImageStorage):
        ae.add_requested_context(sop_class, [uid.ExplicitVRLittleEndian])
    assoc = ae.associate(LOOPBACK, port, ae_title=called)
    assert assoc.is_established, "the listener refused the association"
    try:
        return [int(assoc.send_c_store(pydicom.dcmread(f, force=True)).Status) for f in files]
    finally:
        assoc.release()


def associates(port: int, calling: str, called: str = "CXRFAST") -> bool:
    """Whether the listener accepts an association from ``calling`` (and answers C-ECHO)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate(LOOPBACK, port, ae_title=called)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return int(status.Status) == 0


class MiniPacs:
    """A Storage SCP that keeps every SR it is sent (by SOP Instance UID) and counts stores."""

    def __init__(
        self,
        port: int = 0,
        aet: str = "PACS",
        refuse: Iterable[str] = (),
        transfer_syntaxes: list[str] | None = None,  # None: pynetdicom's default ones
    ):
        self.refuse = set(refuse)  # SOP Instance UIDs answered 0xC000 (cannot understand)
        self.reports: dict[str, pydicom.Dataset] = {}
        self.stores = 0
        self.ae = AE(ae_title=aet)
        if transfer_syntaxes is None:
            self.ae.add_supported_context(uid.ComprehensiveSRStorage)
        else:
            self.ae.add_supported_context(uid.ComprehensiveSRStorage, transfer_syntaxes)
        handlers = [(evt.EVT_C_STORE, self._on_store)]
        self.server = self.ae.start_server((LOOPBACK, port), block=False, evt_handlers=handlers)
        self.port = self.server.server_address[1]

    def _on_store(self, event) -> int:
        self.stores += 1
        ds = event.dataset
        if str(ds.SOPInstanceUID) in self.refuse:
            return 0xC000
        self.reports[str(ds.SOPInstanceUID)] = ds
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()


def push_and_kill(files: list[Path], port: int, process: subprocess.Popen, after: int) -> int:
    """C-STORE ``files`` in one association and ``kill -9`` the listener once ``after`` are
    acknowledged, mid-association; how many were acknowledged (Success)."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(
        uid.DigitalXRayImageStorageForPresentation, [uid.ExplicitVRLittleEndian]
    )
    assoc = ae.associate(LOOPBACK, port, ae_title="CXRFAST")
    assert assoc.is_established
    acked = 0
    for film in files:
        status = assoc.send_c_store(pydicom.dcmread(film))
        if int(status.get("Status", -1)) != 0:
            break
        acked += 1
        if acked == after:
            process.send_signal(signal.SIGKILL)
    process.wait()
    if assoc.is_established:
        assoc.abort()
    return acked


def answered_count(spool: Path) -> int:
    """Films a listener has answered (moved to SPOOL/answered/)."""
    return len(list((spool / "answered").glob("*.dcm")))


def score_probabilities(run: Path, films: Path, out: Path) -> dict[str, float]:
    """`score`'s probability of each film under ``films``, by SOP Instance UID."""
    run_score(ScoreConfig(archive=films, model=run, out=out, device="cpu", workers=0))
    table = pq.read_table(out, columns=["sop_instance_uid", "prob_pneumonia"]).to_pylist()
    return {row["sop_instance_uid"]: row["prob_pneumonia"] for row in table}
