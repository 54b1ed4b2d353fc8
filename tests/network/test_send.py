"""The sender alone: what the PACS stores leaves the outbox; what it refuses is set aside."""

from pathlib import Path

import pydicom

from cxr_fast.network.send import Sender
from cxr_fast.network.spool import Spool
from cxr_fast.network.sr import read_answer
from cxr_fast.network.sr_file import report_file
from tests.network.listening import MiniPacs
from tests.network.test_sr import FILM, IDENTITY, OK


def test_a_refused_sr_is_set_aside_and_the_rest_still_goes(tmp_path):
    spool = Spool.open(tmp_path / "spool")
    films = []
    for index in range(3):
        film = pydicom.dcmread(FILM)
        film.SOPInstanceUID = f"{film.SOPInstanceUID}.{index}"
        films.append(film)
    uids = []
    for film in films:
        uid, data = report_file(film, OK, IDENTITY)
        spool.put_outbox(uid, data)
        uids.append(uid)
    pacs = MiniPacs(refuse={uids[0]})
    lines: list[str] = []
    try:
        sent = Sender(spool, ("PACS", "127.0.0.1", pacs.port), "CXRFAST", lines.append)
        assert sent.send_once() == 2
    finally:
        pacs.stop()
    assert sorted(pacs.reports) == sorted(uids[1:])
    assert spool.outbox() == []
    assert [p.stem for p in Path(spool.root / "refused").glob("*.dcm")] == [uids[0]]
    assert all(spool.was_sent(uid) for uid in uids[1:])
    assert any("refused" in line and "0xC000" in line for line in lines)
    # Sent markers keep an SR made again (the same film answered twice) out of the outbox.
    assert not spool.put_outbox(*report_file(films[1], OK, IDENTITY))


def test_an_sr_goes_to_a_pacs_that_takes_another_transfer_syntax(tmp_path):
    # The outbox holds Explicit VR files, sent as they are; this PACS only takes Implicit VR.
    spool = Spool.open(tmp_path / "spool")
    uid, data = report_file(pydicom.dcmread(FILM), OK, IDENTITY)
    spool.put_outbox(uid, data)
    pacs = MiniPacs(transfer_syntaxes=[pydicom.uid.ImplicitVRLittleEndian])
    try:
        assert Sender(spool, ("PACS", "127.0.0.1", pacs.port), "CXRFAST", print).send_once() == 1
    finally:
        pacs.stop()
    answer = read_answer(pacs.reports[uid])
    assert answer["probability"] == OK["prob_pneumonia"]
    assert answer["source"] == pydicom.dcmread(FILM).SOPInstanceUID
    assert spool.outbox() == [] and spool.was_sent(uid)
