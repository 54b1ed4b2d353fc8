"""Non-regular files are named, never opened; PNG headers route what DALI would decode
differently from PIL."""

import os

from PIL import Image

from cxr_fast.data.decode import ImageReadError, probe
from cxr_fast.data.filecheck import png_header, png_needs_pil, special_file_reason
from tests.bad_files import awkward_pngs, write_special_files


def test_special_files_are_named_without_being_opened(tmp_path, samples_dir):
    write_special_files(tmp_path)
    assert special_file_reason(tmp_path / "pipe.jpeg") == "not a regular file (a FIFO)"
    assert special_file_reason(tmp_path / "socket.png") == "not a regular file (a socket)"
    assert special_file_reason(tmp_path / "zero.jpeg") == "not a regular file (a character device)"
    assert special_file_reason(tmp_path) == "is a directory"
    assert special_file_reason(samples_dir / "16747_3_1.jpg") is None
    assert special_file_reason(tmp_path / "missing.jpeg") is None  # the decoder names it
    for name in ("pipe.jpeg", "zero.jpeg"):
        try:
            probe(str(tmp_path / name))  # would block (FIFO) or never end (/dev/zero)
        except ImageReadError as exc:
            assert exc.reason.startswith("not a regular file")
        else:
            raise AssertionError(f"{name} was read as an image")


def test_png_headers_say_which_files_take_the_pil_path(tmp_path, samples_dir):
    twelve, palette, grey_alpha = awkward_pngs(tmp_path, samples_dir)
    assert png_header(twelve) == (16, 0)
    assert png_header(palette)[1] == 3 and png_header(grey_alpha) == (8, 4)
    assert all(png_needs_pil(p) for p in (twelve, palette, grey_alpha))
    Image.open(samples_dir / "16747_3_1.jpg").convert("L").save(tmp_path / "grey.png")
    Image.open(samples_dir / "16747_3_1.jpg").convert("RGB").save(tmp_path / "rgb.png")
    assert not png_needs_pil(tmp_path / "grey.png") and not png_needs_pil(tmp_path / "rgb.png")
    assert not png_needs_pil(samples_dir / "16747_3_1.jpg")  # not a PNG at all
    os.mkfifo(tmp_path / "pipe.png")
    assert png_header(tmp_path / "pipe.png") is None
