"""Full-resolution benchmark images, generated on demand (never committed).

Real 224 px Kaggle X-rays (the committed test fixtures, or a folder you name) are upscaled with
film grain to 1000-2200 px, the size of the original Kaggle films, into a cached folder in the
``{NORMAL,PNEUMONIA}/`` layout that torchvision's ImageFolder reads too.
"""

from __future__ import annotations

from pathlib import Path

from cxr_fast.data.discover import discover
from cxr_fast.data.synth import upscale_real
from cxr_fast.labels import CLASS_NAMES

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO / "tests" / "data" / "images" / "kaggle"
CACHE = REPO / ".cache" / "bench"


def fullres_images(
    n: int, *, min_size: int = 1000, max_size: int = 2200, source: Path = DEFAULT_SOURCE
) -> Path:
    """Folder of ``n`` upscaled real X-rays, generated once per (n, sizes, source) and cached."""
    out = CACHE / f"fullres-{n}-{min_size}-{max_size}-{source.name}"
    done = out / ".complete"
    if done.exists():
        return out
    labeled = [
        (Path(r.path), CLASS_NAMES[r.label]) for r in discover(source) if r.label is not None
    ]
    if not labeled:
        raise SystemExit(f"no labeled images under {source} to upscale")
    upscale_real(labeled, out, n, min_size=min_size, max_size=max_size, workers=2)
    done.write_text("ok\n")
    return out
