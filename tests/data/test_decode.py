import shutil

import numpy as np
import pytest
from PIL import Image

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.decode import ImageReadError, probe, read_gray


def test_16_bit_png_is_stretched_to_8_bits(tmp_path):
    ramp = np.tile(np.linspace(1000, 4000, 300, dtype=np.uint16), (200, 1))
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels, original = read_gray(str(path), PreprocessContract(image_size=100))
    assert original == (300, 200)
    assert pixels.dtype == np.uint8
    assert pixels[:, 0].mean() < 5 and pixels[:, -1].mean() > 250  # full 8-bit range used
    assert np.all(np.diff(pixels[50].astype(int)) >= 0)  # still a ramp


def test_large_jpeg_draft_decoding_keeps_the_picture(samples_dir):
    path = str(samples_dir / "16747_3_1.jpg")
    pixels, original = read_gray(path, PreprocessContract(image_size=128))
    assert original == (1036, 885)
    with Image.open(path) as image:
        reference = np.asarray(image.convert("L").resize((128, 128), Image.Resampling.BILINEAR))
    assert np.abs(pixels.astype(float) - reference).mean() < 2.0


def test_rgb_png_becomes_luma(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    path = tmp_path / "red.png"
    Image.fromarray(rgb).save(path)
    pixels, _ = read_gray(str(path), PreprocessContract(image_size=16))
    assert np.all(pixels == round(200 * 0.299))


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0garbage"])
def test_bad_files_raise_a_readable_error(tmp_path, content):
    path = tmp_path / "bad.jpeg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"bad\.jpeg"):
        read_gray(str(path), PreprocessContract())
    with pytest.raises(ImageReadError):
        probe(str(path))


def test_probe_catches_truncation_a_header_read_would_miss(samples_dir, tmp_path):
    data = (samples_dir / "16747_3_1.jpg").read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as image:
        assert image.size == (1036, 885)  # the header alone looks fine
    with pytest.raises(ImageReadError, match="truncated"):
        probe(str(path))
    assert probe(str(samples_dir / "siim_sample.dcm")) == (1024, 1024)


def test_bytes_give_the_same_pixels_as_files_whatever_the_name(samples_dir):
    from cxr_fast.data.decode import read_gray_bytes

    contract = PreprocessContract(image_size=96)
    for name in ("16747_3_1.jpg", "h0001.png", "siim_sample.dcm"):
        path = samples_dir / name
        from_file = read_gray(str(path), contract)
        from_bytes = read_gray_bytes(path.read_bytes(), contract, "renamed.bin")
        assert from_file[1] == from_bytes[1]
        np.testing.assert_array_equal(from_file[0], from_bytes[0])


def test_a_dicom_file_is_read_as_dicom_whatever_its_name(samples_dir, tmp_path):
    """PACS exports name files IM00001 or x.dicom: the content decides, as for uploads."""
    from cxr_fast.data.decode import display_gray, read_image

    contract = PreprocessContract(image_size=96)
    source = samples_dir / "siim_sample.dcm"
    named = read_image(str(source), contract)
    for name in ("IM00001", "x.dicom"):
        copy = tmp_path / name
        shutil.copy(source, copy)
        read = read_image(str(copy), contract)
        np.testing.assert_array_equal(read.pixels, named.pixels)
        assert read.size == named.size and read.info["modality"] == named.info["modality"]
        assert probe(str(copy)) == (1024, 1024)
        assert display_gray(str(copy), 64).size == display_gray(str(source), 64).size


def test_pixel_limit_refuses_from_the_header(samples_dir):
    from cxr_fast.data.decode import read_gray_bytes

    data = (samples_dir / "16747_3_1.jpg").read_bytes()
    with pytest.raises(ImageReadError, match="MP limit"):
        read_gray_bytes(data, PreprocessContract(), max_pixels=1000)
    with pytest.raises(ImageReadError, match="empty"):
        read_gray_bytes(b"", PreprocessContract())


def test_display_keeps_the_aspect(samples_dir):
    from cxr_fast.data.decode import display_gray

    path = samples_dir / "16747_3_1.jpg"
    shown = display_gray(str(path), 200)
    with Image.open(path) as original:
        ratio = original.width / original.height
    assert max(shown.size) == 200 and shown.mode == "L"
    assert shown.width / shown.height == pytest.approx(ratio, rel=0.02)
