"""The collecting loader's DALI path (issue 28): 8-bit PNGs go to DALI as in training, a
truncated file goes to PIL before any pipeline sees it, headers are read group by group, and
DICOMs are routed with their headers read in threads."""

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from cxr_fast.contract import PreprocessContract
from cxr_fast.data import collecting_loader
from cxr_fast.data.collecting_loader import dali_batches, pil_batches
from cxr_fast.data.dali_dicom import route
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.headers import header_size
from cxr_fast.data.loader_spec import LoaderSpec

needs_dali = pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
CONTRACT = PreprocessContract(image_size=64)
DICOMS = Path(__file__).parent / "images" / "dicom"


def _films(kaggle_dir: Path, root: Path, n: int) -> list[Path]:
    root.mkdir(exist_ok=True)
    films = sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:n]
    return [Path(shutil.copy(path, root / path.name)) for path in films]


@pytest.fixture
def pipelines(monkeypatch):
    """The record paths of every DALI pipeline the collecting loader builds."""
    built: list[list[str]] = []

    class Counted(DaliLoader):
        def __init__(self, spec, train=None):
            built.append([r.path for r in spec.records])
            super().__init__(spec, train)

    monkeypatch.setattr(collecting_loader, "DaliLoader", Counted)
    return built


def _rows(batches) -> dict[int, tuple]:
    rows = {}
    for batch in batches:
        for i, position in enumerate(batch.index.tolist()):
            rows[position] = ("ok", batch.sizes[i], batch.x[i].float().cpu())
        for position, reason in batch.errors:
            rows[position] = ("error", reason, None)
    return rows


def _same_rows(dali: dict, pil: dict) -> None:
    assert dali.keys() == pil.keys()
    for position, (status, detail, x) in pil.items():
        assert dali[position][:2] == (status, detail)
        if x is not None:  # libjpeg-turbo/libpng in DALI against PIL
            assert float((dali[position][2] - x).abs().mean()) < 0.01


@needs_dali
def test_8_bit_pngs_go_to_dali_and_16_bit_ones_to_pil(kaggle_dir, tmp_path, pipelines):
    films = _films(kaggle_dir, tmp_path / "a", 2)
    film = Image.open(films[0])
    film.convert("L").save(tmp_path / "a" / "grey.png")
    film.convert("RGB").save(tmp_path / "a" / "rgb.png")
    film.convert("I;16").save(tmp_path / "a" / "sixteen.png")
    records = discover(tmp_path / "a")
    spec = LoaderSpec(records, CONTRACT, 4, workers=2)
    positions = list(range(len(records)))
    dali = _rows(dali_batches(spec, positions))
    _same_rows(dali, _rows(pil_batches(spec, positions)))
    taken = sorted(Path(p).name for p in pipelines[0])
    assert taken == sorted([f.name for f in films] + ["grey.png", "rgb.png"])


@needs_dali
def test_a_truncated_file_reaches_pil_before_any_pipeline(kaggle_dir, tmp_path, pipelines):
    films = _films(kaggle_dir, tmp_path / "a", 6)
    for name, film in (("cut1.jpeg", films[0]), ("cut2.jpeg", films[1])):
        data = film.read_bytes()
        (tmp_path / "a" / name).write_bytes(data[: len(data) // 2])
    Image.open(films[2]).convert("L").save(tmp_path / "a" / "whole.png")
    png = (tmp_path / "a" / "whole.png").read_bytes()
    (tmp_path / "a" / "cut.png").write_bytes(png[: len(png) // 2])
    assert header_size(str(tmp_path / "a" / "cut1.jpeg"))[1] is False
    assert header_size(str(films[0]))[1] is True
    records = discover(tmp_path / "a")
    spec = LoaderSpec(records, CONTRACT, 4, workers=2)
    positions = list(range(len(records)))
    dali = _rows(dali_batches(spec, positions))
    _same_rows(dali, _rows(pil_batches(spec, positions)))
    assert len(pipelines) == 1  # one per bad file before: the rest rebuilt after each
    assert sum(status == "error" for status, _, _ in dali.values()) == 3


@needs_dali
def test_headers_are_read_group_by_group(kaggle_dir, tmp_path, monkeypatch, pipelines):
    records = discover(kaggle_dir)  # 39 films
    read: list[int] = []
    was = collecting_loader.read_headers
    monkeypatch.setattr(collecting_loader, "HEADER_GROUPS", (4, 8))
    monkeypatch.setattr(
        collecting_loader,
        "read_headers",
        lambda paths, workers: read.append(len(paths)) or was(paths, workers),
    )
    batches = dali_batches(LoaderSpec(records, CONTRACT, 4, workers=2), range(len(records)))
    first = next(batches)
    assert len(first.index) == 4 and sum(read) <= 12  # the first group and the one ahead
    rest = list(batches)
    assert read == [4, 8, 8, 8, 8, 3]
    assert sorted(i for b in [first, *rest] for i in b.index.tolist()) == list(range(39))
    assert len(pipelines) == 6


def test_dicom_routing_reads_headers_in_threads_with_the_serial_plans(monkeypatch):
    from cxr_fast.data import dali_dicom

    paths = {i: str(p) for i, p in enumerate(sorted(DICOMS.glob("*.dcm")))}
    serial_plans, serial_rest = route(paths, "cpu")
    threads = []
    was = dali_dicom.is_dicom_file
    monkeypatch.setattr(
        dali_dicom, "is_dicom_file", lambda p: threads.append(_thread_name()) or was(p)
    )
    plans, rest = route(paths, "cpu", workers=4)
    assert rest == serial_rest and plans.keys() == serial_plans.keys() and plans
    for position, found in plans.items():
        assert found.size == serial_plans[position].size
        assert found.info == serial_plans[position].info
        assert torch.equal(
            torch.from_numpy(found.params), torch.from_numpy(serial_plans[position].params)
        )
    assert all(name.startswith("cxr-dicom") for name in threads) and len(threads) == len(paths)


def _thread_name() -> str:
    import threading

    return threading.current_thread().name
