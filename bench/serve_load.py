"""Load on a running `cxr-fast serve`: N concurrent clients POST real X-rays over loopback.

    python -m bench.serve_load RUN [--clients 8] [--requests 400] [--images DIR]

starts the server in-process on 127.0.0.1 (a free port), sends a bounded number of requests
and prints requests/s and p50/p99 latency, and how many answers were 200 and 503. The test
``tests/serve/test_server.py`` uses :func:`run_load` with fewer requests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Answer:
    """One request's outcome."""

    image: int
    status: int
    seconds: float
    prob: float | None = None
    retry_after: str | None = None


@dataclass
class LoadResult:
    """Every answer, and the wall time they took together."""

    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        times = sorted(a.seconds for a in self.answers)
        return times[min(len(times) - 1, round(q / 100 * (len(times) - 1)))]

    @property
    def requests_per_second(self) -> float:
        return len(self.answers) / self.seconds

    def summary(self) -> str:
        ok = sum(a.status == 200 for a in self.answers)
        busy = sum(a.status == 503 for a in self.answers)
        return (
            f"{len(self.answers)} requests: {ok} x 200, {busy} x 503; "
            f"{self.requests_per_second:.1f} requests/s, p50 {self.percentile(50) * 1000:.0f} ms, "
            f"p99 {self.percentile(99) * 1000:.0f} ms"
        )


def _multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def post(port: int, data: bytes, name: str = "x.jpeg", timeout: float = 120) -> Answer:
    """POST one image to /api/predict on 127.0.0.1:``port``."""
    body, content_type = _multipart(data, name)
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/api/predict", body, {"Content-Type": content_type})
        response = connection.getresponse()
        payload = json.loads(response.read())
        return Answer(
            image=-1,
            status=response.status,
            seconds=time.perf_counter() - started,
            prob=payload.get("prob_pneumonia"),
            retry_after=response.getheader("Retry-After"),
        )
    finally:
        connection.close()


def run_load(port: int, images: list[bytes], clients: int, requests: int) -> LoadResult:
    """``requests`` POSTs from ``clients`` threads, cycling through ``images``."""
    lock = threading.Lock()
    result = LoadResult()

    def one(i: int) -> None:
        answer = post(port, images[i % len(images)])
        answer.image = i % len(images)
        with lock:
            result.answers.append(answer)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(requests)))
    result.seconds = time.perf_counter() - started
    return result


def start_server(app, limits) -> tuple[object, int, threading.Thread]:
    """A waitress server for ``app`` on a free loopback port, running in a daemon thread."""
    from cxr_fast.serve.server import make_server

    server = make_server(app, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server, server.effective_port, thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--images", type=Path, default=Path("tests/data/images/kaggle"))
    args = parser.parse_args()

    from cxr_fast.explain.explainer import Explainer
    from cxr_fast.serve.app import create_app
    from cxr_fast.serve.predictor import Predictor
    from cxr_fast.serve.server import Limits

    images = [p.read_bytes() for p in sorted(args.images.rglob("*.jpeg"))[:16]]
    limits = Limits()
    predictor = Predictor(Explainer(args.run, device="cpu"), wait_timeout=limits.request_timeout)
    server, port, _ = start_server(create_app(predictor), limits)
    try:
        result = run_load(port, images, args.clients, args.requests)
    finally:
        server.close()
    print(f"{args.clients} clients, {limits}: {result.summary()}")


if __name__ == "__main__":
    main()
