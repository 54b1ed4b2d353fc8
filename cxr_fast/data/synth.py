"""Synthetic chest X-rays: a Kaggle-layout stand-in dataset for tests, benchmarks and demos.

Images are drawn at low resolution with vectorised numpy (a cartoon of a frontal radiograph:
body, lungs, heart, spine, clavicles, ribs) and then upscaled to the 1000-2200 px sizes of the
real Kaggle "chest_xray" images, so that decode and resize cost in the loaders is realistic
while generating thousands of images stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image

from cxr_fast.errors import UserInputError
from cxr_fast.labels import CLASS_NAMES

if TYPE_CHECKING:
    from cxr_fast.configs import SynthConfig

NORMAL, PNEUMONIA = CLASS_NAMES

# Drawing resolution (long side); anatomy is smooth, so detail above this comes from grain only.
_RENDER_LONG_SIDE = 384
# Real CXRs are near square; keep width / height inside this band.
_MIN_ASPECT, _MAX_ASPECT = 0.8, 1.25
# Full-resolution grain (gray levels) so upscaled images do not look unnaturally smooth.
_GRAIN_STD = 3.0
# Stream tags mixed into per-image seeds so the two generators never share a stream.
_SYNTH_STREAM, _UPSCALE_STREAM, _PLAN_STREAM = 1, 2, 3


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _band(x: np.ndarray) -> np.ndarray:
    """Flat-topped bump exp(-x**4); the clamp avoids numpy's very slow exp underflow path."""
    return np.exp(-np.minimum(np.square(np.square(x)), 30.0))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Zero-mean smooth noise (values of order 1) with about ``cells`` bumps along the long side."""
    h, w = shape
    gh = max(2, round(cells * h / max(h, w))) + 2
    gw = max(2, round(cells * w / max(h, w))) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    # Crop a margin so bicubic edge effects (half-cells at the borders) stay off the canvas.
    img = Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC, box=(1, 1, gw - 1, gh - 1))
    return np.asarray(img, dtype=np.float32)


def _draw_size(
    rng: np.random.Generator, min_size: int, max_size: int, aspect: float | None = None
) -> tuple[int, int]:
    """Random (width, height) in [min_size, max_size] with width/height near ``aspect``."""
    width = int(rng.integers(min_size, max_size + 1))
    if aspect is None:
        # Mostly landscape, as in the Kaggle set.
        aspect = float(rng.triangular(_MIN_ASPECT, 1.1, _MAX_ASPECT))
    else:
        aspect = float(np.clip(aspect * rng.uniform(0.97, 1.03), _MIN_ASPECT, _MAX_ASPECT))
    # Clipping the height only ever pulls the aspect ratio towards 1, so the band still holds.
    height = int(np.clip(round(width / aspect), min_size, max_size))
    return width, height


def _rotated(
    u: np.ndarray, v: np.ndarray, cu: float, cv: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to (cu, cv), rotated by ``angle`` radians."""
    du, dv = u - cu, v - cv
    c, s = math.cos(angle), math.sin(angle)
    return du * c + dv * s, -du * s + dv * c


# Width of the soft edges of the body outline and mediastinum (in short-side units).
_EDGE = 0.006


class _Torso(NamedTuple):
    body: np.ndarray  # 1 inside the patient, 0 in the air around
    tissue: np.ndarray  # soft-tissue brightness
    half_width: np.ndarray  # the torso's half width at each row
    shoulder_v: float
    torso_hw: float


def _coordinates(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(u right [1,W], v down [H,1]) in short-side units divided by the patient's scale, with
    the origin near mid-chest, so all anatomy constants are resolution independent."""
    h, w = shape
    m = float(min(h, w))
    scale = rng.uniform(0.92, 1.1)
    u = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) / m)[None, :]
    v = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) / m)[:, None]
    u = (u - rng.uniform(-0.04, 0.04)) / scale
    v = (v - rng.uniform(-0.05, 0.05)) / scale
    return u, v


def _torso(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> _Torso:
    """A narrow neck widening into the shoulders, slightly wider towards the abdomen."""
    au = np.abs(u)
    shoulder_v = rng.uniform(-0.44, -0.36)
    torso_hw = rng.uniform(0.39, 0.45)
    half_width = 0.11 + (torso_hw - 0.11) * _sigmoid((v - shoulder_v) / 0.035) + 0.04 * v
    body = _sigmoid((half_width - au) / _EDGE)
    if rng.random() < 0.5:
        # Arms hanging beside the chest, separated from it by a thin gap of air.
        arm_c = torso_hw + rng.uniform(0.08, 0.11)
        arm = _sigmoid((0.055 - np.abs(au - arm_c)) / _EDGE) * _sigmoid((v - shoulder_v) / 0.03)
        body = np.maximum(body, 0.8 * arm)
    # Soft tissue looks brighter where the beam crosses more of it (centre) than at the flanks.
    tissue = body * (0.5 + 0.12 * np.clip(1.0 - (u / (torso_hw + 0.05)) ** 2, 0.0, 1.0))
    return _Torso(body, tissue, half_width, shoulder_v, torso_hw)


def _heart(u: np.ndarray, v: np.ndarray, shoulder_v: float, rng: np.random.Generator) -> np.ndarray:
    """Heart, aortic knob and mediastinum: a tilted ellipse bulging to the image's right (the
    patient's left), and a band that widens towards the heart."""
    ru, rv = _rotated(
        u, v, rng.uniform(0.04, 0.08), rng.uniform(0.15, 0.2), rng.uniform(-0.5, -0.2)
    )
    heart = _sigmoid(
        (1.0 - (ru / rng.uniform(0.15, 0.19)) ** 2 - (rv / rng.uniform(0.1, 0.13)) ** 2) / 0.15
    )
    knob = _sigmoid((1.0 - ((u - 0.06) ** 2 + (v + 0.12) ** 2) / 0.032**2) / 0.4)
    mediastinum_hw = 0.05 + 0.025 * _sigmoid((v + 0.05) / 0.05)
    mediastinum = (
        _sigmoid((mediastinum_hw - np.abs(u - 0.01)) / _EDGE)
        * _sigmoid((0.35 - v) / 0.03)
        * _sigmoid((v - shoulder_v - 0.05) / 0.04)
    )
    return np.maximum(np.maximum(heart, knob), mediastinum)


def _lungs(
    u: np.ndarray, v: np.ndarray, shape: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[float, float, float, float]], float, list[np.ndarray]]:
    """(lungs, each lung's (centre u, centre v, half axes), the lower dome, the diaphragms):
    ellipses widening towards the base, cut from below by the diaphragm domes."""
    lungs = np.zeros(shape, dtype=np.float32)
    warp = 0.12 * _smooth_noise(rng, shape, 4)
    lung_geom: list[tuple[float, float, float, float]] = []
    dome_low = -1.0
    diaphragms = []
    for side in (-1.0, 1.0):
        lc_u = side * rng.uniform(0.19, 0.23)
        lc_v = rng.uniform(0.0, 0.06)
        la, lb = rng.uniform(0.14, 0.18), rng.uniform(0.28, 0.34)
        taper = np.clip((v - (lc_v - lb)) / (2 * lb), 0.0, 1.0)
        a_eff = la * (0.7 + 0.45 * np.sqrt(taper))
        q = ((u - lc_u) / a_eff) ** 2 + ((v - lc_v) / lb) ** 2 + warp
        # The right hemidiaphragm (image left) usually sits a little higher.
        dome = lc_v + lb * rng.uniform(0.55, 0.75) - (0.03 if side < 0 else 0.0)
        diaphragm = dome + 2.2 * (u - lc_u) ** 2
        lung = _sigmoid((1.0 - q) / 0.1) * _sigmoid((diaphragm - v) / 0.012)
        lungs = np.maximum(lungs, lung)
        lung_geom.append((lc_u, lc_v, la, lb))
        dome_low = max(dome_low, dome)
        diaphragms.append(diaphragm)
    return lungs, lung_geom, dome_low, diaphragms


def _lung_air(
    u: np.ndarray, v: np.ndarray, lungs: np.ndarray, top: float, rng: np.random.Generator
) -> np.ndarray:
    """Air in the lungs: bases are denser (more overlying soft tissue); vessels fan out from
    the hila."""
    shape = lungs.shape
    depth = rng.uniform(0.3, 0.38) * (1.0 - 0.25 * np.clip((v - top) / 0.6, 0.0, 1.0))
    hilum = np.exp(-((np.abs(u) - 0.13) ** 2 + (v + 0.02) ** 2) / 0.03)
    markings = _smooth_noise(rng, shape, 28) * (0.012 + 0.03 * hilum) - 0.05 * hilum
    return lungs * (depth + markings)


def _clavicles(u: np.ndarray, v: np.ndarray, torso: _Torso, rng: np.random.Generator) -> np.ndarray:
    """Gently S-shaped bars from the sternal notch to the shoulders."""
    au = np.abs(u)
    clav_v0 = torso.shoulder_v + rng.uniform(0.07, 0.1)
    d = np.clip(au - 0.03, 0.0, None)
    clav_center = clav_v0 - 0.25 * d + 0.35 * d**2
    clav_mask = _sigmoid((torso.torso_hw - 0.08 - au) / 0.01) * _sigmoid((au - 0.03) / 0.005)
    return 0.12 * _band((v - clav_center) / 0.016) * clav_mask


def _ribs(
    u: np.ndarray,
    v: np.ndarray,
    half_width: np.ndarray,
    top: float,
    dome_low: float,
    behind: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """Posterior arcs (rising from the spine then sweeping down laterally) and fainter
    anterior arcs sloping down towards the midline, all stopping at the chest wall, fading
    below the diaphragm and behind the heart (``behind``: central, abdomen)."""
    au = np.abs(u)
    d = np.clip(au - 0.03, 0.0, None)
    n_ribs = int(rng.integers(9, 12))
    spacing = rng.uniform(0.055, 0.068)
    curve = rng.uniform(1.6, 2.2)
    thickness = rng.uniform(0.017, 0.022)
    post_profile = -0.45 * d + curve * d**2
    ant_profile = rng.uniform(0.4, 0.55) * (0.42 - d)
    ant_fade = np.clip((au - 0.1) / 0.15, 0.0, 1.0)
    ribs = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=np.float32)
    for i in range(n_ribs):
        v0 = top - 0.02 + i * spacing + rng.normal(0.0, 0.004)
        post = _band((v - v0 - post_profile) / thickness)
        ant = _band((v - v0 + 0.06 - ant_profile) / (0.8 * thickness))
        ribs = np.maximum(ribs, np.maximum(post, 0.5 * ant * ant_fade))
    central, abdomen = behind
    inside = _sigmoid((half_width - 0.015 - au) / 0.01) * _sigmoid((au - 0.03) / 0.005)
    ribs *= inside * _sigmoid((dome_low + 0.15 - v) / 0.03) * (1.0 - 0.6 * central - 0.3 * abdomen)
    return ribs * rng.uniform(0.07, 0.11)


def _expose(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and gamma vary between machines and technicians."""
    h, w = img.shape
    x = (np.arange(w, dtype=np.float32) - w / 2) / (w / 2)
    y = (np.arange(h, dtype=np.float32) - h / 2) / (h / 2)
    img *= 1.0 - rng.uniform(0.05, 0.2) * (x[None, :] ** 2 + y[:, None] ** 2)
    img = np.clip(img + rng.uniform(0.0, 0.06), 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    img = rng.uniform(0.85, 1.1) * img + 0.01 * rng.standard_normal((h, w), dtype=np.float32)
    return img.astype(np.float32)


def _render_lowres(
    shape: tuple[int, int], rng: np.random.Generator, disease_rng: np.random.Generator | None
) -> np.ndarray:
    """Float32 image in roughly [0, 1] of the given (height, width); opacities if disease_rng.

    Each anatomical part has its function; they draw from ``rng`` in a fixed order, so a seed
    gives the same film.
    """
    u, v = _coordinates(shape, rng)
    torso = _torso(u, v, rng)
    body = torso.body
    central = _heart(u, v, torso.shoulder_v, rng)
    lungs, lung_geom, dome_low, diaphragms = _lungs(u, v, shape, rng)
    lungs *= body * (1.0 - central)
    # Below the diaphragm the abdomen is as dense as the heart, so the two merge.
    abdomen = _sigmoid((v - np.minimum(diaphragms[0], diaphragms[1])) / 0.012)
    dense = np.maximum(central, abdomen) * body
    top = min(g[1] - g[3] for g in lung_geom)
    air = _lung_air(u, v, lungs, top, rng)
    # Trachea: an air column down the neck to the carina.
    trachea = 0.1 * _sigmoid((0.02 - np.abs(u - 0.005)) / 0.006) * _sigmoid((-0.1 - v) / 0.02)
    # Spine with vertebral bodies, seen faintly through the mediastinum.
    period = rng.uniform(0.055, 0.07)
    vertebrae = 0.75 + 0.25 * np.cos(np.pi * v / period) ** 2
    spine = 0.06 * _sigmoid((0.035 - np.abs(u - 0.005)) / 0.008) * vertebrae * body
    clavicles = _clavicles(u, v, torso, rng)
    ribs = _ribs(u, v, torso.half_width, top, dome_low, (central, abdomen), rng)
    img = torso.tissue + 0.2 * dense + spine + clavicles + ribs - air - trachea
    if disease_rng is not None:
        img += _opacities(disease_rng, shape, u, v, lungs, lung_geom)
    return _expose(img, rng)


def _opacities(
    rng: np.random.Generator,
    shape: tuple[int, int],
    u: np.ndarray,
    v: np.ndarray,
    lungs: np.ndarray,
    lung_geom: list[tuple[float, float, float, float]],
) -> np.ndarray:
    """Patchy soft consolidations (2-5) confined to the lung fields."""
    patches = np.zeros(shape, dtype=np.float32)
    texture = _smooth_noise(rng, shape, 20)
    ragged = _smooth_noise(rng, shape, 10)
    # Consolidations are large and dense enough that a small CNN learns them from ~100 films
    # (the tiny-training test and the demo rely on it), yet vary in size, site and strength.
    for _ in range(int(rng.integers(2, 6))):
        lc_u, lc_v, la, lb = lung_geom[int(rng.integers(0, 2))]
        # Lower and middle zones are the commonest sites, so bias the centre downwards.
        ang = rng.uniform(0, 2 * np.pi)
        rad = math.sqrt(rng.uniform(0.0, 1.0)) * 0.7
        cu = lc_u + la * rad * math.cos(ang)
        cv = lc_v + lb * (0.15 + 0.6 * rad * math.sin(ang))
        ru, rv = _rotated(u, v, cu, cv, rng.uniform(0, np.pi))
        q = (ru / rng.uniform(0.08, 0.17)) ** 2 + (rv / rng.uniform(0.08, 0.19)) ** 2
        blob = np.exp(-0.5 * np.clip(q * (1.0 + 0.35 * ragged), 0.0, 40.0) ** 1.3)
        patchy = np.clip(0.6 + 0.45 * texture, 0.0, 1.4)
        patches = np.maximum(patches, rng.uniform(0.25, 0.45) * blob * patchy)
    return patches * lungs


def render_cxr(size: tuple[int, int], pneumonia: bool, rng: np.random.Generator) -> np.ndarray:
    """Return a uint8 HxW (size = (width, height)) chest-X-ray-like grayscale image.

    The anatomy is drawn with the same random draws for both classes, so one seed rendered
    normal and with pneumonia gives the same patient with and without opacities.
    """
    width, height = size
    if width < 1 or height < 1:
        raise UserInputError(f"size must be positive, got {size}")
    k = min(1.0, _RENDER_LONG_SIDE / max(width, height))
    low = (max(1, round(height * k)), max(1, round(width * k)))
    # Separate stream for the opacities keeps the anatomy draws identical across classes.
    anatomy_rng = np.random.default_rng(rng.integers(0, 2**63))
    disease_rng = np.random.default_rng(rng.integers(0, 2**63))
    img = _render_lowres(low, anatomy_rng, disease_rng if pneumonia else None) * 255.0
    if low != (height, width):
        img = np.asarray(
            Image.fromarray(img).resize((width, height), Image.Resampling.BICUBIC), np.float32
        )
    img = img + rng.standard_normal((height, width), dtype=np.float32) * _GRAIN_STD
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- dataset writers


@dataclass(frozen=True)
class _SynthJob:
    path: Path
    entropy: tuple[int, ...]
    pneumonia: bool
    min_size: int
    max_size: int
    quality: int


@dataclass(frozen=True)
class _UpscaleJob:
    path: Path
    source: Path
    entropy: tuple[int, ...]
    min_size: int
    max_size: int
    grain: float
    quality: int


def _save_jpeg(img: np.ndarray, path: Path, quality: int) -> None:
    # Baseline (non-progressive), no optimisation pass: what scanners export and fastest to decode.
    Image.fromarray(img).save(path, format="JPEG", quality=quality)


def _synth_one(job: _SynthJob) -> Path:
    rng = np.random.default_rng(np.random.SeedSequence(job.entropy))
    size = _draw_size(rng, job.min_size, job.max_size)
    _save_jpeg(render_cxr(size, job.pneumonia, rng), job.path, job.quality)
    return job.path


def _upscale_one(job: _UpscaleJob) -> Path:
    rng = np.random.default_rng(np.random.SeedSequence(job.entropy))
    with Image.open(job.source) as src:
        gray = src.convert("L")
    width, height = _draw_size(rng, job.min_size, job.max_size, gray.width / gray.height)
    big = gray.resize((width, height), Image.Resampling.BICUBIC)
    img = np.asarray(big, dtype=np.float32)
    # A gentle low-frequency gain field, so repeated copies of one source are not identical
    # apart from grain.
    img *= 1.0 + 0.03 * _smooth_noise(rng, (height, width), 3)
    img += rng.standard_normal((height, width), dtype=np.float32) * job.grain
    _save_jpeg(np.clip(img + 0.5, 0, 255).astype(np.uint8), job.path, job.quality)
    return job.path


def _run_jobs(
    worker: Callable[[_SynthJob], Path] | Callable[[_UpscaleJob], Path],
    jobs: Sequence[_SynthJob] | Sequence[_UpscaleJob],
    workers: int,
    progress: Callable[[int], None] | None,
) -> list[Path]:
    for parent in sorted({job.path.parent for job in jobs}):
        parent.mkdir(parents=True, exist_ok=True)
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            worker(job)
            if progress is not None:
                progress(1)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            _drain(pool, worker, jobs, progress)
    return sorted(job.path for job in jobs)


def _drain(
    pool: Executor,
    worker: Callable,
    jobs: Sequence[_SynthJob] | Sequence[_UpscaleJob],
    progress: Callable[[int], None] | None,
) -> None:
    futures = [pool.submit(worker, job) for job in jobs]
    try:
        for future in as_completed(futures):
            future.result()
            if progress is not None:
                progress(1)
    except BaseException:
        # Without this the pool would finish every queued image before the error surfaces.
        for future in futures:
            future.cancel()
        raise


def _check_common(n: int, min_size: int, max_size: int, quality: int, workers: int) -> None:
    if n < 1:
        raise UserInputError(f"n must be at least 1, got {n}")
    if not 16 <= min_size <= max_size:
        raise UserInputError(
            f"sizes must satisfy 16 <= min_size <= max_size, got min_size={min_size}, "
            f"max_size={max_size}"
        )
    if not 1 <= quality <= 100:
        raise UserInputError(f"quality must be between 1 and 100, got {quality}")
    if workers < 1:
        raise UserInputError(f"workers must be at least 1, got {workers}")


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise UserInputError(f"seed must be non-negative, got {seed}")


def _patient_sizes(rng: np.random.Generator, count: int) -> list[int]:
    """Split ``count`` images into patients of 1-3 images each (at least two if count >= 2)."""
    sizes: list[int] = []
    remaining = count
    while remaining > 0:
        k = min(int(rng.integers(1, 4)), remaining)
        sizes.append(k)
        remaining -= k
    if len(sizes) == 1 and count >= 2:
        # A class held by one patient could not be split between train and test.
        sizes = [count - 1, 1]
    return sizes


def _n_test_patients(n_patients: int, test_fraction: float, n: int) -> int:
    k = round(test_fraction * n_patients)
    if n >= 4 and test_fraction > 0:
        k = max(k, 1)
    if test_fraction < 1 and n_patients >= 2:
        k = min(k, n_patients - 1)
    return min(k, n_patients)


def _plan_names(
    rng: np.random.Generator, label: str, count: int, test_fraction: float, n: int
) -> list[tuple[str, str]]:
    """(split, file name) for each image of one class, with Kaggle-style patient names."""
    sizes = _patient_sizes(rng, count)
    test = set(
        rng.choice(
            len(sizes), _n_test_patients(len(sizes), test_fraction, n), replace=False
        ).tolist()
    )
    names: list[tuple[str, str]] = []
    counter = 0
    for patient, k_images in enumerate(sizes):
        pid = patient + 1
        split = "test" if patient in test else "train"
        # Roughly the Kaggle bacteria:virus ratio; one patient has one kind of infection.
        kind = "bacteria" if rng.random() < 0.65 else "virus"
        for k in range(1, k_images + 1):
            counter += 1
            if label == PNEUMONIA:
                names.append((split, f"person{pid}_{kind}_{counter}.jpeg"))
            else:
                names.append((split, f"IM-{pid:04d}-{k:04d}.jpeg"))
    return names


def synth_dataset(
    out: Path,
    n: int,
    *,
    seed: int = 0,
    min_size: int = 1000,
    max_size: int = 2200,
    pneumonia_fraction: float = 0.5,
    test_fraction: float = 0.2,
    quality: int = 90,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write a Kaggle-layout set OUT/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg; return sorted paths.

    Patients get 1-3 images each and the train/test split is by patient. The output (names
    and bytes) depends only on the arguments other than ``workers`` and ``progress``.
    ``progress`` is called with 1 after each image is written.
    """
    _check_common(n, min_size, max_size, quality, workers)
    _check_seed(seed)
    for name, value in (
        ("pneumonia_fraction", pneumonia_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 <= value <= 1.0:
            raise UserInputError(f"{name} must be between 0 and 1, got {value}")

    out = Path(out)
    plan_rng = np.random.default_rng(np.random.SeedSequence([seed, _PLAN_STREAM]))
    n_pneumonia = round(n * pneumonia_fraction)
    jobs: list[_SynthJob] = []
    for label, count in ((NORMAL, n - n_pneumonia), (PNEUMONIA, n_pneumonia)):
        for split, name in _plan_names(plan_rng, label, count, test_fraction, n):
            jobs.append(
                _SynthJob(
                    path=out / split / label / name,
                    entropy=(seed, _SYNTH_STREAM, len(jobs)),
                    pneumonia=label == PNEUMONIA,
                    min_size=min_size,
                    max_size=max_size,
                    quality=quality,
                )
            )
    return _run_jobs(_synth_one, jobs, workers, progress)


def upscale_real(
    sources: Sequence[tuple[Path, str]],
    out: Path,
    n: int,
    *,
    seed: int = 0,
    min_size: int = 1000,
    max_size: int = 2200,
    grain: float = 4.0,
    quality: int = 90,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Upscale real (small) X-rays with film grain to full size: OUT/{LABEL}/*.jpeg; sorted paths.

    ``sources`` are (path, class name) pairs. Image ``i`` comes from ``sources[i % len(sources)]``
    and is written as ``OUT/{label}/{source stem}_up{i:04d}.jpeg``. The output depends only on
    the arguments other than ``workers`` and ``progress``.
    """
    _check_common(n, min_size, max_size, quality, workers)
    _check_seed(seed)
    if not sources:
        raise UserInputError("sources must not be empty")
    if grain < 0:
        raise UserInputError(f"grain must be non-negative, got {grain}")
    bad = sorted({label for _, label in sources if label not in CLASS_NAMES})
    if bad:
        raise UserInputError(f"unknown class names {bad}; expected one of {list(CLASS_NAMES)}")

    out = Path(out)
    jobs = []
    for i in range(n):
        source, label = sources[i % len(sources)]
        source = Path(source)
        jobs.append(
            _UpscaleJob(
                path=out / label / f"{source.stem}_up{i:04d}.jpeg",
                source=source,
                entropy=(seed, _UPSCALE_STREAM, i),
                min_size=min_size,
                max_size=max_size,
                grain=float(grain),
                quality=quality,
            )
        )
    return _run_jobs(_upscale_one, jobs, workers, progress)


def run_synth(config: SynthConfig, progress: Callable[[int], None] | None = None) -> list[Path]:
    """``cxr-fast data synth``: write ``config.n`` images to ``config.out``; a folder that is
    not empty is refused unless ``config.overwrite`` (then its train/ and test/ are replaced)."""
    import shutil

    out = config.out
    if out.is_dir() and any(out.iterdir()):
        if not config.overwrite:
            raise UserInputError(
                f"{out} is not empty: pass --overwrite to replace its train/ and test/, or "
                "choose a new folder"
            )
        for split in ("train", "test"):
            shutil.rmtree(out / split, ignore_errors=True)
    return synth_dataset(
        out,
        config.n,
        seed=config.seed,
        min_size=config.min_size,
        max_size=config.max_size,
        pneumonia_fraction=config.pneumonia_fraction,
        test_fraction=config.test_fraction,
        workers=config.workers,
        progress=progress,
    )
