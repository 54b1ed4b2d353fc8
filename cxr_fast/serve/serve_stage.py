"""The serve stage's entry point: ``run_serve(ServeConfig)`` loads a run once and answers
requests on waitress until Ctrl-C (see :mod:`cxr_fast.serve.server` for the load limits)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_fast.choices import (
    accept_ood_option,
    cam_layer_option,
    cam_method_option,
    device_option,
    precision_option,
)
from cxr_fast.errors import UserInputError
from cxr_fast.messages import Log, to_stdout
from cxr_fast.options import check_options, option
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

    run: Path = option(argument=True, exists=True, help="The run folder to serve.")
    host: str = option(DEFAULT_HOST, help="Address to listen on.")
    port: int = option(DEFAULT_PORT, min=0, max=65535, help="TCP port.")
    max_upload_mb: float = option(
        DEFAULT_MAX_UPLOAD_MB, min=0, min_open=True, help="Larger uploads get HTTP 413."
    )
    layer: str | None = cam_layer_option("Grad-CAM target layer (as for `explain`).")
    method: str = cam_method_option("Grad-CAM.")
    threads: int = option(
        DEFAULT_THREADS,
        min=1,
        help="Worker threads of the WSGI server (waitress); they take turns on the one model.",
    )
    max_queue: int = option(
        DEFAULT_MAX_QUEUE,
        min=0,
        help="Requests admitted beyond those being answered; more get 503 with Retry-After.",
    )
    request_timeout: float = option(
        DEFAULT_REQUEST_TIMEOUT,
        min=0,
        min_open=True,
        help="Seconds a request may wait for the model (else 503), or a client may go silent "
        "in the middle of sending one (else 408).",
    )
    device: str = device_option()
    precision: str = precision_option()  # inference precision (precision.inference_precision)
    accept_ood: bool = accept_ood_option()  # answer uploads the gate refuses (flagged)

    def __post_init__(self) -> None:
        check_options(self)


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
