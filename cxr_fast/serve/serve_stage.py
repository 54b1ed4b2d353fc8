"""The serve stage's entry point: ``run_serve(ServeConfig)`` loads a run once and answers
requests on waitress until Ctrl-C (see :mod:`cxr_fast.serve.server` for the load limits)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_fast.errors import UserInputError
from cxr_fast.messages import Log, to_stdout
from cxr_fast.serve.limits import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_THREADS,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ServeConfig:
    """What ``cxr-fast serve`` was asked to do."""

    run: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    layer: str | None = None  # Grad-CAM target layer (None: the architecture's default)
    method: str = "gradcam"
    threads: int = DEFAULT_THREADS
    max_queue: int = DEFAULT_MAX_QUEUE
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    device: str = "auto"
    precision: str = "auto"  # inference precision (precision.inference_precision)
    accept_ood: bool = False  # answer uploads the input gate refuses (flagged in warnings)


@dataclass(frozen=True)
class ServeResult:
    """How a server that was started ended."""

    run: Path
    stopped_by_user: bool

    def summary(self) -> str:
        return "stopped" if self.stopped_by_user else ""


def run_serve(config: ServeConfig, log: Log = to_stdout) -> ServeResult:
    """Load ``config.run`` once, bind, ``log`` the address and serve until Ctrl-C; an address
    that cannot be bound is a :class:`UserInputError`."""
    from cxr_fast.explain.explainer import explainer_for
    from cxr_fast.serve.app import create_app
    from cxr_fast.serve.predictor import Predictor
    from cxr_fast.serve.server import Limits, make_server

    explainer = explainer_for(config)
    predictor = Predictor(
        explainer, wait_timeout=config.request_timeout, accept_ood=config.accept_ood
    )
    app = create_app(predictor, config.max_upload_mb)
    limits = Limits(
        threads=config.threads, max_queue=config.max_queue, request_timeout=config.request_timeout
    )
    try:
        server = make_server(app, config.host, config.port, limits)
    except OSError as exc:
        raise UserInputError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None
    scoring = predictor.scoring
    # Said as `score` says it: the probabilities are the ones it writes for this run.
    log(f"backend: {scoring.choice or scoring.backend}")
    log(
        f"serving {config.run} on http://{config.host}:{server.effective_port}/  (waitress, "
        f"{config.threads} threads, queue {config.max_queue}, {scoring.backend}; Ctrl+C to "
        "stop)"
    )
    stopped = False
    try:
        server.run()
    except KeyboardInterrupt:
        stopped = True
    finally:
        server.close()
    return ServeResult(run=config.run, stopped_by_user=stopped)
