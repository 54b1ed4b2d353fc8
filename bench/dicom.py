"""DICOM scoring throughput beside the JPEG rows: the same full-resolution films as JPEG files
and as DICOM, uncompressed (12-bit), JPEG Baseline (the JPEG bytes themselves, encapsulated),
JPEG Lossless SV1 and JPEG 2000 lossless (12-bit), scored end to end by ``run_score``.

    python -m bench.dicom --run runs/r18 --n 200
    python -m bench.dicom --n 16 --repeats 1          # a tiny cnn is trained once if no --run

Rows: ``score-jpeg-<loader>`` and ``score-dicom-<syntax>-<loader>``, images/s (median).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

from bench.images import CACHE, fullres_images
from bench.report import Row, measure
from cxr_fast.scoring.score import ScoreConfig, run_score

SYNTAXES = {
    "uncompressed": uid.ExplicitVRLittleEndian,
    "jpeg-baseline": uid.JPEGBaseline8Bit,
    "jpeg-lossless": uid.JPEGLosslessSV1,
    "jpeg2000": uid.JPEG2000Lossless,
}


def _dicom(jpeg: Path, syntax: str, index: int) -> Dataset:
    film = np.asarray(Image.open(jpeg).convert("L"))
    bits = 8 if syntax == uid.JPEGBaseline8Bit else 12
    pixels = film if bits == 8 else film.astype(np.uint16) * 16
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.ComputedRadiographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
        f"1.2.826.0.1.3680043.8.498.{index}"
    )
    ds.Modality, ds.ViewPosition, ds.Rows, ds.Columns = "CR", "PA", *film.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
        8 if bits == 8 else 16,
        bits,
        bits - 1,
        0,
    )
    if syntax == uid.ExplicitVRLittleEndian:
        ds.PixelData = pixels.astype("<u2").tobytes()
        return ds
    frame = {
        uid.JPEGBaseline8Bit: lambda: (
            jpeg.read_bytes()
            if Image.open(jpeg).mode == "L"
            else imagecodecs.jpeg8_encode(film, level=90)
        ),
        uid.JPEGLosslessSV1: lambda: imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=1),
        uid.JPEG2000Lossless: lambda: imagecodecs.jpeg2k_encode(
            pixels, reversible=True, codecformat="J2K"
        ),
    }[syntax]()
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return ds


def dicom_copies(images: Path, name: str) -> Path:
    """``images`` as DICOM with one transfer syntax, generated once and cached."""
    out = CACHE / f"{images.name}-dicom-{name}"
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for index, jpeg in enumerate(sorted(images.rglob("*.jpeg"))):
        _dicom(jpeg, SYNTAXES[name], index).save_as(
            out / f"{jpeg.stem}.dcm", enforce_file_format=True
        )
    (out / ".complete").write_text("ok\n")
    return out


def _score(archive: Path, run: Path, loader: str, workers: int) -> int:
    out = CACHE / "dicom-bench.parquet"
    summary = run_score(
        ScoreConfig(archive=archive, model=run, out=out, loader=loader, device="cpu",
                    workers=workers, overwrite=True)
    )  # fmt: skip
    if summary.errors:
        raise SystemExit(f"{summary.errors} errors scoring {archive}")
    return summary.scored


def _tiny_run(images: Path) -> Path:
    from cxr_fast.training.config import TrainConfig
    from cxr_fast.training.trainer import run_train

    out = CACHE / "runs" / f"cnn64-{images.name}"
    if not (out / "model.pt").exists():
        run_train(
            TrainConfig(data=str(images), out=str(out), epochs=1, image_size=64, batch_size=16,
                        workers=0, val_fraction=0.25, folds=1, export="none"),
            log=lambda _: None,
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="run folder (default: a tiny cnn)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--min-size", type=int, default=1000)
    parser.add_argument("--max-size", type=int, default=2200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = fullres_images(args.n, min_size=args.min_size, max_size=args.max_size)
    run = args.run or _tiny_run(images)
    cases = [("score-jpeg-torch", images, "torch"), ("score-jpeg-dali", images, "dali")]
    for name in SYNTAXES:
        cases.append((f"score-dicom-{name}-torch", dicom_copies(images, name), "torch"))
    cases.append(("score-dicom-jpeg-baseline-dali", dicom_copies(images, "jpeg-baseline"), "dali"))
    rows: list[Row] = []
    for stage, archive, loader in cases:
        score = lambda a=archive, lo=loader: _score(a, run, lo, args.workers)  # noqa: E731
        rows.append(measure(stage, f"{args.n} films", score, warmup=0, repeats=args.repeats))
        print(f"{stage:34s} {rows[-1].median:8.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
