"""Every kind of bad input the scorer and the web app must survive, written from real X-rays."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
from PIL import Image

AS_ROOT = os.geteuid() == 0
SOURCE = "16747_3_1.jpg"  # a real full-resolution film from the samples


def bomb_bytes(jpeg: bytes) -> bytes:
    """A real JPEG whose frame header announces 30000 x 30000 pixels."""
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 30000, 30000)
    return bytes(data)


def write_bad_files(folder: Path, samples_dir: Path) -> dict[str, str]:
    """Write the bad kinds into ``folder``; returns the expected status ("ok"/"error") per name
    (valid images in another format than their name says are "ok")."""
    source = samples_dir / SOURCE
    data = source.read_bytes()
    (folder / "truncated.jpeg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "text.jpeg").write_text("this is not an X-ray\n")
    Image.open(source).save(folder / "png_named.jpeg", format="PNG")
    Image.open(source).convert("CMYK").save(folder / "cmyk.jpeg")
    ramp = np.tile(np.linspace(0, 60000, 256, dtype=np.uint16), (256, 1))
    Image.fromarray(ramp).save(folder / "sixteen_bit.png")
    Image.new("L", (1, 1), 128).save(folder / "one_pixel.png")
    (folder / "bomb.jpeg").write_bytes(bomb_bytes(data))
    shutil.copy(source, folder / "locked.jpeg")
    os.chmod(folder / "locked.jpeg", 0)
    os.symlink(folder / "missing.jpeg", folder / "dangling.jpeg")
    shutil.copy(samples_dir / "Fake_MONOHR1.dcm", folder / "mono1.dcm")
    return {
        "truncated.jpeg": "error",
        "empty.jpeg": "error",
        "text.jpeg": "error",
        "png_named.jpeg": "ok",
        "cmyk.jpeg": "ok",
        "sixteen_bit.png": "ok",
        "one_pixel.png": "error",
        "bomb.jpeg": "error",
        "locked.jpeg": "ok" if AS_ROOT else "error",  # root reads any file
        "dangling.jpeg": "error",
        "mono1.dcm": "ok",
    }


def twelve_bit_png(path: Path, samples_dir: Path) -> None:
    """A real film as a 16-bit PNG holding 12-bit data (0..4095), as many modalities write."""
    film = np.asarray(Image.open(samples_dir / SOURCE).convert("L"), dtype=np.uint16)
    Image.fromarray((film * 16).astype(np.uint16)).save(path)


def awkward_pngs(folder: Path, samples_dir: Path) -> list[Path]:
    """PNGs DALI and PIL could decode differently: 12-bit data in 16 bits, palette, grey+alpha."""
    film = Image.open(samples_dir / SOURCE).convert("L").resize((256, 256))
    twelve_bit_png(folder / "twelve_bit.png", samples_dir)
    film.convert("P").save(folder / "palette.png")
    film.convert("LA").save(folder / "grey_alpha.png")
    return [folder / "twelve_bit.png", folder / "palette.png", folder / "grey_alpha.png"]


def write_special_files(folder: Path) -> dict[str, str]:
    """Files that are not regular files, under image names: a FIFO (opening it blocks until a
    writer comes), a UNIX socket and a link to a character device that never ends."""
    import socket

    os.mkfifo(folder / "pipe.jpeg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "socket.png"))
    server.close()  # the socket file stays
    os.symlink("/dev/zero", folder / "zero.jpeg")
    return {"pipe.jpeg": "error", "socket.png": "error", "zero.jpeg": "error"}


class CodeOnLoad:
    """Pickles as a call: a full unpickler would run ``print`` on load, the safe one refuses."""

    def __reduce__(self):
        return (print, ("code from the file ran",))


def add_pickled_code(path: Path) -> None:
    """Rewrite the torch file ``path`` (model.pt, last.pt) with an object whose unpickling runs
    code, beside what it held: what a tampered or foreign checkpoint looks like."""
    import torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    data["extra"] = CodeOnLoad()
    torch.save(data, path)


def scandir_refusing(monkeypatch, refused: Path) -> None:
    """os.scandir raising PermissionError for ``refused``, as for a folder of mode 000 run
    by a user who is not root (root reads it all the same, so the tests simulate it)."""
    real = os.scandir

    def scandir(path="."):
        if not isinstance(path, int) and os.fspath(path) == str(refused):  # not an fd
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
