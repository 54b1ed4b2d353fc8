"""One check of a CUDA host, for `make gpu-check` (``make gpu-check PY=python3`` on a host whose
Python has torch and nothing else).

Steps, each skipped with one line ("skipped: no DALI") when what it needs is missing, never
failing for that reason: the gpu-marked tests (pytest), a DALI GPU decode pass (nvJPEG),
AMP training steps, a TensorRT export and its check (Torch-TensorRT), a `cxr-fast score` run;
then one table of images/s. Exit status 1 only when a step that could run failed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ROWS: list[tuple[str, str, str]] = []  # (step, result, images/s)
FAILED: list[str] = []


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def step(name: str, needs: dict[str, str]):
    """Run the decorated function unless a needed module is missing; record its outcome."""

    def wrap(fn):
        missing = [label for module, label in needs.items() if not have(module)]
        if missing:
            ROWS.append((name, f"skipped: no {', '.join(missing)}", ""))
            print(f"{name}: skipped: no {', '.join(missing)}", flush=True)
            return fn
        print(f"{name} ...", flush=True)
        try:
            result, rate = fn()
            ROWS.append((name, result, f"{rate:.1f}" if rate else ""))
        except Exception as exc:  # report and go on: one table at the end
            FAILED.append(name)
            ROWS.append((name, f"FAILED: {type(exc).__name__}: {str(exc)[:160]}", ""))
        print(f"{name}: {ROWS[-1][1]}", flush=True)
        return fn

    return wrap


def films(n: int, size: int = 1024) -> Path:
    """``n`` grey 1024 px JPEG films (random texture) in NORMAL/ and PNEUMONIA/, written with
    torchvision when it is there, else with Pillow."""
    import torch

    out = Path(tempfile.mkdtemp(prefix="cxr-gpu-check-"))
    for i in range(n):
        label = ("NORMAL", "PNEUMONIA")[i % 2]
        (out / label).mkdir(exist_ok=True)
        pixels = (torch.rand(1, size, size) * 255).to(torch.uint8)
        path = out / label / f"film{i:04d}.jpeg"
        if have("torchvision"):
            from torchvision.io import write_jpeg

            write_jpeg(pixels, str(path), quality=90)
        else:
            from PIL import Image

            Image.fromarray(pixels[0].numpy()).save(path, quality=90)
    return out


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device visible to this Python: nothing to check")
        return 1
    gpu = torch.cuda.get_device_name(0)
    print(f"gpu-check on {gpu}, torch {torch.__version__}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    archive = films(256) if have("torchvision") or have("PIL") else None
    if archive is None:
        print("note: neither torchvision nor Pillow: no films to decode or score", flush=True)

    @step("gpu-marked tests", {"pytest": "pytest", "click": "cxr-fast's dependencies"})
    def _tests():
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], cwd=REPO, env=env
        )
        # 5: nothing collected
        if done.returncode not in (0, 5):
            raise RuntimeError(f"pytest exited {done.returncode}")
        return ("passed" if done.returncode == 0 else "no gpu tests collected"), None

    @step("DALI GPU decode (nvJPEG), 224 px", {"nvidia.dali": "DALI", "PIL": "Pillow"})
    def _dali():
        from cxr_fast.contract import PreprocessContract
        from cxr_fast.data.dali_pipeline import DaliLoader
        from cxr_fast.data.discover import discover
        from cxr_fast.data.loader_spec import LoaderSpec

        records = discover(archive)
        contract = PreprocessContract(image_size=224)
        n, started = 0, None
        for _ in range(2):  # the first pass builds the pipeline
            started = time.perf_counter()
            loader = DaliLoader(LoaderSpec(records, contract, 64, workers=4, device="cuda"))
            n = sum(len(b.index) for b in loader)
        torch.cuda.synchronize()
        return f"{n} films", n / (time.perf_counter() - started)

    @step("AMP training steps (cnn, batch 64, 224 px)", {})
    def _train():
        from cxr_fast.models.cnn import PneumoniaCNN  # torch only

        model = PneumoniaCNN().cuda().to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        x = torch.rand(64, 1, 224, 224, device="cuda").to(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (64, 1), device="cuda").float()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        steps = 20
        for i in range(steps + 3):
            if i == 3:
                torch.cuda.synchronize()
                started = time.perf_counter()
            with torch.autocast("cuda", dtype=dtype):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        torch.cuda.synchronize()
        rate = steps * 64 / (time.perf_counter() - started)
        return f"{str(dtype).removeprefix('torch.')} autocast, loss {loss.item():.3f}", rate

    @step(
        "TensorRT export + check, then score with it",
        {"torch_tensorrt": "Torch-TensorRT", "click": "cxr-fast's dependencies"},
    )
    def _trt():
        run = _tiny_run(archive, env)
        out = Path(tempfile.mkdtemp()) / "p.parquet"
        engine = run / "export" / "model.fp16.trt.pt2"
        _cxr(env, "export", str(run), "--format", "tensorrt", "--data", str(archive))
        text = _cxr(env, "score", str(archive), "--model", str(engine), "--out", str(out))
        return "exported, checked, scored", _rate(text)

    @step("cxr-fast score (run folder, --device cuda)", {"click": "cxr-fast's dependencies"})
    def _score():
        run = _tiny_run(archive, env)
        out = Path(tempfile.mkdtemp()) / "p.parquet"
        text = _cxr(env, "score", str(archive), "--model", str(run), "--out", str(out))
        return text.splitlines()[-1][:120] if text else "ok", _rate(text)

    print(f"\n| step | result | images/s |\n|---|---|---:|   ({gpu})")
    for name, result, rate in ROWS:
        print(f"| {name} | {result} | {rate} |")
    return 1 if FAILED else 0


_RUN: list[Path] = []


def _tiny_run(archive: Path, env: dict) -> Path:
    """A resnet18 run trained one epoch on the check's films (once per check)."""
    if not _RUN:
        out = Path(tempfile.mkdtemp()) / "run"
        _cxr(env, "train", "--data", str(archive), "--out", str(out), "--arch", "resnet18")
        _RUN.append(out)
    return _RUN[0]


def _cxr(env: dict, *args: str) -> str:
    extra = ["--epochs", "1", "--folds", "1", "--batch-size", "64"] if args[0] == "train" else []
    done = subprocess.run(
        [sys.executable, "-m", "cxr_fast", *args, *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cxr-fast {args[0]}: {done.stderr.strip()[-300:]}")
    return done.stdout


def _rate(text: str) -> float | None:
    """images/s from score's summary line ("256 images in 1.2 s: 213.3 images/s (...)")."""
    for line in text.splitlines():
        if "images/s" in line:
            return float(line.split(": ")[-1].split(" images/s")[0])
    return None


if __name__ == "__main__":
    sys.exit(main())
