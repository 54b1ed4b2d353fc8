"""The production server: every request gets an answer under load, the same image always gets
the same probability, and overload is a quick 503 with Retry-After, not an endless queue."""

import http.client
import json
import logging
import socket
import threading
import time

import pytest

from bench.serve_load import post, run_load, start_server
from cxr_fast.explain.explainer import Explainer
from cxr_fast.serve.app import create_app
from cxr_fast.serve.predictor import Predictor
from cxr_fast.serve.server import QUEUE_LOGGER, Limits, OncePerInterval


@pytest.fixture(scope="module")
def predictor(trained_run):
    return Predictor(Explainer(trained_run, device="cpu"), wait_timeout=60)


@pytest.fixture(scope="module")
def images(kaggle_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted(kaggle_dir.rglob("*.jpeg"))[:4]]


def test_eight_clients_all_answered_with_stable_probabilities(predictor, images):
    server, port, _ = start_server(create_app(predictor), Limits(threads=4, max_queue=16))
    try:
        alone = [post(port, image).prob for image in images]
        result = run_load(port, images, clients=8, requests=64)
    finally:
        server.close()
    assert len(result.answers) == 64
    assert {a.status for a in result.answers} == {200}  # 8 clients fit in 4 + 16 slots
    for answer in result.answers:
        assert answer.prob == alone[answer.image]  # bit for bit, whatever the interleaving


class _Blocking:
    """A stand-in predictor whose answers wait until the test lets them go."""

    model_id = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, data, name="upload", cam=False):
        self.entered.set()
        self.release.wait(60)
        return {"prob_pneumonia": 0.5}


def test_a_full_server_answers_503_with_retry_after(images):
    blocking = _Blocking()
    server, port, _ = start_server(create_app(blocking), Limits(threads=1, max_queue=1))
    try:
        first = threading.Thread(target=post, args=(port, images[0]))
        second = threading.Thread(target=post, args=(port, images[0]))
        first.start()
        assert blocking.entered.wait(60)
        second.start()
        while server.admission.in_flight < 2:  # one answering, one queued
            second.join(0.01)
        busy = post(port, images[0])
        blocking.release.set()
        first.join(60)
        second.join(60)
    finally:
        blocking.release.set()
        server.close()
    assert busy.status == 503 and busy.retry_after == "1"


def test_waiting_past_the_request_timeout_is_503(trained_run, images):
    predictor = Predictor(Explainer(trained_run, device="cpu"), wait_timeout=0.05)
    server, port, _ = start_server(create_app(predictor), Limits(threads=2, max_queue=2))
    try:
        with predictor._lock:  # the model is busy with someone else's request
            answer = post(port, images[0])
        after = post(port, images[0])
    finally:
        server.close()
    assert answer.status == 503 and answer.retry_after == "1"
    assert after.status == 200


def test_a_client_that_goes_silent_mid_upload_gets_408_in_time():
    server, port, _ = start_server(create_app(_Blocking()), Limits(request_timeout=2))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
            client.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
            )  # and then nothing more
            started = time.monotonic()
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
            waited = time.monotonic() - started
    finally:
        server.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout"), reply
    assert json.loads(body) == {
        "error": "the client sent nothing for 2 s in the middle of its request",
        "status": 408,
    }
    assert 1.5 < waited < 5  # the timeout, plus the sweep's second; not waitress's 30 s sweep


def test_waitress_queue_warnings_are_one_line_a_minute(monkeypatch):
    logger = logging.getLogger(QUEUE_LOGGER)
    monkeypatch.setattr(logger, "filters", [])  # a fresh minute for this test's server
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    release = threading.Event()

    def slow(environ, start_response):
        release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    # /healthz is never refused, so every request waits for one of waitress's 5 threads.
    server, port, _ = start_server(slow, Limits(threads=1, max_queue=0))

    def get():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        connection.close()

    clients = [threading.Thread(target=get) for _ in range(30)]
    try:
        for client in clients:
            client.start()
        [limit] = [f for f in logger.filters if isinstance(f, OncePerInterval)]
        deadline = time.monotonic() + 30
        while limit.dropped < 20 and time.monotonic() < deadline:  # waitress queues the rest
            time.sleep(0.05)
    finally:
        release.set()
        for client in clients:
            client.join(60)
        server.close()
        logger.removeHandler(handler)
    assert limit.dropped >= 20
    assert lines == ["Task queue depth is 1"]
