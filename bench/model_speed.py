"""The model alone, per runtime: images/s at the CPU scoring batch (16) on 2 threads for eager
fp32, eager bf16 (what `score` runs without an export on a bf16 CPU), cxr-fast's int8 exports
(torch.ao FX TorchScript, ONNX Runtime QDQ) and the runtimes a user might pick instead
(OpenVINO; torchao PT2E int8 through torch.compile, an AOTInductor package or the
compiler-free lowering), all built here from the run's model.pt (the run folder is only read).
int8 is calibrated on the images `cxr-fast export` calibrates on: up to 256 of the run's
training records.

Rows are timed in interleaved rounds on one real batch (each round times every row once, in
turn) and each row's speed is also given as its ratio to eager fp32 of the same round, which
survives machine load better than images/s (though not between runtimes that thread
differently: docs/benchmarks.md). With --accuracy DIR (a labelled image folder),
each row's ROC-AUC there at the run's own image size, and its largest probability change
against eager fp32.

python -m bench.model_speed RUN [RUN ...] [--sizes 128 224] [--accuracy DIR]
    [--rounds 7] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench import runtimes
from bench.images import DEFAULT_SOURCE
from cxr_fast.data.discover import discover
from cxr_fast.export.exporter import run_records
from cxr_fast.export.verify import iter_images, load_images, roc_auc, select_run_images
from cxr_fast.precision import resolve_precision
from cxr_fast.run_folder import RunInfo, load_run

CPU = torch.device("cpu")
EAGER = "eager fp32 channels_last"


def _rate(forward, x: torch.Tensor, seconds: float) -> float:
    done, started = 0, time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - started < seconds:
            forward(x)
            done += len(x)
    return done / (time.perf_counter() - started)


def calibration_batches(info: RunInfo, contract, batch: int = 32) -> list[torch.Tensor]:
    """The run's int8 calibration images (as `cxr-fast export` picks them) at ``contract``."""
    root = Path(info.config["data"]["root"])
    own = run_records(root, info)
    if own is None:
        raise SystemExit(f"{info.path} lists no training records to calibrate int8 on")
    records = select_run_images(*own, "int8", batch).calibration
    return [x for x, _ in iter_images(records, contract, batch)]


def variants(
    model: torch.nn.Module,
    info: RunInfo,
    contract,
    x: torch.Tensor,
    threads: int,
    folder: Path,
) -> dict[str, Callable]:
    """name -> forward for every runtime buildable here; prints what it skips and how long
    each build took."""
    bf16 = resolve_precision("amp-bf16", CPU)

    def eager_bf16(x):
        with bf16.autocast(model):
            return model(x)

    found = {EAGER: model, "eager bf16 autocast": eager_bf16}
    calibration = calibration_batches(info, contract)
    where = f"{info.arch} {contract.image_size} px"

    def build(name: str, make: Callable[[], Callable], row: bool = True):
        """make(), timed; its result is a row unless ``row`` is False; None when skipped."""
        started = time.perf_counter()
        try:
            built = make()
        except runtimes.Skipped as skip:
            print(f"{where}: {name}: skipped: {skip}")
            return None
        print(f"{where}: {name}: built in {time.perf_counter() - started:.0f} s")
        if row:
            found[name] = built
        return built

    build(
        "cxr-fast int8 (torch.ao FX, TorchScript)",
        lambda: runtimes.fx_int8(model, x, calibration, info.arch),
    )
    build(
        "ONNX Runtime int8 (static QDQ, per-channel)",
        lambda: runtimes.onnx_int8(model, x, calibration, folder),
    )

    def openvino():
        forward, precision = runtimes.openvino(model, x, threads)
        print(f"{where}: OpenVINO inference precision: {precision}")
        return forward

    build(f"OpenVINO ({runtimes.OPENVINO_HINT} hint)", openvino)
    quantized = build(
        "torchao PT2E int8 (prepare, calibrate, convert)",
        lambda: runtimes.pt2e_int8(model, x, calibration),
        row=False,
    )
    if quantized is None:
        return found
    build(
        "torchao PT2E int8, lower_pt2e_quantized_to_x86 (no compiler)",
        lambda: runtimes.pt2e_lowered(quantized, x),
    )

    def compiled():
        try:
            forward, seconds = runtimes.pt2e_compiled(quantized, x)
        except Exception as exc:  # inductor without a C++ compiler, among others
            raise runtimes.Skipped(f"torch.compile failed: {str(exc).splitlines()[0]}") from exc
        print(f"{where}: torchao PT2E int8 torch.compile: first call (compile) {seconds:.0f} s")
        return forward

    build("torchao PT2E int8, torch.compile (inductor, freezing)", compiled)

    def aoti():
        try:
            return runtimes.pt2e_aoti(quantized, x, folder)
        except Exception as exc:  # no C++ compiler on the building host, among others
            raise runtimes.Skipped(f"AOTInductor failed: {str(exc).splitlines()[0]}") from exc

    build(
        "torchao PT2E int8, AOTInductor package (compiled ahead, loaded without a compiler)", aoti
    )
    return found


def _time(forwards: dict, x: torch.Tensor, rounds: int, seconds: float) -> dict[str, list]:
    """name -> [(images/s, ratio to eager fp32 of the same round)] per round."""
    for forward in forwards.values():
        _rate(forward, x, 0.3)  # warm-up: allocation, kernel choice, sessions
    rows: dict[str, list] = {name: [] for name in forwards}
    for _ in range(rounds):
        rates = {name: _rate(forward, x, seconds) for name, forward in forwards.items()}
        for name, rate in rates.items():
            rows[name].append((rate, rate / rates[EAGER]))
    return rows


def _padded_probabilities(forward, x: torch.Tensor, batch: int) -> torch.Tensor:
    """sigmoid(logits) in batches of exactly ``batch`` (the last one padded): compiled and
    lowered graphs were built for that batch size."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            chunk = x[start : start + batch]
            n = len(chunk)
            if n < batch:
                chunk = torch.cat([chunk, chunk[:1].expand(batch - n, *chunk.shape[1:])])
            chunk = chunk.contiguous(memory_format=torch.channels_last)
            out.append(torch.sigmoid(forward(chunk).float()).reshape(-1)[:n])
    return torch.cat(out).double()


def accuracy(forwards: dict, data: Path, contract, batch: int) -> dict[str, tuple]:
    """name -> (ROC-AUC on ``data``, max |p - p(eager fp32)|)."""
    x, y = load_images(discover(data), contract)
    probs = {name: _padded_probabilities(f, x, batch) for name, f in forwards.items()}
    return {
        name: (roc_auc(y.numpy(), p.numpy()), float((p - probs[EAGER]).abs().max()))
        for name, p in probs.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model_speed", description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", help="image sizes (default: the run's)")
    parser.add_argument("--accuracy", type=Path, help="labelled folder for ROC-AUC per runtime")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    speed, correct = [], []
    with tempfile.TemporaryDirectory(prefix="bench-model-speed-") as tmp:
        for run in args.runs:
            model, info = load_run(run, CPU)
            for size in args.sizes or [info.contract.image_size]:
                contract = dataclasses.replace(info.contract, image_size=size)
                x, _ = load_images(discover(DEFAULT_SOURCE)[: args.batch], contract)
                forwards = variants(model, info, contract, x, args.threads, Path(tmp))
                for name, values in _time(forwards, x, args.rounds, args.seconds).items():
                    rates, ratios = zip(*values, strict=True)
                    speed.append(
                        f"| {info.arch} | {size} | {name} | {statistics.median(rates):.0f} | "
                        f"{min(rates):.0f}-{max(rates):.0f} | {statistics.median(ratios):.2f}x "
                        f"({min(ratios):.2f}-{max(ratios):.2f}) |"
                    )
                if args.accuracy and size == info.contract.image_size:
                    for name, (auc, diff) in accuracy(
                        forwards, args.accuracy, contract, args.batch
                    ).items():
                        correct.append(
                            f"| {info.arch} | {size} | {name} | {auc:.4f} | {diff:.4f} |"
                        )
    print(
        f"\n| arch | px | runtime | images/s (median of {args.rounds}) | min-max | "
        "vs eager fp32, same round (median, range) |"
    )
    print("|---|---:|---|---:|---:|---:|")
    print("\n".join(speed))
    if correct:
        print(
            f"\n| arch | px | runtime | ROC-AUC on {args.accuracy} | max \\|p - p(eager fp32)\\| |"
        )
        print("|---|---:|---|---:|---:|")
        print("\n".join(correct))


if __name__ == "__main__":
    main()
