"""Socket options for pynetdicom's associations, as event handlers (``TCP_HANDLERS``).

dcmtk (storescu, Orthanc) writes a PDU in pieces with Nagle's algorithm on, so the last piece
of a message waits until its peer acknowledges the first; a Linux peer in "interactive" mode
delays that acknowledgement up to its delayed-ACK timer. Every C-STORE then stalls for that
timer in one direction or the other (docs/hospital.md measures it). Acknowledging at once after
each send, and sending without Nagle's delay ourselves, removes the stall from listen's side
of both conversations (films in, SRs out).
"""

from __future__ import annotations

import contextlib
import socket

from pynetdicom import evt


def _socket(event: evt.Event) -> socket.socket | None:
    transport = event.assoc.dul.socket
    return None if transport is None else transport.socket


def no_delay(event: evt.Event) -> None:
    """Send each PDU as soon as it is written (TCP_NODELAY)."""
    sock = _socket(event)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def quick_ack(event: evt.Event) -> None:
    """Acknowledge the peer's next segments at once (TCP_QUICKACK, Linux only; the kernel
    leaves quick-ACK mode by itself, so it is set again after every send)."""
    sock = _socket(event)
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):  # closing: nothing left to acknowledge
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


TCP_HANDLERS = [(evt.EVT_CONN_OPEN, no_delay), (evt.EVT_DATA_SENT, quick_ack)]
