"""The template-built SR is highdicom's SR, byte for byte, for every kind of film and row."""

import datetime as dt
import io
from pathlib import Path
from types import SimpleNamespace

import highdicom.base
import highdicom.base_content
import pydicom
import pytest

from cxr_fast.network.sr import structured_report
from cxr_fast.network.sr_file import file_bytes
from cxr_fast.network.sr_template import ReportTemplate
from tests.network.films import write_dx_films
from tests.network.test_sr import FILM, IDENTITY, OK

NOW = dt.datetime(2026, 12, 7, 16, 20, 1, 123456)
ROWS = {
    "present": OK,
    "absent": {**OK, "prob_pneumonia": 0.1, "pred": "NORMAL"},
    "round": {**OK, "prob_pneumonia": 0.5, "threshold": 0.5},
    "refused": {"prob_pneumonia": None, "pred": None, "threshold": 0.42, "status": "not_cxr",
                "error": "DICOM Modality CT (chest radiographs are CR, DX)"},
    "no reason": {"prob_pneumonia": None, "pred": None, "threshold": 0.42, "status": "error"},
}  # fmt: skip


class _Clock(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


@pytest.fixture
def frozen(monkeypatch):
    """highdicom's clock stopped at NOW, so that both reports carry the same times."""
    clock = SimpleNamespace(datetime=_Clock, date=dt.date, time=dt.time)
    for module in (highdicom.base, highdicom.base_content):
        monkeypatch.setattr(module, "datetime", clock)


def _films(tmp_path: Path) -> list[pydicom.Dataset]:
    cr = pydicom.dcmread(FILM, stop_before_pixels=True)
    dx = pydicom.dcmread(write_dx_films(tmp_path, 1)[0], stop_before_pixels=True)
    modality = dx.copy()  # a film from a modality that names itself, in Latin-1
    modality.SOPInstanceUID += ".7"
    modality.Manufacturer, modality.StationName = "ACME", "ROOM2"
    modality.AcquisitionDate, modality.AcquisitionTime = "20261207", "101010"
    modality.SpecificCharacterSet, modality.PatientName = "ISO_IR 100", "Müller^Jörg"
    modality.PatientAge, modality.OtherPatientIDs = "061Y", "X1"
    bare = dx.copy()  # type 2 study attributes left out
    bare.SOPInstanceUID += ".8"
    del bare.PatientName, bare.StudyDate, bare.AccessionNumber
    return [cr, dx, modality, bare]


@pytest.mark.parametrize("kind", ROWS)
def test_template_report_equals_highdicoms(kind, frozen, tmp_path):
    template = ReportTemplate(IDENTITY)
    films = _films(tmp_path)
    built = [template.report(film, ROWS[kind], NOW) for film in films]  # all, then compared
    for film, got in zip(films, built, strict=True):
        expected = structured_report(film, ROWS[kind], IDENTITY)
        assert got == expected
        assert got.file_meta == expected.file_meta
        assert file_bytes(got) == file_bytes(expected)
        assert _written(got) == _written(expected)  # as a library writes it (dicomweb-client)


def _written(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset)
    return buffer.getvalue()
