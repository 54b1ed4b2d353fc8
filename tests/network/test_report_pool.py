"""SRs built in worker processes are those built in listen's own process."""

import pydicom

from cxr_fast.network.report_pool import ReportPool, report_file
from cxr_fast.network.sr import read_answer
from tests.network.test_sr import FILM, IDENTITY, OK


def test_workers_build_the_same_srs_in_order():
    films = []
    for index in range(4):
        film = pydicom.dcmread(FILM, stop_before_pixels=True)
        film.SOPInstanceUID = f"{film.SOPInstanceUID}.{index}"
        films.append(film)
    rows = [{**OK, "prob_pneumonia": 0.1 * index} for index in range(4)]
    rows[2] = {**rows[2], "threshold": "not a number"}  # highdicom refuses: a reason, in order
    pool = ReportPool(IDENTITY, 2)
    try:
        built = pool.build(list(zip(films, rows, strict=True)))
    finally:
        pool.close()
    here = [report_file(film, row, IDENTITY) for film, row in zip(films, rows, strict=True)]
    assert isinstance(built[2], str) and built[2].startswith("no SR: ")
    assert built[2] == here[2]
    for index in (0, 1, 3):
        uid, data = built[index]
        assert uid == here[index][0]
        answer = read_answer(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)))
        assert answer["source"] == films[index].SOPInstanceUID
        assert answer["probability"] == rows[index]["prob_pneumonia"]
