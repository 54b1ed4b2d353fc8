"""The SR answering a film: its content, read back after a save, and its derived UIDs."""

from pathlib import Path

import pydicom
import pytest

from cxr_fast.network.sr import read_answer, structured_report

FILM = Path(__file__).parents[1] / "data" / "images" / "dicom" / "cr_uncompressed.dcm"
IDENTITY = {
    "name": "cxr-fast",
    "arch": "cnn",
    "model_sha256": "ab" * 32,
    "version": "0.1.0",
    "threshold": 0.42,
    "calibration": {"temperature": 1.3, "bias": -0.1, "sample": 200, "source_model_sha256": "c"},
}
OK = {"prob_pneumonia": 0.73125, "pred": "PNEUMONIA", "threshold": 0.42, "status": "ok"}


@pytest.fixture(scope="module")
def film() -> pydicom.Dataset:
    return pydicom.dcmread(FILM)


def _saved(report: pydicom.Dataset, tmp_path: Path) -> pydicom.Dataset:
    path = tmp_path / "sr.dcm"
    report.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def test_scored_film_gets_finding_probability_threshold_and_source(film, tmp_path):
    report = _saved(structured_report(film, OK, IDENTITY), tmp_path)
    assert report.Modality == "SR"
    assert report.SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    assert report.StudyInstanceUID == film.StudyInstanceUID
    assert report.PatientID == film.PatientID
    assert report.SeriesInstanceUID != film.SeriesInstanceUID
    assert read_answer(report) == {
        "finding": True,
        "probability": 0.73125,
        "threshold": 0.42,
        "source": film.SOPInstanceUID,
    }
    absent = read_answer(structured_report(film, {**OK, "prob_pneumonia": 0.1, "pred": "NORMAL"},
                                           IDENTITY))  # fmt: skip
    assert absent["finding"] is False


def test_algorithm_identification_names_model_version_and_calibration(film):
    report = structured_report(film, OK, IDENTITY)
    texts = {}
    for item in report.ContentSequence:
        if item.ValueType == "TEXT":
            texts.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item.TextValue)
    assert texts["Algorithm Name"] == ["cxr-fast cnn"]
    assert texts["Algorithm Version"] == ["0.1.0"]
    params = texts["Algorithm Parameters"]
    assert "architecture=cnn" in params
    assert f"model_sha256={'ab' * 32}" in params
    assert any(p.startswith("calibration=") and '"temperature": 1.3' in p for p in params)


def test_uid_is_the_same_for_the_same_film_and_model_only(film):
    first = structured_report(film, OK, IDENTITY)
    again = structured_report(film, {**OK, "prob_pneumonia": 0.7}, IDENTITY)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    assert pydicom.uid.UID(first.SOPInstanceUID).is_valid
    other_model = structured_report(film, OK, {**IDENTITY, "model_sha256": "cd" * 32})
    assert other_model.SOPInstanceUID != first.SOPInstanceUID
    other_film = film.copy()
    other_film.SOPInstanceUID = film.SOPInstanceUID + ".1"
    assert structured_report(other_film, OK, IDENTITY).SOPInstanceUID != first.SOPInstanceUID


def test_refused_film_gets_no_finding(film, tmp_path):
    row = {"prob_pneumonia": None, "pred": None, "threshold": 0.42, "status": "not_cxr",
           "error": "DICOM Modality CT (chest radiographs are CR, DX)"}  # fmt: skip
    report = _saved(structured_report(film, row, IDENTITY), tmp_path)
    answer = read_answer(report)
    assert answer["finding"] is None and answer["probability"] is None
    assert answer["source"] == film.SOPInstanceUID
    notes = [i.TextValue for i in report.ContentSequence if i.ValueType == "TEXT"]
    assert any(n.startswith("not_cxr: DICOM Modality CT") for n in notes)
