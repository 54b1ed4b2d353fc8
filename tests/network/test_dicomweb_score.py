"""``score --dicomweb`` against a real Orthanc: the rows of ``score`` on the same files, WADO-RS
URLs for paths, and with --store-sr one SR per film in Orthanc, read back with pydicom."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from cxr_fast.network.sr import read_answer
from cxr_fast.scoring.score import ScoreConfig, run_score
from tests.cli_in_process import assert_one_line, run_main
from tests.network.conftest import DICOM_DIR
from tests.network.films import study_uid, write_dx_films
from tests.network.orthanc import free_port

FILMS = 6  # in two studies


def _config(run, out, **options) -> ScoreConfig:
    options = {"archive": None, "device": "cpu", "workers": 0, "loader": "torch", **options}
    return ScoreConfig(model=run, out=out, **options)


@pytest.fixture
def films(tmp_path):
    return write_dx_films(tmp_path / "films", FILMS, studies=2)


def _by_uid(path) -> dict[str, dict]:
    return {row["sop_instance_uid"]: row for row in pq.read_table(path).to_pylist()}


def test_dicomweb_rows_are_score_rows_of_the_same_files(orthanc, films, trained_run, tmp_path):
    orthanc.upload(films)
    local = tmp_path / "local.parquet"
    run_score(_config(trained_run, local, archive=films[0].parent))
    served = tmp_path / "served.parquet"
    summary = run_score(_config(trained_run, served, dicomweb=orthanc.dicomweb))

    want, got = _by_uid(local), _by_uid(served)
    assert set(got) == set(want) and len(got) == FILMS
    for sop, row in got.items():
        assert row["status"] == "ok"
        assert row["prob_pneumonia"] == pytest.approx(want[sop]["prob_pneumonia"], abs=1e-3)
        assert row["pred"] == want[sop]["pred"]
        assert row["path"] == (
            f"{orthanc.dicomweb}/studies/{row['study_instance_uid']}/series/"
            f"{row['series_instance_uid']}/instances/{sop}"
        )
        same = ("modality", "patient_id", "study_instance_uid", "width", "height")
        assert {k: row[k] for k in same} == {k: want[sop][k] for k in same}
    metadata = pq.read_schema(served).metadata
    assert json.loads(metadata[b"cxr_fast_archive"]) == orthanc.dicomweb
    assert (summary.rows, summary.ok, summary.errors) == (FILMS, FILMS, 0)
    assert orthanc.dicomweb in summary.summary()
    assert not list(tmp_path.glob(".served.parquet*"))  # the spool is gone


def test_study_limits_what_is_scored(orthanc, films, trained_run, tmp_path):
    orthanc.upload(films)
    out = tmp_path / "one.parquet"
    study = study_uid(1)
    run_score(_config(trained_run, out, dicomweb=orthanc.dicomweb, study=(study,)))
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == FILMS // 2
    assert {row["study_instance_uid"] for row in rows} == {study}


def test_store_sr_answers_each_film_once(orthanc, films, trained_run, tmp_path):
    orthanc.upload(films)
    out = tmp_path / "preds.parquet"
    config = _config(trained_run, out, dicomweb=orthanc.dicomweb, store_sr=True)
    summary = run_score(config)
    assert f"{FILMS} structured reports stored by STOW-RS" in summary.summary()
    rows = _by_uid(out)
    reports = orthanc.datasets(modality="SR")
    assert len(reports) == FILMS
    for report in reports:  # read back with pydicom from Orthanc's copy
        answer = read_answer(report)
        row = rows[answer["source"]]
        assert answer["probability"] == pytest.approx(row["prob_pneumonia"], abs=1e-6)
        assert answer["finding"] == (row["pred"] == "PNEUMONIA")
        assert report.StudyInstanceUID == row["study_instance_uid"]
    # Again: the SRs now held are skipped rows (no SR answers an SR), and the same films' SRs
    # have the same UIDs, so Orthanc still holds one per film.
    summary = run_score(ScoreConfig(**{**vars(config), "overwrite": True}))
    assert (summary.ok, summary.skipped) == (FILMS, FILMS)
    assert len(orthanc.datasets(modality="SR")) == FILMS


def test_an_instance_not_fetched_is_an_error_row(orthanc, films, trained_run, tmp_path):
    # Stored as sent (no preamble, no meta header): WADO-RS serves it so, dicomweb-client
    # cannot parse it.
    orthanc.upload([films[0], DICOM_DIR / "dx_lateral_no_preamble.dcm"])
    out = tmp_path / "preds.parquet"
    summary = run_score(_config(trained_run, out, dicomweb=orthanc.dicomweb))
    rows = pq.read_table(out).to_pylist()
    assert sorted(row["status"] for row in rows) == ["error", "ok"]
    error = next(row for row in rows if row["status"] == "error")
    assert "WADO-RS" in error["error"] and error["sop_instance_uid"]
    assert (summary.rows, summary.errors) == (2, 1)


def test_user_mistakes_are_one_line(monkeypatch, capsys, orthanc, trained_run, tmp_path):
    out = tmp_path / "p.parquet"
    nobody = f"http://127.0.0.1:{free_port()}/dicom-web"
    cases = [
        (["--dicomweb", nobody], "did not answer QIDO-RS (cannot connect: Connection refused)"),
        (["--dicomweb", orthanc.url + "/not-dicomweb"], "(HTTP 404 Not Found)"),
        (["--dicomweb", orthanc.dicomweb], "found no instances"),
        ([str(tmp_path), "--dicomweb", orthanc.dicomweb], "not both"),
        (["--dicomweb", orthanc.dicomweb, "--resume"], "--resume cannot be used"),
        ([str(tmp_path), "--store-sr"], "need --dicomweb"),
        ([], "ARCHIVE"),
    ]
    for args, needle in cases:
        code, _, err = run_main(
            monkeypatch, capsys, "score", *args, "--model", trained_run, "--out", out
        )
        assert_one_line(code, err, needle)
    assert not out.exists()
