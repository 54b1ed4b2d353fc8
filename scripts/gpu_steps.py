"""The steps of scripts/gpu_check.py, one per process (that script runs them; run one by hand
to debug it):

    python scripts/gpu_steps.py STEP --device cuda --work DIR --seconds 120 [--quick]

Each step prints one last line, ``GPU_CHECK_RESULT {"status", "numbers", "message"}``; a step
that raises reports ``failed`` with the exception's one line (its traceback goes to this
process's own output, which gpu_check.py keeps in a log, never in its table). Steps share files
under ``--work``: ``films/`` (the scored films), ``train/`` (the tiny run's films), ``run/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULT_MARK = "GPU_CHECK_RESULT "
CORES = os.cpu_count() or 1
# Packages a GPU host may lack, reported by the environment step (found or not).
OPTIONAL = ("nvidia.dali", "torch_tensorrt", "onnxruntime", "pydicom", "flask", "gdcm")


class Skipped(Exception):
    """A step that cannot run here (what it needs is missing): a status, not a failure."""


@dataclass(frozen=True)
class Ctx:
    device: str
    quick: bool
    work: Path
    seconds: float

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def module_present(name: str) -> bool:
    """Whether ``name`` can be found, without importing it (DALI's import takes seconds);
    never raises: ``find_spec("nvidia.dali")`` raises when there is no ``nvidia`` package."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except Exception:  # a missing parent package, or an import blocker
        return False


def module_version(name: str) -> str | None:
    """``name``'s version when it imports (any failure to import is absence: a broken DALI
    raises more than ImportError), else None."""
    import importlib

    try:
        module = importlib.import_module(name)
    except Exception:  # absent, blocked or broken: all the same to the check
        return None
    return str(getattr(module, "__version__", "present"))


def _torch_device(ctx: Ctx):
    import torch

    return torch.device(ctx.device)


def _sync(ctx: Ctx) -> None:
    import torch

    if ctx.cuda:
        torch.cuda.synchronize(ctx.device)


def _peak_mib(ctx: Ctx) -> dict:
    import torch

    if not ctx.cuda:
        return {}
    return {"peak_gpu_mib": round(torch.cuda.max_memory_allocated(ctx.device) / 2**20)}


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.machine()


def _driver() -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no nvidia-smi)"
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else "?"


def _bf16_native(device) -> bool:
    """sm80+ computes bf16 natively; the project's own question where it imports."""
    import torch

    try:
        from cxr_fast.device import cuda_has_native_bf16

        return cuda_has_native_bf16(device)
    except (ImportError, TypeError):  # an older torch without including_emulation
        return torch.cuda.get_device_capability(device) >= (8, 0)


def step_environment(ctx: Ctx) -> tuple[dict, str]:
    import torch

    numbers = {"python": platform.python_version(), "torch": torch.__version__}
    numbers["torchvision"] = module_version("torchvision")
    numbers["cuda_build"] = torch.version.cuda
    numbers["cxr_fast"] = module_version("cxr_fast")
    numbers.update({name: module_present(name) for name in OPTIONAL})
    numbers["cpu"] = _cpu_name()
    numbers["cores"] = CORES
    if not ctx.cuda:
        return numbers, f"torch {torch.__version__} on the CPU ({CORES} cores)"
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"no CUDA device visible to this Python (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda})"
        )
    device = torch.device(ctx.device)
    major, minor = torch.cuda.get_device_capability(device)
    numbers.update(gpu=torch.cuda.get_device_name(device), capability=f"{major}.{minor}")
    numbers["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30)
    numbers.update(driver=_driver(), cudnn=torch.backends.cudnn.version())
    numbers["bf16_native"] = _bf16_native(device)
    message = (
        f"{numbers['gpu']} (sm_{major}{minor}), torch {torch.__version__}, "
        f"torchvision {numbers['torchvision']}, CUDA {torch.version.cuda}, driver "
        f"{numbers['driver']}, bf16 {'native' if numbers['bf16_native'] else 'not native'}"
    )
    return numbers, message


def step_films(ctx: Ctx) -> tuple[dict, str]:
    """Full-resolution films (1000-2200 px, the Kaggle originals' sizes) upscaled with grain
    from the committed real X-rays: 2,000 to score, 128 smaller ones for the tiny run."""
    from cxr_fast.data.discover import discover
    from cxr_fast.data.synth import upscale_real
    from cxr_fast.labels import CLASS_NAMES

    source = REPO / "tests" / "data" / "images" / "kaggle"
    labeled = [
        (Path(r.path), CLASS_NAMES[r.label]) for r in discover(source) if r.label is not None
    ]
    n, low, high = (24, 256, 512) if ctx.quick else (2000, 1000, 2200)
    films = upscale_real(labeled, ctx.work / "films", n, min_size=low, max_size=high, workers=CORES)
    n_train, side = (24, 128) if ctx.quick else (128, 320)
    upscale_real(
        labeled, ctx.work / "train", n_train, seed=1, min_size=side, max_size=side, workers=CORES
    )
    mib = sum(p.stat().st_size for p in films) / 2**20
    numbers = {"films": len(films), "min_px": low, "max_px": high, "mib": round(mib)}
    return numbers, f"{len(films)} films of {low}-{high} px ({mib:.0f} MiB), {n_train} to train"


def _stream_rate(ctx: Ctx, records, loader: str) -> float:
    """images/s of a scoring loader over ``records`` after a warm-up pass over a few."""
    from cxr_fast.contract import PreprocessContract
    from cxr_fast.data.loader_spec import LoaderSpec
    from cxr_fast.data.loaders import make_scoring_loader
    from cxr_fast.data.throughput import stream

    batch = 8 if ctx.quick else 64
    contract = PreprocessContract(image_size=224)

    def spec(part):
        return LoaderSpec(part, contract, batch, workers=CORES, device=ctx.device)

    if not ctx.quick:  # the first pass starts CUDA, nvJPEG and the workers
        stream(lambda: make_scoring_loader(spec(records[: 2 * batch]), loader))
    return stream(lambda: make_scoring_loader(spec(records), loader)).images_per_second


def _decode_only_rate(ctx: Ctx, records) -> float:
    """images/s of torchvision's decode_jpeg and the contract alone, the bytes in memory."""
    from cxr_fast.contract import PreprocessContract
    from cxr_fast.data.nvjpeg import decode_batch, read_bytes

    batch = 8 if ctx.quick else 64
    datas = [read_bytes(r.path) for r in records[: 4 * batch]]
    contract, device = PreprocessContract(image_size=224), _torch_device(ctx)
    decode_batch(datas[:batch], contract, device)  # warm-up: nvJPEG's state, CUDA kernels
    _sync(ctx)
    started = time.perf_counter()
    for i in range(0, len(datas), batch):
        decode_batch(datas[i : i + batch], contract, device)
    _sync(ctx)
    return len(datas) / (time.perf_counter() - started)


def step_decode(ctx: Ctx) -> tuple[dict, str]:
    """Decode throughput of the full-resolution films to 224 px model input: nvJPEG (torchvision)
    through the scoring loader and alone, PIL's loader beside it, DALI where it imports."""
    from cxr_fast.data.discover import discover

    records = discover(ctx.work / "films")
    numbers = {"films": len(records), "decode_jpeg_only_per_s": _decode_only_rate(ctx, records)}
    loaders = ["nvjpeg", "torch"] + (["dali"] if module_version("nvidia.dali") else [])
    for loader in loaders:
        numbers[f"{loader}_loader_per_s"] = _stream_rate(ctx, records, loader)
    numbers.update(_peak_mib(ctx))
    rates = ", ".join(f"{name} {numbers[f'{name}_loader_per_s']:.0f}" for name in loaders)
    dali = "" if "dali" in loaders else "; DALI skipped: not importable"
    return numbers, f"images/s at 224 px: {rates} (loaders, {CORES} workers){dali}"


def _train_rate(ctx: Ctx, arch: str, amp) -> tuple[float, int | None]:
    """Training steps/s x batch of ``arch`` on random input: ``amp`` None is fp32 eager in
    the default layout, else autocast to that dtype with channels_last (GradScaler for fp16).
    Also the peak GPU memory (MiB) of the run."""
    import torch

    from cxr_fast.models.registry import build_model

    batch, size, warmup, steps = (2, 32, 1, 1) if ctx.quick else (64, 224, 5, 20)
    device = _torch_device(ctx)
    layout = torch.channels_last if amp is not None else torch.contiguous_format
    model = build_model(arch).to(device, memory_format=layout).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    x = torch.rand(batch, 1, size, size, device=device).to(memory_format=layout)
    y = torch.randint(0, 2, (batch, 1), device=device).float()
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(ctx)
            started = time.perf_counter()
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    _sync(ctx)
    rate = steps * batch / (time.perf_counter() - started)
    return rate, _peak_mib(ctx).get("peak_gpu_mib")


def step_train_speed(ctx: Ctx) -> tuple[dict, str]:
    """Training images/s of resnet18 and resnet50: bf16 autocast + channels_last against fp32
    eager (fp16 with GradScaler where the GPU has no native bf16)."""
    import torch

    amp = torch.bfloat16
    if ctx.cuda and not _bf16_native(_torch_device(ctx)):
        amp = torch.float16
    if ctx.cuda:
        torch.backends.cudnn.benchmark = True  # as training sets it: fixed shapes
    numbers, parts = {"amp": str(amp).removeprefix("torch.")}, []
    # --quick: the plumbing once (resnet50 on a CPU adds half a minute and says nothing).
    for arch in ("resnet18",) if ctx.quick else ("resnet18", "resnet50"):
        fp32, fp32_mib = _train_rate(ctx, arch, None)
        fast, fast_mib = _train_rate(ctx, arch, amp)
        numbers.update({f"{arch}_fp32_per_s": fp32, f"{arch}_amp_per_s": fast})
        numbers[f"{arch}_ratio"] = fast / fp32
        if fp32_mib is not None:
            numbers[f"{arch}_fp32_peak_gpu_mib"] = fp32_mib
            numbers[f"{arch}_amp_peak_gpu_mib"] = fast_mib
        parts.append(f"{arch} {fast:.0f} vs {fp32:.0f} images/s ({fast / fp32:.2f}x)")
    return numbers, f"{numbers['amp']} autocast channels_last vs fp32 eager: " + "; ".join(parts)


def _cxr(ctx: Ctx, *args: str, module: str = "cxr_fast") -> tuple[float, str]:
    """Run ``python -m cxr_fast ARGS`` (or another module): (seconds, its stdout). Its process
    group is gpu_check.py's step group, so a timeout there ends it too."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)  # into the step's log
    if done.returncode != 0:
        lines = [x for x in done.stderr.splitlines() if x.strip() and "Traceback" not in x]
        tail = lines[-1].strip()[:240] if lines else f"exit {done.returncode}"
        raise RuntimeError(f"{module} {args[0]}: {tail}")
    return seconds, done.stdout


def step_tiny_run(ctx: Ctx) -> tuple[dict, str]:
    """A resnet18 run of one epoch on the small films, for the export and score steps."""
    size = "64" if ctx.quick else "224"
    seconds, out = _cxr(
        ctx, "train", "--data", str(ctx.work / "train"), "--out", str(ctx.work / "run"),
        "--arch", "resnet18", "--epochs", "1", "--folds", "1", "--image-size", size,
        "--batch-size", "8" if ctx.quick else "32", "--export", "none", "--no-gate",
        "--device", ctx.device, "--workers", str(CORES),
    )  # fmt: skip
    return {"train_seconds": seconds}, (out.strip().splitlines() or ["trained"])[-1][:200]


def step_export(ctx: Ctx) -> tuple[dict, str]:
    """TorchScript and pt2 exports of the tiny run on the device, each checked against the
    eager model by the export stage itself (a failed check raises), in this one process."""
    from cxr_fast.export.export_stage import ExportConfig, run_export

    numbers, parts, failures = {}, [], []
    for fmt in ("torchscript", "pt2"):
        config = ExportConfig(
            run=ctx.work / "run", format=fmt, data=ctx.work / "train", device=ctx.device,
            overwrite=True, batch_size=8 if ctx.quick else 32,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            result = run_export(config)
        except Exception as exc:  # one format's failure is reported beside the other's outcome
            traceback.print_exc()
            failures.append(f"{fmt}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        numbers[f"{fmt}_seconds"] = time.perf_counter() - started
        numbers[f"{fmt}_max_diff"] = result.max_abs_diff
        numbers[f"{fmt}_tolerance"] = result.tolerance
        parts.append(f"{fmt} {result.precision} checked ({result.max_abs_diff:.1e})")
    if failures:
        raise RuntimeError("; ".join(failures + parts))
    return numbers, ", ".join(parts) + " against eager"


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def step_score(ctx: Ctx) -> tuple[dict, str]:
    """The whole `cxr-fast score` command on the films against the plain torchvision scorer
    (ImageFolder + DataLoader, eager fp32 resnet18 at the run's size): each a fresh process."""
    films, run, work = ctx.work / "films", ctx.work / "run", ctx.work
    n = sum(1 for p in films.rglob("*.jpeg"))
    batch = "8" if ctx.quick else "64"
    plain, _ = _cxr(
        ctx, str(films), str(run), str(work / "plain.parquet"), "--workers", str(CORES),
        "--batch-size", batch, "--device", ctx.device, module="bench.plain_scorer",
    )  # fmt: skip
    score, out = _cxr(
        ctx, "score", str(films), "--model", str(run), "--out", str(work / "score.parquet"),
        "--device", ctx.device, "--overwrite",
    )  # fmt: skip
    rows = {
        "plain_rows": _rows(work / "plain.parquet"),
        "score_rows": _rows(work / "score.parquet"),
    }
    if rows != {"plain_rows": n, "score_rows": n}:
        raise RuntimeError(f"{n} films but {rows}")
    numbers = {"films": n, "plain_seconds": plain, "score_seconds": score, **rows}
    numbers["plain_per_s"], numbers["score_per_s"] = n / plain, n / score
    numbers["speedup"] = plain / score
    line = next((x for x in out.splitlines() if "images/s" in x), "")
    return numbers, f"score {score:.1f} s vs plain {plain:.1f} s ({plain / score:.2f}x): {line}"


def _pytest_files(ctx: Ctx) -> list[str]:
    """The test files holding gpu-marked tests (only they are collected: the other modules
    import what a GPU host may lack); --quick keeps tests/data's, the plumbing only."""
    found = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if "mark.gpu" in path.read_text(errors="replace"):
            found.append(str(path.relative_to(REPO)))
    return [f for f in found if f.startswith("tests/data/")] if ctx.quick else found


def _pytest_counts(text: str) -> dict:
    """passed/failed/skipped/error counts from pytest's -v lines (also of a run cut short)."""
    counts = {}
    for word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
        counts[word.lower()] = len(re.findall(rf"::\S+ {word}\b", text))
    return counts


def step_pytest_gpu(ctx: Ctx) -> tuple[dict, str]:
    """`pytest -m gpu` over the files with gpu tests, stopped before the step's own timeout so
    what ran is still counted."""
    if module_version("pytest") is None:
        raise Skipped("no pytest in this Python")
    files = _pytest_files(ctx)
    log = ctx.work / "pytest_gpu.log"
    command = [sys.executable, "-m", "pytest", "-v", "-m", "gpu", "-p", "no:cacheprovider", *files]
    limit = max(10.0, ctx.seconds - 15)
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    text = log.read_text(errors="replace")
    sys.stdout.write(text)
    counts = _pytest_counts(text)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    failed = re.findall(r"(\S+::\S+) (?:FAILED|ERROR)", text)
    if code is None:
        raise RuntimeError(f"timed out after {limit:.0f} s: {summary}; failed: {failed[:5]}")
    if code not in (0, 5):  # 5: nothing selected
        raise RuntimeError(f"pytest exited {code}: {summary or _tail(text)}; failed: {failed[:8]}")
    return counts, f"{summary or 'no gpu tests selected'} in {len(files)} files"


def _tail(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip() and "Traceback" not in x]
    return lines[-1][:200] if lines else "no output"


STEPS = {
    "environment": step_environment,
    "films": step_films,
    "decode": step_decode,
    "train_speed": step_train_speed,
    "tiny_run": step_tiny_run,
    "export": step_export,
    "score": step_score,
    "pytest_gpu": step_pytest_gpu,
}


def _jsonable(numbers: dict) -> dict:
    """Floats to 4 significant digits (a 2e-07 export difference must not read as 0)."""
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in numbers.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_steps.py")
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    ctx = Ctx(args.device, args.quick, args.work, args.seconds)
    result = {"status": "ok", "numbers": {}, "message": ""}
    try:
        numbers, message = STEPS[args.step](ctx)
        result.update(numbers=_jsonable(numbers), message=message)
    except Skipped as why:
        result.update(status="skipped", message=str(why))
    except Exception as exc:  # a step's failure is its row, never a crash of the check
        traceback.print_exc()  # into the step's log only
        text = str(exc).strip().splitlines()
        result.update(status="failed", message=f"{type(exc).__name__}: {text[0] if text else ''}")
    sys.stdout.flush()
    print("\n" + RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
