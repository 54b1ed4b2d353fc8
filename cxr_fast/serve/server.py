"""Run the app on waitress, a production WSGI server, with bounded load.

Why waitress rather than gunicorn: the model is loaded once and shared by threads that take
turns on it (a lock), which is exactly waitress's model (one process, a thread pool); gunicorn
pre-forks worker processes, each of which would load its own copy of PyTorch and the model
(hundreds of MB each) and it does not run on Windows, where some hospital workstations serve
from. Waitress is pure Python with no dependencies and is what Flask's deployment docs list
first for this case.

Load limits, so an overloaded server answers quickly instead of queueing without end:

- ``threads`` requests are answered at once (decoding in parallel; the model itself takes
  turns) and at most ``max_queue`` more wait; the next one gets ``503 Service Unavailable``
  with ``Retry-After`` straight away (``/healthz`` is exempt);
- a waiting request waits at most ``request_timeout`` seconds for its turn, and again at most
  that long for the model, else it gets the same 503; waitress's ``channel_timeout`` drops
  clients that stall while sending.
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
    """WSGI middleware: at most ``threads`` requests are answered at once and ``max_queue``
    more wait, each for at most ``request_timeout`` seconds; anything beyond gets 503 at once.

    It is the server's only queue: waitress runs enough threads (see :func:`make_server`) that
    every request reaches this middleware immediately instead of waiting unseen in waitress's
    own, unbounded task queue.
    """

    def __init__(self, app: Callable, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self._admitted = threading.BoundedSemaphore(limits.threads + limits.max_queue)
        self._working = threading.BoundedSemaphore(limits.threads)
        self._count = 0
        self._count_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Requests admitted (answering or waiting) and not yet answered."""
        return self._count

    def _add(self, n: int) -> None:
        with self._count_lock:
            self._count += n

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in _EXEMPT:
            return self.app(environ, start_response)
        limits = self.limits
        if not self._admitted.acquire(blocking=False):
            return busy_response(
                start_response,
                f"server busy ({limits.threads + limits.max_queue} requests in flight)",
            )
        self._add(1)
        try:
            if not self._working.acquire(timeout=limits.request_timeout):
                return busy_response(
                    start_response, f"server busy (waited {limits.request_timeout:g} s)"
                )
            try:
                # Buffer the (small, JSON) body: the slot is freed only once it is complete.
                return list(self.app(environ, start_response))
            finally:
                self._working.release()
        finally:
            self._add(-1)
            self._admitted.release()


# Threads beyond the admitted requests: they only ever answer 503 or /healthz, quickly.
SPARE_THREADS = 4


def make_server(app: Callable, host: str, port: int, limits: Limits):
    """A bound waitress server (``.run()`` serves; ``.close()`` stops; ``.admission`` is its
    :class:`AdmissionLimit`); OSError if the address cannot be bound."""
    from waitress import create_server

    admission = AdmissionLimit(app, limits)
    server = create_server(
        admission,
        host=host,
        port=port,
        threads=limits.threads + limits.max_queue + SPARE_THREADS,
        # Connections beyond what is admitted still get their 503 rather than a TCP stall.
        connection_limit=max(100, 4 * (limits.threads + limits.max_queue)),
        channel_timeout=max(1, round(limits.request_timeout)),
        ident="cxr-fast",
        clear_untrusted_proxy_headers=True,
    )
    server.admission = admission
    return server
