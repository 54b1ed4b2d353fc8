"""Throughput benchmark: decode + preprocess images/s per loader, beside the torchvision baseline.

python -m bench.throughput            # 200 full-resolution JPEGs -> 224 px (make bench)
python -m bench.throughput --quick    # a few small images, one repeat (CI smoke run)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.baseline import baseline_loader
from bench.images import CACHE, DEFAULT_SOURCE, fullres_images
from bench.report import Row, host_info, markdown, measure, write_results
from bench.scoring import scoring_rows
from bench.training import ARCHS, training_rows
from cxr_fast.choices import SCORE_BATCH_SIZE
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.throughput import stream
from cxr_fast.data.torch_loader import TorchLoader

BASELINE = "baseline"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="benchmark this folder ({NORMAL,PNEUMONIA}/*.jpeg) instead of "
        "generated full-resolution images",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help="real X-rays to upscale (default: the committed test images)",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32, help="decode and training batch")
    parser.add_argument(
        "--score-batch-size",
        type=int,
        default=SCORE_BATCH_SIZE["cpu"],
        help="scoring batch, for cxr-fast and the baseline alike (default: cxr-fast score's "
        "CPU default)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="DALI threads / DataLoader workers, the same for every stage",
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="24 images of 600-1000 px, one repeat: a smoke run for CI",
    )
    parser.add_argument(
        "--only",
        choices=["decode", "train", "score"],
        default=None,
        help="run one section (default: both)",
    )
    for arch in ARCHS:
        parser.add_argument(
            f"--run-{arch}",
            type=Path,
            default=None,
            help=f"trained {arch} run for the scoring rows (default: train a small one)",
        )
    parser.add_argument(
        "--out",
        type=Path,
        default=CACHE / "results",
        help="folder for the JSON and Markdown results of each section",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.warmup = 24, 1, 0
    return args


def _loader_rows(args: argparse.Namespace, root: Path) -> list[Row]:
    records = discover(root)
    contract = PreprocessContract(image_size=args.image_size)
    spec = LoaderSpec(records, contract, args.batch_size, workers=args.workers)
    common = dict(warmup=args.warmup, repeats=args.repeats)
    detail = f"{args.workers} workers, batch {args.batch_size}"
    rows = []
    if dali_available():

        def dali() -> DaliLoader:
            return DaliLoader(spec)

        rows.append(
            measure(
                "dali-cpu",
                f"{args.workers} threads, batch {args.batch_size}",
                lambda: stream(dali).images,
                **common,
            )
        )

    def fallback() -> TorchLoader:
        return TorchLoader(spec)

    rows.append(
        measure(
            "fallback", f"PIL draft decode, {detail}", lambda: stream(fallback).images, **common
        )
    )

    def baseline_pass() -> int:
        loader = baseline_loader(root, args.image_size, args.batch_size, args.workers)
        return sum(x.shape[0] for x, _ in loader)

    rows.append(measure(BASELINE, f"ImageFolder+DataLoader, {detail}", baseline_pass, **common))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a Markdown table, write JSON and Markdown results."""
    args = _parse(argv)
    if args.images is not None:
        root = args.images
    elif args.quick:
        root = fullres_images(args.n, min_size=600, max_size=1000, source=args.source)
    else:
        root = fullres_images(args.n, source=args.source)
    if not root.is_dir():
        print(f"bench: error: no such folder: {root}", file=sys.stderr)
        return 2
    host = host_info()
    sections = []
    if args.only in (None, "decode"):
        rows = _loader_rows(args, root)
        title = (
            f"Decode + preprocess to {args.image_size} px: {rows[0].images} JPEGs from {root.name}"
        )
        sections.append(("throughput", rows, BASELINE, title))
    if args.only in (None, "train"):
        loaders = ("dali", "torch") if dali_available() else ("torch",)
        rows = training_rows(
            root,
            image_size=args.image_size,
            batch_size=args.batch_size,
            workers=args.workers,
            warmup=args.warmup,
            repeats=max(1, args.repeats - 2),
            loaders=loaders,
        )
        title = f"Training step at {args.image_size} px, same files, 1 epoch a pass"
        sections.append(("training", rows, None, title))
    if args.only in (None, "score"):
        runs = {arch: getattr(args, f"run_{arch}") for arch in ARCHS}
        rows = scoring_rows(
            root,
            runs=runs,
            batch_size=args.score_batch_size,
            workers=args.workers,
            warmup=args.warmup,
            repeats=max(1, args.repeats - 2),
        )
        title = f"Model and end-to-end scoring at {args.image_size} px, same files and weights"
        sections.append(("scoring", rows, None, title))
    for name, rows, baseline, title in sections:
        text = markdown(rows, baseline, host, title)
        print(text)
        print(f"results: {write_results(args.out, name, rows, host, text)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
