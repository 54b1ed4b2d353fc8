"""Issue 26: huge images take room in a budget of decoded pixels shared by every decoding
process; usual films never wait."""

import io
import multiprocessing
import os
import signal
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_fast.contract import PreprocessContract
from cxr_fast.data import decode, decode_budget
from cxr_fast.data.collecting_loader import pil_batches
from cxr_fast.data.decode import decoded_bytes
from cxr_fast.data.decode_budget import SLOTS, slots_for
from cxr_fast.data.decode_budget import decode_budget as budget
from cxr_fast.data.dicom_intensity import stretch_to_uint8
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec

FORK = multiprocessing.get_context("fork")


def _hold(nbytes: int, seconds: float, log: str) -> None:
    with budget(nbytes):
        started = time.monotonic()
        time.sleep(seconds)
        ended = time.monotonic()
    with open(log, "a") as handle:
        handle.write(f"{started} {ended}\n")


def _most_at_once(log: Path) -> int:
    """The largest number of logged intervals (start end per line) that overlap."""
    events = []
    for line in log.read_text().splitlines():
        started, ended = map(float, line.split())
        events += [(started, 1), (ended, -1)]
    now = most = 0
    for _, step in sorted(events):  # an end before a start at the same instant
        now += step
        most = max(most, now)
    return most


def _run(nbytes: int, processes: int, seconds: float, log: Path) -> None:
    workers = [
        FORK.Process(target=_hold, args=(nbytes, seconds, str(log))) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0


def test_decodes_that_need_the_whole_budget_run_one_at_a_time(tmp_path):
    _run(decode_budget.BUDGET_BYTES, 3, 0.3, tmp_path / "log")
    assert _most_at_once(tmp_path / "log") == 1


def test_smaller_large_decodes_share_the_budget_and_small_ones_never_wait(tmp_path):
    half = decode_budget.BUDGET_BYTES // 2  # half the slots: two at once
    _run(half, 3, 1.0, tmp_path / "half")
    assert _most_at_once(tmp_path / "half") == 2
    _run(decode_budget.LARGE_DECODE_BYTES, 3, 1.0, tmp_path / "small")
    assert _most_at_once(tmp_path / "small") == 3


def test_a_killed_holder_gives_its_room_back(tmp_path):
    holder = FORK.Process(target=_hold, args=(decode_budget.BUDGET_BYTES, 600, os.devnull))
    holder.start()
    time.sleep(0.5)  # it holds every slot now
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    started = time.monotonic()
    _run(decode_budget.BUDGET_BYTES, 1, 0.0, tmp_path / "log")
    assert time.monotonic() - started < 10


def _png16_header(width: int, height: int, colour: int) -> bytes:
    """A 16-bit PNG (colour type 6: RGBA, 0: grey) without pixel data: enough for PIL to open
    it (it decodes lazily)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_the_issue_film_is_large_and_a_usual_film_is_not(samples_dir):
    with Image.open(io.BytesIO(_png16_header(9400, 9400, 6))) as image:
        # 353 MB of 8-bit RGBA (PIL keeps 16-bit RGBA so) and the 88 MB grey copy
        assert decoded_bytes(image) == 9400 * 9400 * 5
        assert slots_for(decoded_bytes(image)) == 7 < SLOTS
    with Image.open(io.BytesIO(_png16_header(3000, 3000, 0))) as image:  # a 16-bit film
        assert image.mode.startswith("I;16") and slots_for(decoded_bytes(image)) == 0
    for path in samples_dir.iterdir():  # real films: 16-bit PNGs, a 3000 px JPEG, DICOMs
        if path.suffix != ".dcm":
            with Image.open(path) as image:
                image.draft("L", (224, 224))  # as the decoder does for a JPEG
                assert slots_for(decoded_bytes(image)) == 0, path.name


def _logged_gray(log: str):
    real = decode._to_gray8

    def to_gray8(image):
        started = time.monotonic()
        time.sleep(0.5)  # a slow decode: two workers overlap unless the budget stops them
        gray = real(image)
        with open(log, "a") as handle:
            handle.write(f"{started} {time.monotonic()}\n")
        return gray

    return to_gray8


@pytest.mark.parametrize("large", [True, False])
def test_the_scorers_workers_decode_large_images_within_the_budget(tmp_path, monkeypatch, large):
    # A budget of 8 slots of 1 MiB: the 1200 px RGBA films below (7 MB decoded) are large.
    monkeypatch.setattr(decode_budget, "LARGE_DECODE_BYTES", 2**20)
    monkeypatch.setattr(decode_budget, "SLOT_BYTES", 2**20)
    side = 1200 if large else 400
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 255, (side, side, 4), dtype=np.uint8)
        Image.fromarray(pixels, "RGBA").save(tmp_path / f"film{i}.png", compress_level=1)
    log = tmp_path / "decodes.log"
    monkeypatch.setattr(decode, "_to_gray8", _logged_gray(str(log)))  # forked workers see it
    records = discover(tmp_path)
    spec = LoaderSpec(records, PreprocessContract(image_size=64), 1, workers=2)
    batches = pil_batches(spec, range(len(records)))
    assert sum(len(batch.index) for batch in batches) == 4
    assert _most_at_once(log) == (1 if large else 2)


def _float_stretch(array: np.ndarray) -> np.ndarray:
    """stretch_to_uint8 as it was: three float32 temporaries of the whole image."""
    array = array.astype(np.float32, copy=False)
    low, high = float(array.min()), float(array.max())
    span = high - low if high > low else 1.0
    return ((array - low) * (255.0 / span)).round().astype(np.uint8)


@pytest.mark.parametrize("low, high", [(0, 65536), (100, 4096), (7, 8), (65535, 65536)])
@pytest.mark.parametrize("order", ["<u2", ">u2"])
def test_16_bit_films_stretch_to_the_same_pixels_with_a_byte_per_pixel(low, high, order):
    array = np.random.default_rng(low).integers(low, high, (300, 300)).astype(order)
    np.testing.assert_array_equal(stretch_to_uint8(array), _float_stretch(array))
