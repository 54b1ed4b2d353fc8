"""Peak memory of `cxr-fast score` on films that are small on disk and huge decoded (issue 26).

    python -m bench.huge_pngs --run RUN                          # 4 x 9400x9400 16-bit RGBA
    python -m bench.huge_pngs --run RUN -- --workers 4 --batch-size 1
    python -m bench.huge_pngs --run RUN --archive FOLDER         # any other folder, to compare
    python -m bench.huge_pngs --head-start 4                     # a 5-core host's head start

Each generated PNG is 0.7 MB on disk (every row the same, PNG filter Up: zeros to deflate) and
9400 x 9400 x 4 x 2 bytes = 707 MB of samples, under every size limit. The command runs in a
child process; reported: the peak sum of PSS over it and its workers (the memory they really
use), the peak sum of RSS, and the largest single process's peak RSS (what `/usr/bin/time -v`
calls its maximum resident set size). Arguments after ``--`` go to `cxr-fast score`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

# bench.memory's sampler, without its imports: this process stays small (no torch), so that
# `/usr/bin/time -v python -m bench.huge_pngs` reports the scorer's processes, not this one.
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench"


def _rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith(("Rss:", "Pss:")):
                    kib = int(line.split()[1]) * 1024
                    rss, pss = (kib, pss) if line.startswith("Rss:") else (rss, kib)
    except OSError:
        pass
    return rss, pss


def tree_memory(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes over ``pid`` and its descendants."""
    total_rss = total_pss = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        rss, pss = _rss_pss(current)
        total_rss, total_pss = total_rss + rss, total_pss + pss
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                stack += [int(child) for child in handle.read().split()]
        except OSError:
            pass
    return total_rss, total_pss


def tree_pss(pid: int) -> int:
    """The sum of PSS over ``pid`` and its descendants, in bytes."""
    return tree_memory(pid)[1]


def write_png16_rgba(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A ``width`` x ``height`` 16-bit RGBA PNG of one grey ramp repeated on every row (PIL
    writes no 16-bit RGBA, so the chunks are written here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ramp = ((np.arange(width, dtype=np.uint32) * 7 + seed * 1000) % 65536).astype(">u2")
    row = np.stack([ramp, ramp, ramp, np.full(width, 65535, ">u2")], axis=1).tobytes()
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(b"\x00" + row)]
    same = b"\x02" + bytes(len(row))  # filter Up: the row above, again
    parts += [deflate.compress(same) for _ in range(height - 1)]
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)  # 16 bits, RGBA
    body = chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def huge_archive(n: int, size: int) -> Path:
    """``n`` generated PNGs of ``size`` px, once per (n, size)."""
    folder = CACHE / f"huge-png-{n}-{size}"
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_png16_rgba(folder / f"huge{i}.png", size, size, seed=i)
        (folder / ".complete").write_text("ok\n")
    return folder


def measure(command: list[str], interval: float = 0.05) -> dict:
    """Run ``command``; its tree's peak PSS and RSS sums, largest process RSS, seconds."""
    started = time.perf_counter()
    child = subprocess.Popen(command)
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, pss = tree_memory(child.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    done.set()
    sampler.join()
    mib = 2**20
    return {
        "exit": code,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_pss_sum_mib": round(peak[1] / mib),
        "peak_rss_sum_mib": round(peak[0] / mib),
        # ru_maxrss of the children: the largest one's peak, in KiB on Linux.
        "max_rss_one_process_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        ),
    }


def measure_head_start(archive: Path, processes: int, seconds: float) -> dict:
    """The scorer's head start alone, as a host of ``processes`` + 1 cores runs it by default
    (``processes`` decoding processes), for ``seconds``: the peak PSS sum of this process and
    them, and how many films they decoded."""
    from cxr_fast.contract import PreprocessContract
    from cxr_fast.data.discover import discover
    from cxr_fast.scoring.head_start import HeadStart

    records = discover(archive.resolve())
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss(os.getpid()))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    head = HeadStart(records, PreprocessContract(image_size=224), processes)
    time.sleep(seconds)
    decoded = len(head.take())
    done.set()
    sampler.join()
    return {
        "head_start_processes": processes,
        "decoded": decoded,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_pss_sum_mib": round(peak[0] / 2**20),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m bench.huge_pngs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=Path, default=None, help="run folder or export to score with")
    parser.add_argument("--n", type=int, default=4, help="PNGs to generate (default 4)")
    parser.add_argument("--size", type=int, default=9400, help="their side in px (default 9400)")
    parser.add_argument("--archive", type=Path, default=None, help="score this folder instead")
    parser.add_argument(
        "--head-start",
        type=int,
        default=0,
        metavar="P",
        help="measure only the head start with P processes (what a host of P + 1 cores starts) "
        "for 25 s, in this process; --run is not used",
    )
    args = parser.parse_args(argv)
    archive = args.archive or huge_archive(args.n, args.size)
    if args.head_start:
        print(json.dumps(measure_head_start(archive, args.head_start, 25.0), indent=2))
        return 0
    if args.run is None:
        parser.error("--run is needed (a run folder or an export to score with)")
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "cxr_fast", "score", str(archive), "--model"]
        command += [str(args.run), "--out", os.path.join(tmp, "p.parquet"), "--device", "cpu"]
        result = {"archive": str(archive), "options": extra, **measure([*command, *extra])}
    print(json.dumps(result, indent=2))
    return 0 if result["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
