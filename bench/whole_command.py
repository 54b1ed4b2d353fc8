"""Whole commands, process start to Parquet, as a user times them: ``cxr-fast score`` beside the
plain torchvision scorer (bench/plain_scorer.py) on the same full-resolution films.

python -m bench.whole_command --run-resnet18 RUN --run-cnn RUN [--n 1000] [--repeats 3]

Every variant is a fresh process (imports, model load, worker start-up and the Parquet write
count). The variants run interleaved, round after round, so a busy machine slows all of them
alike; each round's ratio is against the plain scorer of the same round, and the table gives
the median ratio and its range over the rounds.

Variants per architecture: the plain scorer; ``score --model RUN`` with no other flag on the
run without an export (eager, ``--precision auto``, a run trained with ``--export none``), on a
copy whose RUN/export/ holds what ``cxr-fast train`` leaves there by default (the export of
``export --format auto``), and on a copy whose RUN/export/ holds the TorchScript (FX) and ONNX
Runtime int8 exports (``--backend auto`` picks the one measured faster at export);
``score --model FILE`` for each int8 export; the run as ``train`` leaves it on the same films
without class folders (a hospital archive: no labels, so no metrics and no scikit-learn import
at the end; the plain scorer needs the class folders and reads the labelled layout); the run as
``train`` leaves it with the head start off (cxr_fast/scoring/head_start.py); and the
decode-only ceiling (``cxr-fast data stream``, the same loader and workers with no model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.images import CACHE, fullres_images
from bench.report import host_info
from cxr_fast.run_folder import sha256
from cxr_fast.scoring.head_start import ENV_SWITCH as HEAD_START_SWITCH

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _cxr(*args: str) -> list[str]:
    return [PY, "-m", "cxr_fast", *args]


def _timed(command: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0:  # reported, and left out of the medians: one failure is no result
        print(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return float("nan")
    return seconds


def unlabelled_view(images: Path) -> Path:
    """A flat folder of links to every image under ``images``: the same films as an archive
    without NORMAL/PNEUMONIA folders (made once, next to the images' cache)."""
    view = CACHE / "whole" / f"unlabelled-{images.name}"
    files = sorted(p for p in images.rglob("*") if p.is_file())
    if not view.is_dir() or len(list(view.iterdir())) != len(files):
        shutil.rmtree(view, ignore_errors=True)
        view.mkdir(parents=True)
        for i, path in enumerate(files):
            (view / f"{i:05d}_{path.name}").symlink_to(path.resolve())
    return view


def _prepare(arch: str, run: Path, images: Path) -> dict[str, list[str]]:
    """The commands to time for one run: name -> argv."""
    # One folder per model.pt: a cached copy of another run must never be timed in its place.
    work = CACHE / "whole" / f"{arch}-{sha256(run / 'model.pt')[:12]}"
    plain_run = work / "run"  # a copy without exports: what `score --model RUN` does bare
    trained_run = work / "run-trained"  # what `train` leaves: the `export --format auto` file
    fast_run = work / "run-exported"  # a copy with both int8 exports
    for copy in (plain_run, trained_run, fast_run):
        if not (copy / "model.pt").exists():
            shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export", "last.pt"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if not list((trained_run / "export").glob("*.json")):
        args = ["export", str(trained_run), "--format", "auto"]
        done = subprocess.run(_cxr(*args), env=env, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            print(f"note: {' '.join(args)}: {done.stderr.strip()[-300:]}", file=sys.stderr)
    wanted = {"torchscript": "model.int8.ts", "onnx": "model.int8.onnx"}
    for fmt, precision in (("torchscript", "int8"), ("onnx", "int8")):
        if (fast_run / "export" / f"{wanted[fmt]}.json").exists():
            continue  # made by an earlier run of the benchmark from the same copy
        args = ["export", str(fast_run), "--format", fmt]
        if precision:
            args += ["--precision", precision]
        done = subprocess.run(_cxr(*args), env=env, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            print(f"note: {' '.join(args)}: {done.stderr.strip()[-300:]}", file=sys.stderr)
    out = work / "out"
    out.mkdir(exist_ok=True)
    commands = {
        "plain": [PY, "-m", "bench.plain_scorer", str(images), str(plain_run), str(out / "p.pq")],
        "score RUN (no export)": _cxr(
            "score",
            str(images),
            "--model",
            str(plain_run),
            "--out",
            str(out / "a.pq"),
            "--overwrite",
        ),
        "score RUN (as `train` leaves it: RUN/export/ holds the auto export)": _cxr(
            "score",
            str(images),
            "--model",
            str(trained_run),
            "--out",
            str(out / "t.pq"),
            "--overwrite",
        ),
        "score RUN (RUN/export/ holds int8 exports)": _cxr(
            "score",
            str(images),
            "--model",
            str(fast_run),
            "--out",
            str(out / "b.pq"),
            "--overwrite",
        ),
    }
    # What the head start gains: the same command with it switched off.
    commands["score RUN (as `train` leaves it), head start off"] = [
        "env",
        f"{HEAD_START_SWITCH}=0",
        *_cxr("score", str(images), "--model", str(trained_run), "--out", str(out / "s.pq")),
        "--overwrite",
    ]
    commands["score ARCHIVE without class folders (as `train` leaves it)"] = _cxr(
        "score",
        str(unlabelled_view(images)),
        "--model",
        str(trained_run),
        "--out",
        str(out / "u.pq"),
        "--overwrite",
    )
    for name in ("torchscript-int8", "onnx-int8"):
        path = (
            fast_run
            / "export"
            / ("model.int8.ts" if name.startswith("torch") else "model.int8.onnx")
        )
        if path.exists():
            commands[f"score FILE ({name})"] = _cxr(
                "score",
                str(images),
                "--model",
                str(path),
                "--out",
                str(out / f"{name}.pq"),
                "--overwrite",
            )
    commands["decode only (data stream)"] = _cxr(
        "data", "stream", str(images), "--batch-size", "16"
    )
    return commands


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.whole_command", description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-resnet18", type=Path, default=None)
    parser.add_argument("--run-cnn", type=Path, default=None)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="leave out commands whose name contains these"
    )
    args = parser.parse_args(argv)
    images = fullres_images(args.n)
    runs = {"resnet18": args.run_resnet18, "cnn": args.run_cnn}
    plan = {arch: _prepare(arch, run, images) for arch, run in runs.items() if run is not None}
    plan = {
        arch: {n: c for n, c in commands.items() if not any(s in n for s in args.skip)}
        for arch, commands in plan.items()
    }
    seconds: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.repeats):
        for arch, commands in plan.items():
            for name, command in commands.items():
                seconds.setdefault((arch, name), []).append(_timed(command))
                print(
                    f"round {round_ + 1} {arch} {name}: {seconds[(arch, name)][-1]:.1f} s",
                    file=sys.stderr,
                )
    print(
        f"{host_info()}; {args.n} films; {args.repeats} interleaved rounds; "
        f"load average at the end: {os.getloadavg()[0]:.1f}\n"
    )
    print("| arch | command | seconds (median) | images/s | vs plain (median, range) |")
    print("|---|---|---:|---:|---:|")
    for arch, commands in plan.items():
        plain = seconds[(arch, "plain")]
        for name in commands:
            pairs = [(p, t) for p, t in zip(plain, seconds[(arch, name)], strict=True)]
            pairs = [(p, t) for p, t in pairs if p == p and t == t]  # NaN: a failed run
            if not pairs:
                continue
            times = [t for _, t in pairs]
            ratios = sorted(p / t for p, t in pairs)
            median = statistics.median(times)
            print(
                f"| {arch} | {name} | {median:.1f} | {args.n / median:.1f} | "
                f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) |"
            )
    (CACHE / "whole" / "seconds.json").write_text(
        json.dumps({f"{a}|{n}": t for (a, n), t in seconds.items()}, indent=1)
    )


if __name__ == "__main__":
    main()
