"""`cxr-fast score --dicomweb` beside `cxr-fast score` on the same films, against a real Orthanc.

    python -m bench.dicomweb RUN [--films 1000]

Needs Debian's orthanc and orthanc-dicomweb (`make pacs`). Writes N DX films (the committed real
X-rays, tests/network/films.py), uploads them to an Orthanc on loopback ports
(tests/network/orthanc.py), then runs, one after the other, `score FILMS`, `score --dicomweb`
and `score --dicomweb --store-sr`, each as the user would (a new process), and prints each
one's wall time (model loading included) and its own images/s line (the scoring alone).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.network.films import write_dx_films
from tests.network.orthanc import pacs_or_skip, start_orthanc

ROOT = Path(__file__).resolve().parents[1]


def _timed(args: list[str], run: Path, out: Path) -> tuple[float, str]:
    """(wall seconds, the images/s line) of ``cxr-fast ARGS --model RUN --out OUT``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "cxr_fast", *args, "--model", str(run), "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"bench.dicomweb: {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    line = next(line for line in done.stdout.splitlines() if "images/s" in line)
    return seconds, line


def bench(run: Path, films: int, work: Path) -> list[tuple[str, float, str]]:
    """(command, wall seconds, images/s line) of each way of scoring the same films."""
    paths = write_dx_films(work / "films", films, studies=max(1, films // 24))
    results = []
    with start_orthanc(work / "orthanc") as pacs:
        pacs.upload(paths)
        ways = {
            "score FILMS": ["score", str(work / "films")],
            "score --dicomweb URL": ["score", "--dicomweb", pacs.dicomweb],
            "score --dicomweb URL --store-sr": ["score", "--dicomweb", pacs.dicomweb, "--store-sr"],
        }
        for index, (name, args) in enumerate(ways.items()):
            results.append((name, *_timed(args, run, work / f"preds-{index}.parquet")))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--films", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        pacs_or_skip()
    except pytest.skip.Exception as missing:
        raise SystemExit(f"bench.dicomweb: {missing}") from None
    with tempfile.TemporaryDirectory(prefix="bench-dicomweb-") as work:
        results = bench(args.run, args.films, Path(work))
    print(f"{args.films} DX films in Orthanc; each command in a new process:")
    print("| command | wall time | its images/s line |\n|---|---|---|")
    for name, seconds, line in results:
        print(f"| `cxr-fast {name} --model RUN` | {seconds:.1f} s | {line} |")


if __name__ == "__main__":
    main()
