"""The Orthanc fixture itself: it starts on loopback, stores, and answers DICOMweb and DICOM."""

from __future__ import annotations

import pydicom
import requests

from tests.network.orthanc import Modality, pacs_or_skip, storescu


def test_upload_and_read_back(orthanc, dx_films):
    ids = orthanc.upload(dx_films[:1])
    source = pydicom.dcmread(dx_films[0])
    back = orthanc.dataset(ids[0])
    assert back.SOPInstanceUID == source.SOPInstanceUID
    assert orthanc.instances() == ids
    # the DICOMweb plugin answers QIDO-RS at its root
    found = requests.get(f"{orthanc.dicomweb}/instances", timeout=10).json()
    assert [i["00080018"]["Value"][0] for i in found] == [source.SOPInstanceUID]


def test_dicom_port_accepts_only_declared_peers(orthanc_factory, dx_films):
    pacs_or_skip(storescu=True)
    pacs = orthanc_factory({"SENDER": Modality("SENDER", 104)})

    def send(calling: str) -> int:
        sent = storescu(dx_films[:1], pacs.dicom_port, pacs.aet, calling, "--propose-jpeg8")
        return sent.returncode

    assert send("STRANGER") != 0
    assert pacs.instances() == []
    assert send("SENDER") == 0
    assert len(pacs.instances()) == 1
