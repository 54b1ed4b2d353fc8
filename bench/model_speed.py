"""The model alone, images/s at the CPU scoring batch (16) on 2 threads: eager fp32, eager bf16
(what `score` runs without an export on a bf16 CPU), and every export in RUN/export/, timed in
interleaved rounds on one real batch so that machine load hits all of them alike.

python -m bench.model_speed RUN [RUN ...] [--rounds 7] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.images import DEFAULT_SOURCE
from cxr_fast.data.discover import discover
from cxr_fast.export import load_exported
from cxr_fast.export.common import EXPORT_DIR
from cxr_fast.export.verify import load_images
from cxr_fast.precision import resolve_precision
from cxr_fast.run_folder import load_run

CPU = torch.device("cpu")


def _rate(forward, x: torch.Tensor, seconds: float) -> float:
    done, started = 0, time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - started < seconds:
            forward(x)
            done += len(x)
    return done / (time.perf_counter() - started)


def variants(run: Path) -> dict:
    """name -> forward for the run's eager model (fp32, bf16) and each of its exports."""
    model, info = load_run(run, CPU)
    bf16 = resolve_precision("amp-bf16", CPU)

    def eager_bf16(x):
        with bf16.autocast(model):
            return model(x)

    found = {"eager fp32 channels_last": model, "eager bf16 autocast": eager_bf16}
    for side in sorted((run / EXPORT_DIR).glob("*.json")):
        path = side.with_name(side.name.removesuffix(".json"))
        forward, sidecar = load_exported(path)
        found[f"{sidecar['format']} {sidecar['precision']}"] = forward
    return found, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model_speed", description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"| run | runtime | images/s (median of {args.rounds}) | min-max |")
    print("|---|---|---:|---:|")
    for run in args.runs:
        forwards, info = variants(run)
        x, _ = load_images(discover(DEFAULT_SOURCE)[: args.batch], info.contract)
        for forward in forwards.values():
            _rate(forward, x, 0.3)  # warm-up: allocation, kernel choice, ORT session
        rates: dict[str, list[float]] = {name: [] for name in forwards}
        for _ in range(args.rounds):
            for name, forward in forwards.items():
                rates[name].append(_rate(forward, x, args.seconds))
        for name, values in rates.items():
            print(
                f"| {info.arch} | {name} | {statistics.median(values):.0f} | "
                f"{min(values):.0f}-{max(values):.0f} |"
            )


if __name__ == "__main__":
    main()
