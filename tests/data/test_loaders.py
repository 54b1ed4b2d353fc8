from pathlib import Path

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.collecting_loader import CollectingLoader
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.loaders import (
    DEFAULT_CPU_LOADER,
    dali_can_read,
    make_scoring_loader,
    make_train_loader,
    resolve_loader,
)
from cxr_fast.data.torch_loader import TorchLoader

CPU = torch.device("cpu")
SAMPLES = Path(__file__).parent / "images" / "samples"
JPEG = [Record(str(SAMPLES / "16747_3_1.jpg"), 0, "train", "x")]
DICOM = [*JPEG, Record(str(SAMPLES / "siim_sample.dcm"), None, None, "y")]


def test_auto_picks_the_measured_cpu_default_and_torch_for_dicom():
    expected = DEFAULT_CPU_LOADER if dali_available() else "torch"
    assert resolve_loader("auto", CPU, JPEG) == expected
    assert resolve_loader("auto", CPU, DICOM) == "torch"
    assert resolve_loader("torch", CPU, JPEG) == "torch"


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_explicit_choices_and_their_errors():
    assert resolve_loader("dali", CPU, JPEG) == "dali"
    assert resolve_loader("auto", torch.device("cuda"), JPEG) == "dali"
    with pytest.raises(ValueError, match="DICOM"):
        resolve_loader("dali", CPU, DICOM)
    with pytest.raises(ValueError, match="loader"):
        resolve_loader("opencv", CPU, JPEG)


def test_files_go_to_dali_by_their_header_not_their_name(tmp_path):
    """A DICOM named .jpg is not DALI's; a JPEG named .png is."""
    dicom_as_jpeg = tmp_path / "film.jpg"
    dicom_as_jpeg.write_bytes((SAMPLES / "siim_sample.dcm").read_bytes())
    jpeg_as_png = tmp_path / "film.png"
    jpeg_as_png.write_bytes((SAMPLES / "16747_3_1.jpg").read_bytes())
    assert not dali_can_read([Record(str(dicom_as_jpeg), None, None, "a")])
    assert dali_can_read([Record(str(jpeg_as_png), None, None, "b")])
    assert not dali_can_read([Record(str(tmp_path / "missing.jpeg"), None, None, "c")])


def test_make_train_loader_builds_each_backend_and_drops_the_partial_batch(kaggle_dir):
    spec = LoaderSpec(discover(kaggle_dir)[:5], PreprocessContract(image_size=32), 4)
    torch_loader = make_train_loader(spec, "torch")
    assert isinstance(torch_loader, TorchLoader)
    assert [b.x.shape[0] for b in torch_loader] == [4]
    if dali_available():
        dali_loader = make_train_loader(spec, "dali")
        assert isinstance(dali_loader, DaliLoader)
        assert [b.x.shape[0] for b in dali_loader] == [4]


def test_make_scoring_loader_keeps_every_film_in_order(kaggle_dir):
    spec = LoaderSpec(discover(kaggle_dir)[:5], PreprocessContract(image_size=32), 4)
    for backend in ("torch", "dali") if dali_available() else ("torch",):
        loader = make_scoring_loader(spec, backend)
        assert isinstance(loader, CollectingLoader)
        batches = list(loader)
        assert torch.cat([b.index for b in batches]).tolist() == list(range(5)), backend


def test_a_spec_shards_its_records(kaggle_dir):
    records = discover(kaggle_dir)[:5]
    shards = [
        LoaderSpec(records, PreprocessContract(), 2, shard_id=i, num_shards=2) for i in (0, 1)
    ]
    assert [s.positions() for s in shards] == [[0, 1], [2, 3, 4]]
    loader = make_scoring_loader(shards[1], "torch")
    assert torch.cat([b.index for b in loader]).tolist() == [2, 3, 4]


def test_user_mistakes_are_value_errors(kaggle_dir):
    records = discover(kaggle_dir)[:2]
    with pytest.raises(ValueError, match="batch size"):
        LoaderSpec(records, PreprocessContract(), batch_size=0)
    with pytest.raises(ValueError, match="no images"):
        LoaderSpec([], PreprocessContract(), batch_size=2)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            LoaderSpec(records, PreprocessContract(), batch_size=2, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_gpu_dali_batches_are_float32_channels_last_on_device(kaggle_dir):
    records = discover(kaggle_dir)
    contract = PreprocessContract(image_size=64)
    gpu = DaliLoader(LoaderSpec(records, contract, 8, device="cuda"))
    batches = list(gpu)
    # float32 whatever the precision: autocast lowers it, and an fp32 model rejects Half.
    assert batches[0].x.is_cuda and batches[0].x.dtype == torch.float32
    assert batches[0].x.is_contiguous(memory_format=torch.channels_last)
    cpu = DaliLoader(LoaderSpec(records, contract, 8))
    gpu_x = torch.cat([b.x for b in batches]).cpu()
    cpu_x = torch.cat([b.x for b in cpu])
    assert float((gpu_x - cpu_x).abs().mean()) < 0.01  # nvJPEG vs libjpeg-turbo


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_every_loader_sees_the_same_pixels_in_awkward_pngs(tmp_path, samples_dir):
    """12-bit data in a 16-bit PNG, palette and grey+alpha PNGs: whatever loader a run picks
    (DALI on a GPU host), the pixels are PIL's, the ones score and serve use."""
    from tests.bad_files import awkward_pngs

    contract = PreprocessContract(image_size=64)
    for path in awkward_pngs(tmp_path, samples_dir):
        records = [Record(str(path), 0, None, path.stem)]
        pil = next(iter(TorchLoader(LoaderSpec(records, contract, 1)))).x
        assert float(pil.mean()) > 0.2, path.name  # a real film, not a black frame
        with pytest.raises(ValueError, match="--loader torch"):
            resolve_loader("dali", CPU, records)
        for device in (CPU, torch.device("cuda")):
            assert resolve_loader("auto", device, records) == "torch"
        # What DALI would have produced, for the record of why: 12-bit data comes out dark.
        if path.name == "twelve_bit.png":
            dali = next(iter(DaliLoader(LoaderSpec(records, contract, 1)))).x
            assert float(dali.mean()) < 0.1 < float(pil.mean())


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_dali_and_pil_agree_on_the_pngs_dali_still_takes(tmp_path, samples_dir):
    from PIL import Image

    contract = PreprocessContract(image_size=64)
    film = Image.open(samples_dir / "16747_3_1.jpg")
    for mode in ("L", "RGB"):
        path = tmp_path / f"{mode}.png"
        film.convert(mode).save(path)
        records = [Record(str(path), 0, None, mode)]
        assert resolve_loader("dali", CPU, records) == "dali"
        spec = LoaderSpec(records, contract, 1)
        pil = next(iter(TorchLoader(spec))).x
        dali = next(iter(DaliLoader(spec))).x
        assert float((pil - dali).abs().mean()) < 0.01, mode


def test_a_collecting_loader_accounts_for_every_file_with_the_same_pixels(kaggle_dir, tmp_path):
    """The scoring loader (score, evaluate, calibrate, validation) names the file that failed
    beside the batch and gives the other files the pixels the training loader gives them."""
    import shutil

    for path in sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:5]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.jpeg").write_text("not an image\n")
    records = discover(tmp_path)
    contract = PreprocessContract(image_size=32)
    collected = list(make_scoring_loader(LoaderSpec(records, contract, 4, workers=0), "torch"))
    assert sum(b.files for b in collected) == len(records) == 6
    failed = [records[p].path for b in collected for p, _ in b.errors]
    assert failed == [str(tmp_path / "broken.jpeg")]
    assert all(len(b.sizes) == len(b.index) for b in collected)
    good = [r for r in records if r.path not in failed]
    expected = torch.cat([b.x for b in TorchLoader(LoaderSpec(good, contract, 4, workers=0))])
    assert torch.equal(torch.cat([b.x for b in collected if b.x is not None]), expected)


def test_building_a_dali_graph_without_dali_names_the_package(monkeypatch):
    from cxr_fast.data import dali_pipeline

    monkeypatch.setattr(dali_pipeline, "dali_available", lambda: False)
    with pytest.raises(RuntimeError, match="pip install nvidia-dali-cuda120"):
        dali_pipeline.build_pipeline(LoaderSpec(JPEG, PreprocessContract(), 1), TrainMode())
