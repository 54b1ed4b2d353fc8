"""Seconds per Grad-CAM overlay: decode, forward + backward, render, save one PNG.

    python -m bench.explain --run runs/kaggle-cnn224      # the trained Kaggle cnn
    python -m bench.explain                               # a small cnn trained once here

Every PNEUMONIA film of the full-resolution benchmark set (real X-rays upscaled to 1000-2200 px,
the slowest input to decode) and of the committed 224 px Kaggle images, one at a time as
`cxr-fast explain` does. Loading the model is timed apart: `explain` pays it once per call.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.images import DEFAULT_SOURCE, fullres_images
from bench.scoring import bench_run
from cxr_fast.data.discover import discover
from cxr_fast.explain.explainer import Explainer, explain_files
from cxr_fast.labels import CLASS_NAMES


def _pneumonia(root: Path, limit: int) -> list[str]:
    return [r.path for r in discover(root) if r.label == CLASS_NAMES.index("PNEUMONIA")][:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a cnn run folder")
    parser.add_argument("--n", type=int, default=20, help="images per set")
    parser.add_argument("--method", default="gradcam")
    args = parser.parse_args(argv)
    fullres = fullres_images(200)
    run = bench_run("cnn", fullres, args.run)
    started = time.perf_counter()
    explainer = Explainer(run, device="cpu", method=args.method)
    load_s = time.perf_counter() - started
    print(f"model {run} ({explainer.info.arch}, {explainer.layer}) loaded in {load_s:.2f} s")
    print(f"CPU threads: {torch.get_num_threads()}")
    print("| images | n | median s/image | max s/image |\n|---|---:|---:|---:|")
    for name, root in (
        ("full-resolution 1000-2200 px", fullres),
        ("Kaggle 224 px", DEFAULT_SOURCE),
    ):
        paths = _pneumonia(root, args.n)
        explain_files(explainer, paths[:1], Path(tempfile.mkdtemp()))  # warm-up
        times = []
        with tempfile.TemporaryDirectory() as out:
            for path in paths:
                started = time.perf_counter()
                [outcome] = explain_files(explainer, [path], Path(out))
                times.append(time.perf_counter() - started)
                assert outcome.error is None, outcome.error
        print(f"| {name} | {len(times)} | {statistics.median(times):.3f} | {max(times):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
