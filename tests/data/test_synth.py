"""Tests for the synthetic chest X-ray generators."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_fast.data.synth import render_cxr, synth_dataset, upscale_real
from cxr_fast.labels import CLASS_NAMES

NORMAL, PNEUMONIA = CLASS_NAMES
SMALL = {"min_size": 64, "max_size": 160}
PNEUMONIA_NAME = re.compile(r"^person(\d+)_(bacteria|virus)_(\d+)\.jpeg$")
NORMAL_NAME = re.compile(r"^IM-(\d{4})-(\d{4})\.jpeg$")


def _patient(name: str) -> str:
    """Patient id as the Kaggle names encode it (the real parser lives elsewhere)."""
    match = re.match(r"^(person\d+|IM-\d+)", name)
    assert match, f"unparseable file name {name!r}"
    return match.group(1)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.jpeg")}


def test_layout_counts_and_decodable_images(tmp_path: Path) -> None:
    paths = synth_dataset(tmp_path, 12, seed=1, **SMALL)

    assert paths == sorted(paths)
    assert len(paths) == 12
    assert set(paths) == {p for p in tmp_path.rglob("*") if p.is_file()}
    by_class = Counter(p.parent.name for p in paths)
    assert by_class == {NORMAL: 6, PNEUMONIA: 6}
    for path in paths:
        split, label, name = path.relative_to(tmp_path).parts
        assert split in ("train", "test")
        pattern = PNEUMONIA_NAME if label == PNEUMONIA else NORMAL_NAME
        assert pattern.match(name), name
        with Image.open(path) as img:
            assert img.format == "JPEG"
            assert img.mode == "L"
            width, height = img.size
            img.load()
        assert 64 <= width <= 160
        assert 64 <= height <= 160
        assert 0.79 <= width / height <= 1.26


@pytest.mark.parametrize(
    ("n", "fraction", "expected"), [(7, 0.3, 2), (5, 0.0, 0), (5, 1.0, 5), (9, 0.5, 4)]
)
def test_class_counts_follow_pneumonia_fraction(
    tmp_path: Path, n: int, fraction: float, expected: int
) -> None:
    paths = synth_dataset(tmp_path, n, pneumonia_fraction=fraction, min_size=16, max_size=24)
    assert len(paths) == n
    assert sum(p.parent.name == PNEUMONIA for p in paths) == expected == round(n * fraction)


def test_same_seed_is_byte_identical_regardless_of_workers(tmp_path: Path) -> None:
    kwargs = {"seed": 7, **SMALL}
    synth_dataset(tmp_path / "a", 8, workers=1, **kwargs)
    synth_dataset(tmp_path / "b", 8, workers=1, **kwargs)
    synth_dataset(tmp_path / "c", 8, workers=2, **kwargs)
    a, b, c = (_tree(tmp_path / d) for d in "abc")
    assert len(a) == 8
    assert a == b
    assert a == c


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    synth_dataset(tmp_path / "a", 6, seed=0, **SMALL)
    synth_dataset(tmp_path / "b", 6, seed=1, **SMALL)
    a = sorted(_tree(tmp_path / "a").values())
    b = sorted(_tree(tmp_path / "b").values())
    assert not set(a) & set(b)


def test_split_is_by_patient(tmp_path: Path) -> None:
    paths = synth_dataset(tmp_path, 40, seed=3, test_fraction=0.25, min_size=16, max_size=24)

    splits: dict[str, set[str]] = defaultdict(set)
    images_per_patient: Counter[str] = Counter()
    for path in paths:
        patient = _patient(path.name)
        splits[patient].add(path.relative_to(tmp_path).parts[0])
        images_per_patient[patient] += 1
    assert all(len(s) == 1 for s in splits.values()), "a patient is in both train and test"
    assert max(images_per_patient.values()) > 1, "every patient has one image: split is trivial"
    assert max(images_per_patient.values()) <= 3
    for label in CLASS_NAMES:
        assert any((tmp_path / "test" / label).iterdir())
        assert any((tmp_path / "train" / label).iterdir())


def test_small_dataset_still_has_a_test_patient_per_class(tmp_path: Path) -> None:
    paths = synth_dataset(tmp_path, 4, seed=5, min_size=16, max_size=24)
    test_labels = {p.parent.name for p in paths if p.parts[-3] == "test"}
    assert test_labels == set(CLASS_NAMES)


def test_progress_reports_each_image(tmp_path: Path) -> None:
    calls: list[int] = []
    synth_dataset(tmp_path, 5, progress=calls.append, min_size=16, max_size=24)
    assert calls == [1] * 5


def test_pneumonia_is_brighter_inside_the_lungs() -> None:
    def lung_mean(img: np.ndarray) -> float:
        h, w = img.shape
        rows = slice(int(0.35 * h), int(0.6 * h))
        right, left = (
            img[rows, int(0.22 * w) : int(0.38 * w)],
            img[rows, int(0.62 * w) : int(0.78 * w)],
        )
        return float(np.concatenate([right.ravel(), left.ravel()]).mean())

    diffs = []
    for seed in range(20):
        normal = render_cxr((128, 128), False, np.random.default_rng(seed))
        sick = render_cxr((128, 128), True, np.random.default_rng(seed))
        diffs.append(lung_mean(sick) - lung_mean(normal))
    diffs_arr = np.array(diffs)
    assert diffs_arr.mean() > 3.0
    assert (diffs_arr > 0).mean() >= 0.8


def test_render_full_size_image() -> None:
    img = render_cxr((2000, 1800), True, np.random.default_rng(0))
    assert img.shape == (1800, 2000)
    assert img.dtype == np.uint8
    assert img.std() > 20
    # Air outside the body (top corners) is darker than the body's centre.
    corners = np.concatenate([img[:100, :100].ravel(), img[:100, -100:].ravel()]).mean()
    assert corners + 40 < img[800:1000, 900:1100].mean()


def test_render_is_deterministic_per_rng_seed() -> None:
    a = render_cxr((96, 80), True, np.random.default_rng(11))
    b = render_cxr((96, 80), True, np.random.default_rng(11))
    c = render_cxr((96, 80), True, np.random.default_rng(12))
    assert a.shape == (80, 96)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def _make_sources(root: Path) -> list[tuple[Path, str]]:
    root.mkdir()
    y, x = np.mgrid[0:48, 0:40]
    normal = root / "normal_src.png"
    Image.fromarray(((x * 5 + y * 2) % 256).astype(np.uint8)).save(normal)
    sick = root / "sick_src.jpeg"
    rgb = np.stack([(y * 4) % 256, (x * 6) % 256, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(sick)
    return [(normal, NORMAL), (sick, PNEUMONIA)]


def test_upscale_real_layout_sizes_and_determinism(tmp_path: Path) -> None:
    sources = _make_sources(tmp_path / "src")
    calls: list[int] = []
    paths = upscale_real(sources, tmp_path / "a", 5, seed=2, progress=calls.append, **SMALL)

    assert calls == [1] * 5
    assert [p.relative_to(tmp_path / "a").as_posix() for p in paths] == [
        "NORMAL/normal_src_up0000.jpeg",
        "NORMAL/normal_src_up0002.jpeg",
        "NORMAL/normal_src_up0004.jpeg",
        "PNEUMONIA/sick_src_up0001.jpeg",
        "PNEUMONIA/sick_src_up0003.jpeg",
    ]
    for path in paths:
        with Image.open(path) as img:
            assert (img.format, img.mode) == ("JPEG", "L")
            width, height = img.size
        assert 64 <= width <= 160
        assert 64 <= height <= 160

    upscale_real(sources, tmp_path / "b", 5, seed=2, workers=2, **SMALL)
    upscale_real(sources, tmp_path / "c", 5, seed=3, **SMALL)
    a, b, c = (_tree(tmp_path / d) for d in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a != c


def test_upscale_real_keeps_source_content(tmp_path: Path) -> None:
    src = tmp_path / "half.png"
    img = np.zeros((40, 40), dtype=np.uint8)
    img[:, 20:] = 200
    Image.fromarray(img).save(src)
    (path,) = upscale_real([(src, NORMAL)], tmp_path / "out", 1, grain=2.0, **SMALL)
    with Image.open(path) as out:
        arr = np.asarray(out, dtype=float)
    w = arr.shape[1]
    assert arr[:, : w // 3].mean() < 30
    assert arr[:, -w // 3 :].mean() > 170


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be"),
        ({"min_size": 8}, "min_size"),
        ({"min_size": 200, "max_size": 100}, "max_size"),
        ({"pneumonia_fraction": 1.5}, "pneumonia_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"workers": 0}, "workers"),
        ({"quality": 0}, "quality"),
        ({"seed": -1}, "seed"),
    ],
)
def test_synth_dataset_rejects_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"n": 4, "min_size": 16, "max_size": 24, **kwargs}
    n = args.pop("n")
    with pytest.raises(ValueError, match=match) as err:
        synth_dataset(tmp_path / "out", n, **args)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("sources", "kwargs", "match"),
    [
        ([], {}, "sources"),
        ([("x.png", "COVID")], {}, "COVID"),
        (None, {"n": 0}, "n must be"),
        (None, {"grain": -1.0}, "grain"),
        (None, {"min_size": 300, "max_size": 200}, "max_size"),
    ],
)
def test_upscale_real_rejects_bad_arguments(
    tmp_path: Path, sources: list | None, kwargs: dict, match: str
) -> None:
    if sources is None:
        sources = [(tmp_path / "missing.png", NORMAL)]
    args = {"n": 2, "min_size": 16, "max_size": 24, **kwargs}
    n = args.pop("n")
    with pytest.raises(ValueError, match=match) as err:
        upscale_real(sources, tmp_path / "out", n, **args)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
