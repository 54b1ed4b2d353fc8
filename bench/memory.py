"""Peak memory of scoring a large archive: RSS of the scorer and its workers, sampled.

    python -m bench.memory --n 20000      # generates 20,000 small films once, then scores them

Memory must stay flat however large the archive: rows stream to disk in chunks, nothing holds
the whole archive's predictions. Reported: the sum of PSS over the scorer and its workers (the
memory they really use: shared library pages are counted once), the plain sum of RSS (which
counts libtorch once per process), and the main process's RSS, overall and per tenth of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from bench.images import CACHE, fullres_images
from bench.scoring import bench_run
from cxr_fast.data.synth import synth_dataset
from cxr_fast.scoring.score import ScoreConfig, run_score

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; PSS splits shared pages (libraries, copy-on-write
    pages of forked workers) between the processes that share them."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(c) for c in handle.read().split()]
    except OSError:
        return []


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(sum of RSS, sum of PSS, RSS of ``pid`` alone) over a process and its descendants."""
    total_rss = total_pss = 0
    own = _memory(pid)[0]
    stack = [pid]
    while stack:
        current = stack.pop()
        rss, pss = _memory(current)
        total_rss += rss
        total_pss += pss
        stack.extend(_children(current))
    return total_rss, total_pss, own


class Sampler(threading.Thread):
    """Samples the process tree's RSS every ``interval`` seconds with the progress so far."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int, tuple[int, int, int]]] = []
        self.progress = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self._stop_event.is_set():
            self.samples.append(
                (time.perf_counter() - start, self.progress, tree_memory(os.getpid()))
            )
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=20000, help="images to score (default 20000)")
    parser.add_argument("--min-size", type=int, default=256)
    parser.add_argument("--max-size", type=int, default=512)
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="trained run to score with (default: the benchmark's small cnn)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=CACHE / "results")
    args = parser.parse_args(argv)

    archive = CACHE / f"memory-{args.n}-{args.min_size}-{args.max_size}"
    if not (archive / ".complete").exists():
        print(f"generating {args.n} films in {archive} (once)", flush=True)
        synth_dataset(
            archive,
            args.n,
            min_size=args.min_size,
            max_size=args.max_size,
            test_fraction=0.0,
            workers=os.cpu_count() or 1,
        )
        (archive / ".complete").write_text("ok\n")
    run = args.run or bench_run("cnn", fullres_images(200), None)
    sampler = Sampler()
    sampler.start()

    def progress(n: int) -> None:
        sampler.progress += n

    summary = run_score(
        ScoreConfig(
            archive=archive,
            model=run,
            out=args.out / "memory.parquet",
            overwrite=True,
            device="cpu",
            workers=args.workers,
        ),
        progress=progress,
    )
    sampler.stop()
    mib = 2**20
    by_decile: dict[int, tuple[int, int, int]] = {}
    for _, done, memory in sampler.samples:
        decile = min(9, 10 * done // max(1, args.n))
        previous = by_decile.get(decile, (0, 0, 0))
        by_decile[decile] = tuple(max(a, b) for a, b in zip(previous, memory, strict=True))
    result = {
        "images": summary.rows,
        "errors": summary.errors,
        "seconds": round(summary.seconds, 1),
        "images_per_second": round(summary.images_per_second, 1),
        "peak_pss_mib": round(max(m[1] for _, _, m in sampler.samples) / mib),
        "peak_rss_sum_mib": round(max(m[0] for _, _, m in sampler.samples) / mib),
        "peak_main_rss_mib": round(max(m[2] for _, _, m in sampler.samples) / mib),
        "peak_by_decile_mib (pss, rss sum, main rss)": {
            f"{10 * d}-{10 * d + 10}%": [round(v / mib) for v in (m[1], m[0], m[2])]
            for d, m in sorted(by_decile.items())
        },
        "samples": len(sampler.samples),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
