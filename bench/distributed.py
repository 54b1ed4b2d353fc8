"""Training images/s with 1 and 2 torchrun processes on this host, the same data and cores.

    python -m bench.distributed [--data DIR] [--arch cnn] [--epochs 2]

Each configuration runs `torchrun --standalone --nproc-per-node N -m cxr_fast train` into a
fresh run folder; the rate is the last epoch's `train_images_per_s` (summed over processes) from
train_log.jsonl. The cores are shared fairly: N processes get cores/N model threads and
cores/N DataLoader workers each (``--workers`` is the host's, shared by its processes), so 1
and 2 processes use the same CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.images import fullres_images


def train_rate(data: Path, procs: int, arch: str, epochs: int, size: int, batch: int) -> dict:
    """One torchrun training job; its last epoch's rate and the wall time."""
    cores = os.cpu_count() or 1
    share = max(1, cores // procs)
    out = Path(tempfile.mkdtemp()) / "run"
    env = {**os.environ, "OMP_NUM_THREADS": str(share)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(procs), "-m", "cxr_fast", "train",
        "--data", str(data), "--out", str(out), "--arch", arch, "--epochs", str(epochs),
        "--image-size", str(size), "--batch-size", str(batch), "--workers", str(cores),
        "--device", "cpu", "--loader", "torch", "--val-fraction", "0.2",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {
        "processes": procs,
        "threads_and_workers_each": share,
        "images_per_s": log[-1]["train_images_per_s"],
        "epoch_s": log[-1]["seconds"],
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: 200 generated films")
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    args = parser.parse_args(argv)
    data = args.data or fullres_images(200)
    print(f"{args.arch} at {args.image_size} px, batch {args.batch_size} per process, {data}")
    print("| processes | threads + workers each | images/s (last epoch) | epoch s | job wall s |")
    print("|---:|---:|---:|---:|---:|")
    for procs in (1, 2):
        r = train_rate(data, procs, args.arch, args.epochs, args.image_size, args.batch_size)
        print(
            f"| {r['processes']} | {r['threads_and_workers_each']} | {r['images_per_s']:.1f} "
            f"| {r['epoch_s']:.1f} | {r['wall_s']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
