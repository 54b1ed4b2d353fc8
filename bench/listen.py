"""`cxr-fast listen` under a burst: N DX films pushed by dcmtk's storescu over parallel
associations, SRs sent back to a real Orthanc; beside `cxr-fast score` on the same files.

    python -m bench.listen RUN [--films 1000] [--associations 4]

Needs Debian's orthanc, orthanc-dicomweb and dcmtk (`make pacs`). Writes N films (the
committed real X-rays as DX, tests/network/films.py), starts Orthanc on loopback ports
(tests/network/orthanc.py) with listen as a known modality, starts `cxr-fast listen RUN
--send-to ORTHANC@...`, pushes the films with ``--associations`` storescu processes at once,
and waits until listen has every SR acknowledged by Orthanc. It prints:

- pushed/s: films over the time until the last storescu finished (every film spooled);
- answered/s: films over the time until Orthanc acknowledged the last SR (sustained rate);
- receipt -> SR sent p50/p95/max: per film, from its receipt (the spool's name) to Orthanc's
  acknowledgement of its SR (the spool's sent/ marker);
- score images/s: `cxr-fast score FILMS --model RUN` on the same files, its own summary;
- the largest probability difference between listen's rows and score's.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest

from cxr_fast.network.sr import read_answer
from tests.network.films import write_dx_films
from tests.network.orthanc import STORESCU, Modality, Orthanc, pacs_or_skip, start_orthanc

ROOT = Path(__file__).resolve().parents[1]
LISTEN_AET, MODALITY_AET = "CXRFAST", "MODALITY"
_PORT = re.compile(r"listening on [0-9.]+:(\d+)")
_RATE = re.compile(r"([\d,]+) images in ([\d.]+) s: ([\d.,]+) images/s")


def _cxr_fast(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cxr_fast", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def _wait(condition, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or (process is not None and process.poll() is not None):
            raise SystemExit(f"bench.listen: gave up waiting for {what}")
        time.sleep(0.05)


def _start_listen(run: Path, work: Path, pacs: Orthanc) -> tuple[subprocess.Popen, int]:
    log = work / "listen.log"
    process = _cxr_fast(
        "listen", str(run), "--port", "0", "--ae-title", LISTEN_AET,
        "--spool", str(work / "spool"), "--out", str(work / "listen.parquet"),
        "--send-to", f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}", log=log,
    )  # fmt: skip
    _wait(lambda: _PORT.search(log.read_text()), 300, "listen to start", process)
    return process, int(_PORT.search(log.read_text()).group(1))


def _push(films: list[Path], associations: int, port: int) -> float:
    """Push ``films`` with ``associations`` storescu processes at once; seconds they took."""
    chunks = [films[i::associations] for i in range(associations)]
    command = [STORESCU, "-aet", MODALITY_AET, "-aec", LISTEN_AET, "127.0.0.1", str(port)]
    started = time.perf_counter()
    pushes = [subprocess.Popen([*command, *map(str, chunk)]) for chunk in chunks]
    if any(p.wait() != 0 for p in pushes):
        raise SystemExit("bench.listen: a storescu push failed")
    return time.perf_counter() - started


def _latencies(pacs: Orthanc, spool: Path) -> np.ndarray:
    """Per film: seconds from its receipt to Orthanc's acknowledgement of its SR."""
    received = {}
    for film in (spool / "answered").glob("*.dcm"):
        stamp, sop = film.stem.split("-", 1)
        received[sop] = int(stamp)
    seconds = []
    for instance in pacs.instances():
        raw = pacs.get(f"/instances/{instance}/file").content
        report = pydicom.dcmread(io.BytesIO(raw))
        if report.Modality != "SR":
            continue
        sent = (spool / "sent" / report.SOPInstanceUID).stat().st_mtime_ns
        seconds.append((sent - received[read_answer(report)["source"]]) / 1e9)
    return np.array(seconds)


def _score(run: Path, films: Path, work: Path) -> tuple[float, Path]:
    """`cxr-fast score` on the same files: (its images/s, its Parquet)."""
    out, log = work / "score.parquet", work / "score.log"
    if _cxr_fast("score", str(films), "--model", str(run), "--out", str(out), log=log).wait():
        raise SystemExit(f"bench.listen: score failed:\n{log.read_text()[-2000:]}")
    return float(_RATE.search(log.read_text()).group(3).replace(",", "")), out


def _max_difference(listen: Path, score: Path) -> float:
    want = {r["sop_instance_uid"]: r["prob_pneumonia"] for r in pq.read_table(score).to_pylist()}
    got = {r["sop_instance_uid"]: r["prob_pneumonia"] for r in pq.read_table(listen).to_pylist()}
    return max(abs(got[sop] - prob) for sop, prob in want.items())


def bench(run: Path, films: int, associations: int, work: Path) -> dict:
    """Push, answer, measure; then score the same files. The numbers as a dict."""
    paths = write_dx_films(work / "films", films, studies=max(1, films // 24))
    modalities = {"CXRFAST": Modality(LISTEN_AET, 104)}  # listen stores SRs into Orthanc
    with start_orthanc(work / "orthanc", modalities=modalities) as pacs:
        listen, port = _start_listen(run, work, pacs)
        try:
            started = time.perf_counter()
            pushed = _push(paths, associations, port)
            sent = work / "spool" / "sent"
            done = lambda: sum(not p.name.startswith(".") for p in sent.iterdir()) >= films  # noqa: E731
            _wait(done, 3600, "every SR", listen)
            answered = time.perf_counter() - started
        finally:
            # SIGTERM: a shell ignores SIGINT in a job it runs in the background.
            listen.send_signal(signal.SIGTERM)
            listen.wait(120)
        latency = _latencies(pacs, work / "spool")
    rate, score_out = _score(run, work / "films", work)
    return {
        "films": films,
        "associations": associations,
        "pushed_per_s": films / pushed,
        "answered_per_s": films / answered,
        "p50_s": float(np.percentile(latency, 50)),
        "p95_s": float(np.percentile(latency, 95)),
        "max_s": float(latency.max()),
        "srs": len(latency),
        "score_images_per_s": rate,
        "max_prob_difference": _max_difference(work / "listen.parquet", score_out),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--films", type=int, default=1000)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="Work here and keep it (default: a temp dir).")
    args = parser.parse_args(argv)
    try:
        pacs_or_skip(storescu=True)
    except pytest.skip.Exception as missing:
        raise SystemExit(f"bench.listen: {missing}") from None
    with tempfile.TemporaryDirectory(prefix="bench-listen-") as temporary:
        work = args.keep or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        result = bench(args.run, args.films, args.associations, work)
    print(
        f"{result['films']} DX films, {result['associations']} storescu associations -> listen "
        f"-> Orthanc: {result['srs']} SRs acknowledged\n"
        f"pushed {result['pushed_per_s']:.1f} films/s; answered (SR acknowledged) "
        f"{result['answered_per_s']:.1f} films/s\n"
        f"receipt -> SR sent: p50 {result['p50_s']:.2f} s, p95 {result['p95_s']:.2f} s, "
        f"max {result['max_s']:.2f} s\n"
        f"score on the same files: {result['score_images_per_s']:.1f} images/s; "
        f"largest |listen - score| probability: {result['max_prob_difference']:.2e}"
    )


if __name__ == "__main__":
    main()
