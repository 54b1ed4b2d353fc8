"""Sending the outbox's SRs to the PACS by C-STORE, retried with backoff while it is down.

An SR leaves the outbox only once the PACS answered its C-STORE with Success (or a warning):
its "sent" marker is written first, then the file goes. One the PACS refuses outright (a
failure other than "out of resources") is moved to SPOOL/refused/ and logged, so that it
does not hold back the others. A kill between the PACS's answer and
the marker sends that one SR again on restart, under the same SOP Instance UID, which the PACS
stores once.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
from pydicom import uid
from pynetdicom import AE, _config

from cxr_fast.messages import Log
from cxr_fast.network.spool import Spool
from cxr_fast.network.tcp import TCP_HANDLERS

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
# Success, and the warnings a Storage SCP may answer with the instance still stored (PS3.4 B.2.3).
STORED = {0x0000, 0xB000, 0xB006, 0xB007}
OUT_OF_RESOURCES = 0xA7  # the high byte of "Refused: Out of Resources" (0xA7xx): retried


# send_c_store(path) sends a file's bytes as they are, not decoded and encoded again (pynetdicom's
# documented switch; it applies to paths only, and listen sends no other).
_config.STORE_SEND_CHUNKED_DATASET = True


def _store(assoc, sr: Path):
    """C-STORE one SR file: its bytes as they are when the PACS accepted its transfer syntax,
    else decoded, for pynetdicom to convert to one it accepted."""
    try:
        return assoc.send_c_store(sr)
    except ValueError:  # no accepted presentation context with the file's own transfer syntax
        return assoc.send_c_store(pydicom.dcmread(sr))


class SendError(Exception):
    """The PACS could not be reached or refused an SR."""


class Sender:
    """Empties ``spool``'s outbox into the PACS at ``host:port`` (AE title ``called``)."""

    def __init__(self, spool: Spool, peer: tuple[str, str, int], ae_title: str, log: Log):
        self.spool, self.log = spool, log
        self.called, self.host, self.port = peer
        self.ae = AE(ae_title=ae_title)
        for sop_class in (uid.ComprehensiveSRStorage, uid.SecondaryCaptureImageStorage):  # --cam
            self.ae.add_requested_context(
                sop_class, [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian]
            )
        self.sent = 0

    def send_once(self) -> int:
        """Send what the outbox holds over one association; how many SRs were stored.
        :class:`SendError` when the PACS is unreachable or refuses one."""
        srs = self.spool.outbox()
        if not srs:
            return 0
        assoc = self.ae.associate(
            self.host, self.port, ae_title=self.called, evt_handlers=TCP_HANDLERS
        )
        if not assoc.is_established:
            raise SendError(f"no association with {self.called}@{self.host}:{self.port}")
        stored = 0
        try:
            for sr in srs:
                status = _store(assoc, sr)
                code = status.get("Status") if status else None
                if code in STORED:
                    self.spool.mark_sent(sr)
                    stored += 1
                elif code is None or code >> 8 == OUT_OF_RESOURCES:  # may go through later
                    shown = "no answer" if code is None else f"status 0x{code:04X}"
                    raise SendError(f"{self.called} did not store {sr.stem}: {shown}")
                else:  # refused for what it is: kept aside, so the rest still goes
                    kept = self.spool.set_aside(sr)
                    self.log(f"cxr-fast: {self.called} refused {sr.stem} (0x{code:04X}): {kept}")
        finally:
            if assoc.is_established:
                assoc.release()
            self.sent += stored
        return stored

    def serve(self, wake: threading.Event, stop: threading.Event) -> None:
        """Send until ``stop``: at once when ``wake`` is set, after a failure with a delay
        doubling from FIRST_RETRY_S to MAX_RETRY_S."""
        delay = FIRST_RETRY_S
        while not stop.is_set():
            try:
                self.send_once()
                delay = FIRST_RETRY_S
            except SendError as exc:
                self.log(f"cxr-fast: {exc}; SRs kept in the outbox, retrying in {delay:.0f} s")
                stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_S)
                continue
            wake.wait(1.0)
            wake.clear()
