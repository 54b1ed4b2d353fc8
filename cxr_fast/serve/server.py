"""Run the app on waitress, a production WSGI server, with bounded load.

Why waitress rather than gunicorn: the model is loaded once and shared by threads that take
turns on it (a lock), which is exactly waitress's model (one process, a thread pool); gunicorn
pre-forks worker processes, each of which would load its own copy of PyTorch and the model
(hundreds of MB each) and it does not run on Windows, where some hospital workstations serve
from. Waitress is pure Python with no dependencies and is what Flask's deployment docs list
first for this case.

Load limits, so an overloaded server answers quickly instead of queueing without end:

- at most ``threads + max_queue`` requests are admitted at once; the next one gets
  ``503 Service Unavailable`` with ``Retry-After`` straight away (``/healthz`` is exempt);
- an admitted request waits at most ``request_timeout`` seconds for the model, else it gets the
  same 503; waitress's ``channel_timeout`` drops clients that stall while sending.
  A forward pass that has started is not interrupted (PyTorch cannot be), so that bound is on
  waiting, which is where overload shows.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cxr_fast.serve.limits import DEFAULT_MAX_QUEUE, DEFAULT_REQUEST_TIMEOUT, DEFAULT_THREADS

RETRY_AFTER_S = 1
_EXEMPT = frozenset({"/healthz"})


@dataclass(frozen=True)
class Limits:
    """How much load the server takes before it answers 503."""

    threads: int = DEFAULT_THREADS
    max_queue: int = DEFAULT_MAX_QUEUE
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT


def busy_response(start_response: Callable, message: str) -> list[bytes]:
    """A JSON 503 with Retry-After (what clients and load balancers back off on)."""
    body = json.dumps({"error": message, "status": 503}).encode()
    start_response(
        "503 Service Unavailable",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(RETRY_AFTER_S)),
        ],
    )
    return [body]


class AdmissionLimit:
    """WSGI middleware admitting at most ``limit`` requests at once; the rest get 503."""

    def __init__(self, app: Callable, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in _EXEMPT:
            return self.app(environ, start_response)
        if not self._slots.acquire(blocking=False):
            return busy_response(start_response, f"server busy ({self.limit} requests in flight)")
        try:
            # Buffer the (small, JSON) body so the slot is released only when it is complete.
            return list(self.app(environ, start_response))
        finally:
            self._slots.release()


def make_server(app: Callable, host: str, port: int, limits: Limits):
    """A bound waitress server (``.run()`` serves; ``.close()`` stops); OSError if the
    address cannot be bound."""
    from waitress import create_server

    return create_server(
        AdmissionLimit(app, limits.threads + limits.max_queue),
        host=host,
        port=port,
        threads=limits.threads,
        # Connections beyond what is admitted still get their 503 rather than a TCP stall.
        connection_limit=max(100, 4 * (limits.threads + limits.max_queue)),
        channel_timeout=max(1, round(limits.request_timeout)),
        ident="cxr-fast",
        clear_untrusted_proxy_headers=True,
    )
