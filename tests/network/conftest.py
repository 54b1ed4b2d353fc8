"""Fixtures of the hospital-network tests: a real Orthanc on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.network.orthanc import Modality, Orthanc, start_orthanc

DICOM_DIR = Path(__file__).parents[1] / "data" / "images" / "dicom"


@pytest.fixture
def orthanc(tmp_path) -> Iterator[Orthanc]:
    """An empty Orthanc (AE title ORTHANC) with DICOMweb at ``orthanc.dicomweb``."""
    with start_orthanc(tmp_path / "orthanc") as running:
        yield running


@pytest.fixture
def orthanc_factory(tmp_path) -> Iterator[Callable[..., Orthanc]]:
    """``start(modalities={"CXRFAST": Modality("CXRFAST", port)}, aet="ORTHANC")``: an Orthanc
    that knows the given peers (e.g. a `listen` to push to), stopped when the test ends; call
    it again after stopping one (``orthanc.process.terminate()``) to bring a PACS back."""
    with ExitStack() as stack:
        count = 0

        def start(modalities: dict[str, Modality] | None = None, aet: str = "ORTHANC") -> Orthanc:
            nonlocal count
            count += 1
            folder = tmp_path / f"orthanc-{count}"
            return stack.enter_context(start_orthanc(folder, aet, modalities))

        yield start


@pytest.fixture(scope="session")
def dx_films() -> list[Path]:
    """The committed generated DX films (tests/data/make_dicoms.py)."""
    return sorted(DICOM_DIR.glob("dx_*.dcm"))
