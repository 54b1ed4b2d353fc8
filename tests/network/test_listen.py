"""`cxr-fast listen` with pynetdicom as the modality and as the PACS (tests/network/
test_listen_orthanc.py does it against a real Orthanc): what is accepted and refused, rows as
`score` writes them, SRs, the spool across restarts, the outbox while the PACS is down."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom import uid

from cxr_fast.network import send, sr_file
from cxr_fast.network.listen_config import ListenConfig
from cxr_fast.network.scp import NOT_SUPPORTED
from cxr_fast.network.spool import Spool
from cxr_fast.network.sr import read_answer
from tests.network.conftest import DICOM_DIR
from tests.network.films import ct_slice, write_dx_films
from tests.network.listening import (
    MiniPacs,
    answered_count,
    associates,
    listen_process,
    listening,
    push,
    push_and_kill,
    score_probabilities,
    wait_until,
)
from tests.network.orthanc import free_port
from tests.network.test_spool import old_file, old_film


def _config(run: Path, tmp_path: Path, **options) -> ListenConfig:
    """listen on a free port."""
    return ListenConfig(
        run=run, spool=tmp_path / "spool", out=tmp_path / "preds.parquet", port=0,
        device="cpu", **options,
    )  # fmt: skip


def test_listen_answers_like_score_and_refuses_other_classes(trained_run, tmp_path):
    films = write_dx_films(tmp_path / "films", 6)
    ct = ct_slice(tmp_path / "ct")  # CT Image Storage: refused
    ct_sc = ct_slice(tmp_path / "sc", uid.SecondaryCaptureImageStorage)  # accepted, gated
    with listening(_config(trained_run, tmp_path)) as listener:
        assert associates(listener.port, "ANYONE")  # C-ECHO
        assert push([*films, ct, ct_sc], listener.port) == [0] * 6 + [NOT_SUPPORTED, 0]
        wait_until(lambda: answered_count(tmp_path / "spool") == 7, what="7 films answered")
    assert any("refused a CT Image Storage" in line for line in listener.lines)
    assert listener.result[0].received == 7

    rows = pq.read_table(tmp_path / "preds.parquet").to_pylist()
    by_uid = {row["sop_instance_uid"]: row for row in rows}
    assert len(rows) == len(by_uid) == 7
    scored = score_probabilities(trained_run, tmp_path / "films", tmp_path / "score.parquet")
    for sop, prob in scored.items():
        assert by_uid[sop]["status"] == "ok"
        assert by_uid[sop]["prob_pneumonia"] == pytest.approx(prob, abs=1e-5)
    gated = by_uid[pydicom.dcmread(ct_sc).SOPInstanceUID]
    assert gated["status"] == "not_cxr" and gated["prob_pneumonia"] is None
    assert {row["calling_ae"] for row in rows} == {"MODALITY"}
    assert all(row["received_at"] is not None and Path(row["path"]).is_file() for row in rows)

    reports = [pydicom.dcmread(p) for p in (tmp_path / "spool" / "outbox").glob("*.dcm")]
    answers = {a["source"]: a for a in map(read_answer, reports)}
    assert len(reports) == len(answers) == 7
    for sop, prob in scored.items():
        assert answers[sop]["probability"] == pytest.approx(prob, abs=1e-5)
        assert answers[sop]["finding"] == (prob >= answers[sop]["threshold"])
    assert answers[gated["sop_instance_uid"]]["finding"] is None


def test_every_transfer_syntax_of_the_test_films_is_received_and_scored(trained_run, tmp_path):
    # The CR and DX films, one per transfer syntax (the one without a file meta has none).
    films = [f for f in sorted(DICOM_DIR.glob("[cd][rx]_*.dcm")) if "no_preamble" not in f.name]
    syntaxes = {pydicom.dcmread(f, force=True).file_meta.TransferSyntaxUID for f in films}
    assert len(syntaxes) >= 7
    with listening(_config(trained_run, tmp_path)) as listener:
        assert push(films, listener.port) == [0] * len(films)
        wait_until(lambda: answered_count(tmp_path / "spool") == len(films))
    rows = {r["sop_instance_uid"]: r for r in pq.read_table(tmp_path / "preds.parquet").to_pylist()}
    scored = score_probabilities(trained_run, DICOM_DIR, tmp_path / "score.parquet")
    for sop, row in rows.items():
        assert row["status"] == "ok", row["error"]
        assert row["prob_pneumonia"] == pytest.approx(scored[sop], abs=1e-5)


def test_allow_aet_refuses_others_and_logs_them(trained_run, tmp_path):
    config = _config(trained_run, tmp_path, allow_aet=("MODALITY",))
    with listening(config) as listener:
        assert associates(listener.port, "MODALITY")
        assert not associates(listener.port, "STRANGER")
        wait_until(lambda: any("'STRANGER'" in line for line in listener.lines))


def test_spooled_films_are_answered_first_and_rows_kept_across_restarts(trained_run, tmp_path):
    films = write_dx_films(tmp_path / "films", 4)
    spool = Spool.open(tmp_path / "spool")
    for film in films[:2]:  # received by a listener that then died before answering
        spool.receive(film.read_bytes(), pydicom.dcmread(film).SOPInstanceUID)
    with listening(_config(trained_run, tmp_path)) as listener:
        assert "2 spooled films to answer first" in listener.lines[-1]
        wait_until(
            lambda: answered_count(tmp_path / "spool") == 2, what="the spooled films answered"
        )
        assert push(films[2:3], listener.port) == [0]
        wait_until(lambda: answered_count(tmp_path / "spool") == 3)
    assert pq.read_table(tmp_path / "preds.parquet").num_rows == 3
    with listening(_config(trained_run, tmp_path)) as listener:
        assert push(films[3:], listener.port) == [0]
        wait_until(lambda: answered_count(tmp_path / "spool") == 4)
    rows = pq.read_table(tmp_path / "preds.parquet").to_pylist()
    assert sorted(r["sop_instance_uid"] for r in rows) == sorted(
        pydicom.dcmread(f).SOPInstanceUID for f in films
    )


def test_the_spool_is_pruned_at_start_and_the_banner_says_so(trained_run, tmp_path):
    spool = Spool.open(tmp_path / "spool")
    old = [old_film(spool, "answered", 8, "1.2.3.1"), old_file(spool.folder("sent") / "2.5", 8)]
    kept = [old_film(spool, "answered", 6, "1.2.3.2"), old_film(spool, "incoming", 8, "1.2.3.3")]
    with listening(_config(trained_run, tmp_path, keep_days=7)) as listener:
        assert "; pruned 1 answered film and 1 sent marker older than 7 days" in listener.lines[0]
        assert not any(p.exists() for p in old) and kept[0].exists()
        # incoming/ is never pruned: its old film is answered (an error row: not DICOM).
        wait_until(lambda: answered_count(tmp_path / "spool") == 2, what="it answered")
    assert listener.result[0].answered == 1 and kept[0].exists()


def test_srs_wait_while_the_pacs_is_down_and_go_once(trained_run, tmp_path, monkeypatch):
    monkeypatch.setattr(send, "FIRST_RETRY_S", 0.1)
    monkeypatch.setattr(send, "MAX_RETRY_S", 0.3)
    films = write_dx_films(tmp_path / "films", 3)
    port = free_port()
    config = _config(trained_run, tmp_path, send_to=("PACS", "127.0.0.1", port))
    outbox = tmp_path / "spool" / "outbox"
    with listening(config) as listener:
        assert push(films, listener.port) == [0] * 3
        wait_until(lambda: len(list(outbox.glob("*.dcm"))) == 3, what="3 SRs in the outbox")
        wait_until(lambda: any("retrying" in line for line in listener.lines))
        pacs = MiniPacs(port)  # the PACS comes back
        try:
            wait_until(lambda: not list(outbox.glob("*.dcm")), what="the outbox emptied")
            assert len(pacs.reports) == pacs.stores == 3
            assert push(films, listener.port) == [0] * 3  # the same study again
            wait_until(lambda: answered_count(tmp_path / "spool") == 6)
            threading.Event().wait(1.5)  # a sender that would send again has had time to
            assert pacs.stores == 3
        finally:
            pacs.stop()
    assert listener.result[0].sent == 3
    sources = {read_answer(r)["source"] for r in pacs.reports.values()}
    assert sources == {pydicom.dcmread(f).SOPInstanceUID for f in films}


def test_kill_9_during_a_push_loses_no_film(trained_run, tmp_path):
    films = write_dx_films(tmp_path / "films", 16)
    pacs = MiniPacs()
    args = [str(trained_run), "--spool", str(tmp_path / "spool"), "--port", "0"]
    args += ["--out", str(tmp_path / "preds.parquet"), "--device", "cpu", "--max-wait", "0"]
    args += ["--send-to", f"PACS@127.0.0.1:{pacs.port}", "--batch-size", "2"]
    log = tmp_path / "listen.log"
    try:
        process, port = listen_process(args, log)
        acked = push_and_kill(films, port, process, after=6)
        assert 6 <= acked < len(films)
        process, port = listen_process(args, log)  # restarted: answers what it kept first
        assert push(films[acked:], port) == [0] * (len(films) - acked)
        wait_until(lambda: len(pacs.reports) == len(films), 60, "an SR for every film")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-2000:]
    finally:
        pacs.stop()
    sources = sorted(read_answer(r)["source"] for r in pacs.reports.values())
    assert sources == sorted(pydicom.dcmread(f).SOPInstanceUID for f in films)
    # A kill between the PACS's answer and the "sent" marker may send one SR again (same UID).
    assert pacs.stores <= len(films) + 1
    rows = pq.read_table(tmp_path / "preds.parquet").to_pylist()
    assert {r["sop_instance_uid"] for r in rows} == {
        pydicom.dcmread(f).SOPInstanceUID for f in films
    }
    assert all(r["status"] == "ok" for r in rows)


def test_a_film_whose_header_makes_no_sr_still_gets_its_row(trained_run, tmp_path, monkeypatch):
    films = write_dx_films(tmp_path / "films", 3)
    refused = pydicom.dcmread(films[1]).SOPInstanceUID
    real = sr_file.templated_report

    def fussy(source, row, identity):
        if source.SOPInstanceUID == refused:
            raise ValueError("PatientSex 'X' is not allowed")
        return real(source, row, identity)

    monkeypatch.setattr(sr_file, "templated_report", fussy)
    with listening(_config(trained_run, tmp_path)) as listener:
        assert push(films, listener.port) == [0] * 3
        wait_until(lambda: answered_count(tmp_path / "spool") == 3)
    rows = {r["sop_instance_uid"]: r for r in pq.read_table(tmp_path / "preds.parquet").to_pylist()}
    assert rows[refused]["status"] == "ok"
    assert "no SR: ValueError: PatientSex 'X' is not allowed" in rows[refused]["warnings"]
    assert len(list((tmp_path / "spool" / "outbox").glob("*.dcm"))) == 2
    assert any(": no SR: ValueError" in line for line in listener.lines)


def test_cam_adds_a_grad_cam_capture_in_the_study_of_each_scored_film(trained_run, tmp_path):
    films = write_dx_films(tmp_path / "films", 2)
    ct_sc = ct_slice(tmp_path / "sc", uid.SecondaryCaptureImageStorage)  # gated: no overlay
    outbox = tmp_path / "spool" / "outbox"
    with listening(_config(trained_run, tmp_path, cam=True)) as listener:
        assert push([*films, ct_sc], listener.port) == [0] * 3
        wait_until(lambda: answered_count(tmp_path / "spool") == 3)
        sent = {path: pydicom.dcmread(path) for path in outbox.glob("*.dcm")}
        captures = [ds for ds in sent.values() if ds.Modality == "OT"]
        # An overlay routed back to listen by the PACS is not answered in turn.
        routed_back = next(path for path, ds in sent.items() if ds.Modality == "OT")
        assert push([routed_back], listener.port) == [0]
        wait_until(lambda: answered_count(tmp_path / "spool") == 4)
    assert len(sent) == 5  # 3 SRs, 2 overlays
    assert len(captures) == 2
    for capture in captures:
        assert capture.SOPClassUID == uid.SecondaryCaptureImageStorage
        assert capture.StudyInstanceUID == pydicom.dcmread(films[0]).StudyInstanceUID
        assert capture.PhotometricInterpretation == "RGB"
        assert capture.pixel_array.shape[2] == 3
    rows = pq.read_table(tmp_path / "preds.parquet").to_pylist()
    assert [r["status"] for r in rows].count("skipped") == 1
    assert len(list(outbox.glob("*.dcm"))) == 5
