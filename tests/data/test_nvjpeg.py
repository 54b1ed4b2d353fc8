"""The nvJPEG path (``--loader nvjpeg``) on the CPU, where torchvision's decode_jpeg is
libjpeg-turbo: the same rows and, within the DALI agreement tolerance, the same pixels as the
PIL path on real films; bad files take the PIL path."""

import shutil
from pathlib import Path

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.loaders import make_scoring_loader, make_train_loader, resolve_loader
from cxr_fast.data.nvjpeg_loader import NvjpegLoader
from cxr_fast.errors import UserInputError
from tests.bad_files import write_bad_files
from tests.cli_in_process import run_main

CPU = torch.device("cpu")
SHARED_SAMPLES = Path(__file__).parents[2] / ".." / "shared" / "data" / "samples"
# The DALI agreement tests' tolerance (tests/data/test_loaders.py): mean absolute difference of
# a film's model input, PIL's draft decoding against a whole-image decode and resize.
AGREEMENT = 0.01


def _collect(spec: LoaderSpec, loader: str) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
    """position -> model input and position -> error of a scoring loader's batches."""
    pixels, errors = {}, {}
    for batch in make_scoring_loader(spec, loader):
        if batch.x is not None:
            pixels.update(zip(batch.index.tolist(), batch.x, strict=True))
        errors.update(batch.errors)
    return pixels, errors


def _real_films(kaggle_dir: Path, samples_dir: Path, tmp_path: Path) -> list[Record]:
    """The committed Kaggle films, the full-resolution sample and the shared samples' JPEGs
    (when the shared folder is there), with a PNG and a DICOM among them."""
    folder = tmp_path / "films"
    shutil.copytree(kaggle_dir, folder)
    for path in [*samples_dir.iterdir(), *sorted(SHARED_SAMPLES.glob("*.jpg"))]:
        if path.suffix in (".jpg", ".png", ".dcm"):
            shutil.copy(path, folder / path.name)
    return discover(folder)


@pytest.mark.parametrize("crop", [1.0, 0.8])
def test_nvjpeg_batches_agree_with_the_pil_path_on_real_films(
    kaggle_dir, samples_dir, tmp_path, crop
):
    records = _real_films(kaggle_dir, samples_dir, tmp_path)
    spec = LoaderSpec(records, PreprocessContract(image_size=224, crop=crop), 16, workers=2)
    nvjpeg, nvjpeg_errors = _collect(spec, "nvjpeg")
    pil, pil_errors = _collect(spec, "torch")
    assert nvjpeg.keys() == pil.keys() and len(pil) == len(records) >= 40
    assert nvjpeg_errors == pil_errors == {}
    for position, x in nvjpeg.items():
        assert x.dtype == torch.float32 and x.shape == (1, 224, 224)
        difference = float((x - pil[position]).abs().mean())
        assert difference < AGREEMENT, (records[position].path, difference)


def test_bad_files_take_the_pil_path_and_give_its_rows(tmp_path, samples_dir):
    expected = write_bad_files(tmp_path, samples_dir)
    for name in ("a.jpeg", "b.jpeg"):  # good films in the batch of the bad ones
        shutil.copy(samples_dir / "16747_3_1.jpg", tmp_path / name)
    records = _all_files(tmp_path)
    spec = LoaderSpec(records, PreprocessContract(image_size=64), 8, workers=0)
    nvjpeg, nvjpeg_errors = _collect(spec, "nvjpeg")
    pil, pil_errors = _collect(spec, "torch")
    assert nvjpeg_errors == pil_errors
    assert nvjpeg.keys() == pil.keys()
    names = {Path(records[p].path).name for p in pil}
    assert names == {"a.jpeg", "b.jpeg"} | {n for n, status in expected.items() if status == "ok"}
    for position, x in nvjpeg.items():
        assert float((x - pil[position]).abs().mean()) < AGREEMENT, records[position].path


def _all_files(folder: Path) -> list[Record]:
    """Every entry of ``folder`` as an unlabelled record (dangling links too, as score sees
    them)."""
    return [Record(str(p), None, None, p.stem) for p in sorted(folder.iterdir())]


def test_the_training_loader_shuffles_by_seed_drops_the_last_batch_and_augments(kaggle_dir):
    spec = LoaderSpec(discover(kaggle_dir), PreprocessContract(image_size=32), 8, workers=2)
    assert len(spec.records) == 39
    loader = make_train_loader(spec, "nvjpeg", augment=Augment(), seed=3)
    assert isinstance(loader, NvjpegLoader) and len(loader) == 4
    first = [b.index.tolist() for b in loader]
    second = [b.index.tolist() for b in loader]
    assert [len(i) for i in first] == [8] * 4 and first != second
    again = [b.index.tolist() for b in make_train_loader(spec, "nvjpeg", seed=3)]
    assert again == first
    plain = {i: x for b in NvjpegLoader(spec) for i, x in zip(b.index.tolist(), b.x, strict=True)}
    batch = next(iter(NvjpegLoader(spec, TrainMode(augment=Augment(), seed=3))))
    assert batch.y.tolist() == [spec.records[i].label for i in batch.index.tolist()]
    changed = [
        float((x - plain[i]).abs().mean())
        for i, x in zip(batch.index.tolist(), batch.x, strict=True)
    ]
    assert min(changed) > 0  # every film was augmented


def test_a_training_file_torchvision_cannot_read_is_decoded_by_pil_or_skipped(
    kaggle_dir, samples_dir, tmp_path
):
    for path in sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:3]:
        shutil.copy(path, tmp_path / path.name)
    data = (samples_dir / "16747_3_1.jpg").read_bytes()
    (tmp_path / "truncated.jpeg").write_bytes(data[: len(data) // 2])
    records = _all_files(tmp_path)
    loader = NvjpegLoader(LoaderSpec(records, PreprocessContract(image_size=32), 4, workers=0))
    batches = list(loader)
    kept = sorted(i for b in batches for i in b.index.tolist())
    assert [Path(records[i].path).name for i in kept] == sorted(
        p.name for p in tmp_path.glob("*.jpeg") if p.name != "truncated.jpeg"
    )
    assert [Path(p).name for p, _ in loader.skipped] == ["truncated.jpeg"]


def test_auto_on_cuda_without_dali_is_nvjpeg_and_nvjpeg_trains_on_jpegs_only(
    monkeypatch, samples_dir
):
    jpeg = [Record(str(samples_dir / "16747_3_1.jpg"), 0, None, "a")]
    png = [*jpeg, Record(str(samples_dir / "h0001.png"), 1, None, "b")]
    monkeypatch.setattr("cxr_fast.data.loaders.dali_available", lambda: False)
    cuda = torch.device("cuda")
    assert resolve_loader("auto", cuda, jpeg) == "nvjpeg"
    assert resolve_loader("auto", cuda, ()) == "nvjpeg"  # scoring routes each file itself
    assert resolve_loader("auto", cuda, png) == "torch"
    assert resolve_loader("auto", CPU, jpeg) == "torch"
    assert resolve_loader("nvjpeg", CPU, jpeg) == "nvjpeg"
    with pytest.raises(UserInputError, match="JPEG files only"):
        resolve_loader("nvjpeg", CPU, png)


def test_data_stream_with_nvjpeg_on_the_cpu_streams_real_films(monkeypatch, capsys, samples_dir):
    code, out, err = run_main(
        monkeypatch, capsys, "data", "stream", samples_dir, "--loader", "nvjpeg",
        "--device", "cpu", "--batch-size", "4", "--workers", "2",
    )  # fmt: skip
    assert code == 0, err
    # The JPEG through torchvision, the PNGs and DICOMs through PIL: every film streamed.
    assert out.startswith("5 images in ") and "(nvjpeg, 2 workers, batch 4, 224 px)" in out


@pytest.mark.gpu
def test_cuda_batches_are_the_cpu_decoders_within_the_agreement_tolerance(kaggle_dir, samples_dir):
    """nvJPEG on the GPU against libjpeg-turbo on the CPU, through the scoring loader, with
    the training loader's labels on the device too."""
    records = [*discover(kaggle_dir), Record(str(samples_dir / "16747_3_1.jpg"), 0, None, "s")]
    contract = PreprocessContract(image_size=224)
    gpu_spec = LoaderSpec(records, contract, 16, workers=2, device="cuda")
    gpu, _ = _collect(gpu_spec, "nvjpeg")
    cpu, _ = _collect(LoaderSpec(records, contract, 16, workers=2), "nvjpeg")
    assert gpu.keys() == cpu.keys() and len(gpu) == len(records)
    for position, x in gpu.items():
        assert x.is_cuda and x.dtype == torch.float32
        assert float((x.cpu() - cpu[position]).abs().mean()) < AGREEMENT, records[position].path
    batch = next(iter(NvjpegLoader(gpu_spec, TrainMode(augment=Augment(), seed=1))))
    assert batch.x.is_cuda and batch.y.is_cuda
    assert batch.x.is_contiguous(memory_format=torch.channels_last)
