"""The Storage SCP: a pynetdicom application entity that receives films into the spool.

It answers C-ECHO, and C-STORE for the projection radiograph classes (CR, DX for presentation
and for processing) and Secondary Capture, in every transfer syntax the scoring path decodes.
Other storage classes are negotiated so that their C-STORE gets a DIMSE answer: 0x0122, "SOP
Class not supported". A film is answered Success only once it is fsynced in the spool.
"""

from __future__ import annotations

import threading
from collections.abc import Collection

from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.sop_class import Verification

from cxr_fast.messages import Log
from cxr_fast.network.spool import Spool
from cxr_fast.network.tcp import TCP_HANDLERS

ACCEPTED_CLASSES = (
    uid.ComputedRadiographyImageStorage,
    uid.DigitalXRayImageStorageForPresentation,
    uid.DigitalXRayImageStorageForProcessing,
    uid.SecondaryCaptureImageStorage,
)
# What cxr_fast/data/dicom.py decodes (pydicom with GDCM and imagecodecs).
TRANSFER_SYNTAXES = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
)
SUCCESS = 0x0000
NOT_SUPPORTED = 0x0122  # Refused: SOP Class not supported
OUT_OF_RESOURCES = 0xA700  # Refused: out of resources (the spool cannot be written)
CANNOT_UNDERSTAND = 0xC000  # Error: cannot understand (no SOP Instance UID)


def film_bytes(event: evt.Event, calling_ae: str) -> bytes:
    """The received dataset as a DICOM file, undecoded, with the calling AE title in its file
    meta (Source Application Entity Title), so the spool keeps who sent it."""
    meta = event.file_meta
    meta.SourceApplicationEntityTitle = calling_ae
    head = b"\x00" * 128 + b"DICM" + encode_file_meta(meta)
    return head + event.encoded_dataset(include_meta=False)


class StorageSCP:
    """Receives films into ``spool``; ``arrived`` is set after each one kept."""

    def __init__(self, spool: Spool, ae_title: str, allow: Collection[str], log: Log):
        self.spool, self.log = spool, log
        self.arrived = threading.Event()
        self.received = 0
        self.ae = AE(ae_title=ae_title)
        self.ae.add_supported_context(Verification)
        for sop_class in ACCEPTED_CLASSES:
            self.ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax not in ACCEPTED_CLASSES:
                self.ae.add_supported_context(context.abstract_syntax)
        if allow:
            self.ae.require_calling_aet = list(allow)
        self._server = None

    def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` in background threads; the port bound (0: a free one)."""
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_REJECTED, self._on_rejected),
            *TCP_HANDLERS,
        ]
        self._server = self.ae.start_server((host, port), block=False, evt_handlers=handlers)
        return self._server.server_address[1]

    def stop(self) -> None:
        """Stop accepting and close the open associations."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_rejected(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        self.log(
            f"cxr-fast: refused an association from AE {requestor.ae_title!r} at "
            f"{requestor.address}:{requestor.port} (not an --allow-aet)"
        )

    def _on_store(self, event: evt.Event) -> int:
        sop_class = event.context.abstract_syntax
        calling = event.assoc.requestor.ae_title
        if sop_class not in ACCEPTED_CLASSES:
            name = getattr(uid.UID(sop_class), "name", sop_class)
            self.log(f"cxr-fast: refused a {name} instance from {calling!r}: not a radiograph")
            return NOT_SUPPORTED
        instance = event.request.AffectedSOPInstanceUID
        if not instance:
            return CANNOT_UNDERSTAND
        try:
            self.spool.receive(film_bytes(event, calling), str(instance))
        except OSError as exc:
            self.log(f"cxr-fast: could not keep a film from {calling!r} in the spool: {exc}")
            return OUT_OF_RESOURCES
        self.received += 1
        self.arrived.set()
        return SUCCESS
