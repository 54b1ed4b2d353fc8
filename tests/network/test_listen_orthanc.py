"""`cxr-fast listen` against a real PACS (Orthanc, tests/network/orthanc.py): Orthanc pushes a
study of DX films and a CT slice, the SRs come back into Orthanc; pushed again, no duplicate;
`kill -9` during a push, then a restart, answers every film."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pydicom
import pytest
import requests

from cxr_fast.network import send
from cxr_fast.network.listen_config import ListenConfig
from cxr_fast.network.sr import read_answer
from tests.network.films import ct_slice, write_dx_films
from tests.network.listening import (
    answered_count,
    listen_process,
    listening,
    push,
    score_probabilities,
    wait_until,
)
from tests.network.orthanc import Modality, Orthanc, free_port, launch_orthanc

FILMS = 24


def _srs(orthanc: Orthanc) -> dict[str, dict]:
    """The SRs Orthanc holds, read back: source SOP Instance UID -> answer."""
    answers = [read_answer(ds) for ds in orthanc.datasets("SR")]
    return {a["source"]: a for a in answers}


def _find_srs(orthanc: Orthanc) -> list[str]:
    body = {"Level": "Instance", "Query": {"Modality": "SR"}}
    response = requests.post(orthanc.url + "/tools/find", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _up(orthanc: Orthanc) -> bool:
    """Whether Orthanc's REST API answers (after a restart)."""
    try:
        return requests.get(orthanc.url + "/system", timeout=1).ok
    except requests.RequestException:
        return False


def _push(orthanc: Orthanc, ids: list[str]) -> bool:
    """Orthanc C-STOREs ``ids`` to the listener; whether every one was stored."""
    try:
        orthanc.send("CXRFAST", ids, timeout=120)
        return True
    except requests.HTTPError:
        return False


@pytest.fixture
def study(tmp_path, orthanc) -> tuple[list[Path], list[str], str]:
    """24 DX films and a CT slice in Orthanc: (DX files, their Orthanc ids, the CT's id)."""
    films = write_dx_films(tmp_path / "films", FILMS)
    ct = ct_slice(tmp_path / "ct")
    ids = orthanc.upload(films)
    return films, ids, orthanc.upload([ct])[0]


def test_orthanc_push_gets_one_sr_per_film_with_scores_probability(
    trained_run, tmp_path, orthanc, study
):
    _, ids, ct_id = study
    config = ListenConfig(
        run=trained_run, spool=tmp_path / "spool", out=tmp_path / "preds.parquet", port=0,
        device="cpu", send_to=("ORTHANC", "127.0.0.1", orthanc.dicom_port),
    )  # fmt: skip
    with listening(config) as listener:
        orthanc.add_modality("CXRFAST", Modality("CXRFAST", listener.port))
        assert not _push(orthanc, [ct_id])  # refused: CT Image Storage
        assert _push(orthanc, ids)
        orthanc.wait_for(lambda: len(_find_srs(orthanc)) == FILMS, 60, "24 SRs in Orthanc")
        answers = _srs(orthanc)
        assert _push(orthanc, ids)  # the same study again
        wait_until(
            lambda: answered_count(tmp_path / "spool") == 2 * FILMS, 60, "the second push answered"
        )
        wait_until(lambda: not list((tmp_path / "spool" / "outbox").glob("*.dcm")))
        assert len(_find_srs(orthanc)) == FILMS
    scored = score_probabilities(trained_run, tmp_path / "films", tmp_path / "score.parquet")
    assert sorted(answers) == sorted(scored)  # one SR per DX film, none for the CT
    for sop, prob in scored.items():
        assert answers[sop]["probability"] == pytest.approx(prob, abs=1e-3)
        assert answers[sop]["finding"] is not None


def test_kill_9_during_an_orthanc_push_then_restart_answers_every_film(
    trained_run, tmp_path, orthanc, study
):
    films, ids, _ = study
    port = free_port()
    orthanc.add_modality("CXRFAST", Modality("CXRFAST", port))
    args = [str(trained_run), "--spool", str(tmp_path / "spool"), "--port", str(port)]
    args += ["--out", str(tmp_path / "preds.parquet"), "--device", "cpu", "--max-wait", "0"]
    args += ["--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--batch-size", "4"]
    log = tmp_path / "listen.log"
    process, _ = listen_process(args, log)
    pushed = threading.Thread(target=_push, args=(orthanc, ids))
    pushed.start()
    spool = tmp_path / "spool"

    def received() -> list[Path]:
        return [*spool.glob("incoming/*.dcm"), *spool.glob("answered/*.dcm")]

    wait_until(lambda: len(received()) >= 8, 60, "8 films received")
    process.send_signal(signal.SIGKILL)
    process.wait()
    pushed.join()
    kept = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in received()}
    assert 8 <= len(kept) < FILMS
    process, _ = listen_process(args, log)
    try:
        # What was received before the kill is answered without being sent again ...
        wait_until(lambda: kept <= set(_srs(orthanc)), 60, "SRs for the films kept")
        assert _push(orthanc, ids)  # ... and Orthanc's failed job, retried, sends the rest
        orthanc.wait_for(lambda: len(_find_srs(orthanc)) == FILMS, 60, "24 SRs in Orthanc")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-2000:]
    sources = set(_srs(orthanc))
    assert sources == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in films}


def test_srs_wait_while_orthanc_is_down_and_arrive_when_it_returns(
    trained_run, tmp_path, orthanc, monkeypatch
):
    monkeypatch.setattr(send, "FIRST_RETRY_S", 0.2)
    monkeypatch.setattr(send, "MAX_RETRY_S", 0.5)
    films = write_dx_films(tmp_path / "films", 3)
    config = ListenConfig(
        run=trained_run, spool=tmp_path / "spool", out=tmp_path / "preds.parquet", port=0,
        device="cpu", send_to=("ORTHANC", "127.0.0.1", orthanc.dicom_port),
    )  # fmt: skip
    orthanc.process.kill()  # the PACS goes down
    orthanc.process.wait()
    outbox = tmp_path / "spool" / "outbox"
    with listening(config) as listener:
        assert push(films, listener.port) == [0] * 3
        wait_until(lambda: len(list(outbox.glob("*.dcm"))) == 3, 60, "3 SRs in the outbox")
        wait_until(lambda: any("retrying" in line for line in listener.lines))
        # ... and comes back: the same config, ports and storage.
        orthanc.process = launch_orthanc(orthanc.folder)
        wait_until(lambda: _up(orthanc), 30, "Orthanc back")
        orthanc.add_modality("CXRFAST", Modality("CXRFAST", listener.port))
        orthanc.wait_for(lambda: len(_find_srs(orthanc)) == 3, 60, "3 SRs in Orthanc")
        wait_until(lambda: not list(outbox.glob("*.dcm")), what="the outbox emptied")
    assert set(_srs(orthanc)) == {pydicom.dcmread(f).SOPInstanceUID for f in films}
