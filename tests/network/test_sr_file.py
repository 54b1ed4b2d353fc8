"""Each film's SR as a file's bytes, in order; a row highdicom refuses gives why, not a crash."""

import pydicom

from cxr_fast.network.sr import read_answer
from cxr_fast.network.sr_file import report_file
from tests.network.test_sr import FILM, IDENTITY, OK


def test_report_file_gives_each_film_its_sr_or_why_not():
    films = []
    for index in range(3):
        film = pydicom.dcmread(FILM, stop_before_pixels=True)
        film.SOPInstanceUID = f"{film.SOPInstanceUID}.{index}"
        films.append(film)
    rows = [{**OK, "prob_pneumonia": 0.1 * index} for index in range(3)]
    rows[1] = {**rows[1], "threshold": "not a number"}  # highdicom refuses: a reason
    built = [report_file(film, row, IDENTITY) for film, row in zip(films, rows, strict=True)]
    assert isinstance(built[1], str) and built[1].startswith("no SR: ")
    for index in (0, 2):
        uid, data = built[index]
        report = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        assert report.SOPInstanceUID == uid
        answer = read_answer(report)
        assert answer["source"] == films[index].SOPInstanceUID
        assert answer["probability"] == rows[index]["prob_pneumonia"]
    assert built[0][0] != built[2][0]
