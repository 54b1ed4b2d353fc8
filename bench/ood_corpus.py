"""A corpus of inputs that are not chest radiographs, built from what installed packages ship.

Nothing is downloaded: scikit-learn's sample photos, matplotlib's sample images (a portrait, a
photo, a logo, an MR slice), pydicom's test files of other modalities (CT, MR, NM, US,
secondary-capture colour images), text rendered with matplotlib's DejaVu font, synthetic
patterns (constant, gradients, checkerboards, stripes, noise, shapes), and views of real chest
films that are not a frontal chest (a corner crop, the film turned sideways, a negative). Every
file is written as the format a user would meet it in (JPEG, PNG or DICOM), so the corpus goes
through the same decoders as an archive.

    python -m bench.ood_corpus OUT [--chest DIR]

``--chest``: a folder of real chest films to cut the non-frontal views from (the Kaggle
training films by default when present).
"""

from __future__ import annotations

import argparse
import gzip
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Categories of the corpus: the measurement reports each on its own line.
CATEGORIES = ("photo", "text", "pattern", "other-modality", "non-frontal")
_TEXT = (
    "CONSENT FORM  Patient name: ____________  Date of birth: __/__/____\n"
    "I, the undersigned, agree to the radiological examination described\n"
    "above. The risks and benefits have been explained to me. Signature:\n"
    "Referring physician: Dr. A. Example   Department of Radiology\n"
    "Request: chest PA and lateral. Clinical details: cough, fever 3 days.\n"
)


def _photos() -> Iterator[tuple[str, str, Image.Image]]:
    from sklearn.datasets import load_sample_images

    for name, array in zip(("china", "flower"), load_sample_images().images, strict=True):
        image = Image.fromarray(array)
        yield "photo", f"{name}.jpeg", image
        yield "photo", f"{name}-grey.jpeg", image.convert("L")
    data = _mpl_sample_data()
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        image = Image.open(data / name)
        image.load()
        stem = Path(name).stem.lower()
        yield "photo", f"{stem}.png", image
        yield "photo", f"{stem}-grey.png", image.convert("L")


def _mpl_sample_data() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def _text_pages() -> Iterator[tuple[str, str, Image.Image]]:
    import matplotlib

    font_file = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for i, (size, side) in enumerate(((22, 1200), (36, 1600), (16, 900))):
        font = ImageFont.truetype(str(font_file), size)
        page = Image.new("L", (side, int(side * 1.3)), 250)
        draw = ImageDraw.Draw(page)
        y = 40
        while y < page.height - 4 * size:
            draw.multiline_text((40, y), _TEXT, fill=20, font=font, spacing=size // 3)
            y += 6 * size + 20
        yield "text", f"page-{i}.png", page
        yield "text", f"page-{i}-dark.jpeg", Image.eval(page, lambda v: 255 - v)


def _patterns(rng: np.random.Generator) -> Iterator[tuple[str, str, Image.Image]]:
    side = 1024
    yy, xx = np.mgrid[0:side, 0:side] / side
    planes = {
        "grey": np.full((side, side), 128.0),
        "white": np.full((side, side), 255.0),
        "black": np.zeros((side, side)),
        "gradient-h": xx * 255,
        "gradient-v": yy * 255,
        "gradient-radial": np.clip(np.hypot(xx - 0.5, yy - 0.5) * 360, 0, 255),
        "checkerboard": ((xx * 8).astype(int) + (yy * 8).astype(int)) % 2 * 255.0,
        "checkerboard-fine": ((xx * 64).astype(int) + (yy * 64).astype(int)) % 2 * 255.0,
        "stripes": (np.sin(xx * 60) > 0) * 255.0,
        "noise-uniform": rng.uniform(0, 255, (side, side)),
        "noise-gaussian": np.clip(rng.normal(128, 40, (side, side)), 0, 255),
        "noise-smooth": _smooth_noise(rng, side),
        "disc": (np.hypot(xx - 0.5, yy - 0.5) < 0.3) * 255.0,
        "rings": (np.sin(np.hypot(xx - 0.5, yy - 0.5) * 80) > 0) * 255.0,
    }
    for name, plane in planes.items():
        yield "pattern", f"{name}.png", Image.fromarray(plane.astype(np.uint8))
    colour = np.stack([xx * 255, yy * 255, (1 - xx) * 255], axis=-1).astype(np.uint8)
    yield "pattern", "colour-gradient.jpeg", Image.fromarray(colour)


def _smooth_noise(rng: np.random.Generator, side: int) -> np.ndarray:
    small = Image.fromarray(rng.uniform(0, 255, (16, 16)).astype(np.uint8))
    return np.asarray(small.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)


def _pydicom_files() -> Iterator[tuple[str, str, Path]]:
    """pydicom's own test files whose pixels are not a projection radiograph."""
    import pydicom

    root = Path(pydicom.__file__).parent / "data" / "test_files"
    for name in (
        "CT_small.dcm",
        "693_J2KI.dcm",
        "MR_small.dcm",
        "JPEG2000.dcm",  # NM whole body
        "ExplVR_BigEnd.dcm",  # US, RGB
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_jpeg_no_color_transform.dcm",
        "GDCMJ2K_TextGBR.dcm",
    ):
        if (root / name).is_file():
            yield "other-modality", name, root / name


def _mr_slice() -> Iterator[tuple[str, str, Image.Image]]:
    """matplotlib's MR head slice (256x256, 16-bit big-endian) as an 8-bit PNG without
    metadata: an archive that lost its DICOM headers."""
    with gzip.open(_mpl_sample_data() / "s1045.ima.gz") as handle:
        raw = handle.read()
    plane = np.frombuffer(raw, ">u2").astype(np.float64).reshape(256, 256)
    plane = plane / max(plane.max(), 1) * 255
    yield "other-modality", "mr-head.png", Image.fromarray(plane.astype(np.uint8))
    for name in ("CT_small.dcm", "MR_small.dcm"):
        yield from _dicom_as_png(name)


def _dicom_as_png(name: str) -> Iterator[tuple[str, str, Image.Image]]:
    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        return
    plane = pydicom.dcmread(path).pixel_array.astype(np.float64)
    plane = (plane - plane.min()) / max(np.ptp(plane), 1) * 255
    yield (
        "other-modality",
        f"{Path(name).stem.lower()}.png",
        Image.fromarray(plane.astype(np.uint8)),
    )


def _non_frontal(chest: Path | None, limit: int = 4) -> Iterator[tuple[str, str, Image.Image]]:
    """Views made from real chest films that are not a frontal chest as trained: the upper
    left quarter (a shoulder), the film turned sideways, and its negative."""
    if chest is None:
        return
    films = sorted(p for p in chest.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    for i, path in enumerate(films[:: max(1, len(films) // limit)][:limit]):
        with Image.open(path) as image:
            grey = image.convert("L")
        w, h = grey.size
        yield "non-frontal", f"quarter-{i}.png", grey.crop((0, 0, w // 2, h // 2))
        yield "non-frontal", f"sideways-{i}.png", grey.transpose(Image.Transpose.ROTATE_90)
        yield "non-frontal", f"negative-{i}.png", Image.eval(grey, lambda v: 255 - v)


def build_corpus(out: Path, chest: Path | None = None, seed: int = 0) -> dict[str, list[Path]]:
    """Write the corpus under ``out/CATEGORY/`` and return the files of each category."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {category: [] for category in CATEGORIES}
    images = [
        *_photos(),
        *_text_pages(),
        *_patterns(rng),
        *_mr_slice(),
        *_non_frontal(chest),
    ]
    for category, name, image in images:
        path = out / category / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jpeg" and image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if path.suffix == ".jpeg" else "PNG")
        path.write_bytes(buffer.getvalue())
        written[category].append(path)
    for category, name, source in _pydicom_files():
        path = out / category / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        written[category].append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--chest", type=Path, default=None)
    args = parser.parse_args(argv)
    written = build_corpus(args.out, args.chest)
    for category, files in written.items():
        print(f"{category:15s} {len(files):3d} files")


if __name__ == "__main__":
    main()
