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
  that long for the model, else it gets the same 503.
  A forward pass that has started is not interrupted (PyTorch cannot be), so that bound is on
  waiting, which is where overload shows;
- a client that goes silent in the middle of sending a request for ``request_timeout`` seconds
  (whole seconds, at least 1: waitress's ``channel_timeout``) gets ``408 Request Timeout`` and
  the connection is closed. Waitress itself would close such a connection without a word, and
  only at its next sweep (every ``cleanup_interval``, 30 s by default), so up to twice as late:
  here the sweep runs every second and answers first (:func:`_sweep`). The bound is on
  silence: a client that keeps sending, however slowly, is not cut off.

Waitress logs "Task queue depth is N" whenever a request waits for one of its threads even
for an instant, which under load is every few requests and tells nothing the admission limit
does not; it is kept to one line a minute (:class:`OncePerInterval`).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cxr_fast.serve.limits import DEFAULT_MAX_QUEUE, DEFAULT_REQUEST_TIMEOUT, DEFAULT_THREADS

RETRY_AFTER_S = 1
_EXEMPT = frozenset({"/healthz"})
# How often waitress looks for silent clients (its ``cleanup_interval``): the timeout's grain.
SWEEP_INTERVAL_S = 1
QUEUE_LOGGER = "waitress.queue"
QUEUE_LOG_INTERVAL_S = 60.0


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


class OncePerInterval(logging.Filter):
    """Lets one record through per ``interval`` seconds and drops the rest, saying on the next
    line it lets through how many it dropped (``dropped``: those since the last one)."""

    def __init__(self, interval: float = QUEUE_LOG_INTERVAL_S) -> None:
        super().__init__()
        self.interval = interval
        self._last: float | None = None
        self.dropped = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                self.dropped += 1
                return False
            dropped, self.dropped, self._last = self.dropped, 0, now
        if dropped:
            record.msg = f"{record.msg} ({dropped} more such lines since the last one)"
        return True


def limit_queue_log() -> None:
    """Keep waitress's queue-depth warnings to one line a minute (once per process)."""
    logger = logging.getLogger(QUEUE_LOGGER)
    if not any(isinstance(f, OncePerInterval) for f in logger.filters):
        logger.addFilter(OncePerInterval())


def _request_timeout_error():
    """Waitress's error answer for a request whose client went silent: a JSON 408."""
    from waitress.utilities import Error

    class RequestTimeout(Error):
        code = 408
        reason = "Request Timeout"

        def to_response(self, ident: str | None = None) -> tuple[str, list, bytes]:
            body = json.dumps({"error": self.body, "status": self.code}).encode()
            return f"{self.code} {self.reason}", [("Content-Type", "application/json")], body

    return RequestTimeout


def _sweep(listener, timeout_error, now: float) -> None:
    """Waitress's ``maintenance`` for one listening socket, answering instead of dropping:
    a connection silent for ``channel_timeout`` seconds in the middle of a request gets a 408
    (waitress's own error-answer path: the request is marked complete with an error, and one of
    its threads writes the answer, then closes); one silent between requests is closed, as
    waitress does."""
    cutoff = now - listener.adj.channel_timeout
    for channel in list(listener.active_channels.values()):
        if channel.requests or channel.last_activity >= cutoff:
            continue  # being answered, or not silent for long enough
        with channel.requests_lock:
            request = channel.request
            if request is None or channel.will_close or channel.close_when_flushed:
                channel.will_close = True
                continue
            request.error = timeout_error(
                f"the client sent nothing for {listener.adj.channel_timeout} s in the middle "
                "of its request"
            )
            request.completed = True
            channel.request = None
            channel.requests.append(request)
        listener.add_task(channel)


def _answer_stalled_clients(server) -> None:
    """Make each of ``server``'s listening sockets sweep with :func:`_sweep`."""
    from waitress.server import BaseWSGIServer, MultiSocketServer

    listeners = server.map.values() if isinstance(server, MultiSocketServer) else [server]
    timeout_error = _request_timeout_error()
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            # The one method waitress's own sweep goes through, on this instance only.
            listener.maintenance = functools.partial(_sweep, listener, timeout_error)


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
        cleanup_interval=SWEEP_INTERVAL_S,
        ident="cxr-fast",
        clear_untrusted_proxy_headers=True,
    )
    _answer_stalled_clients(server)
    limit_queue_log()
    server.admission = admission
    return server
