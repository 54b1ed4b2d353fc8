"""The Orthanc fixture itself: it starts on loopback, stores, and answers DICOMweb and DICOM."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path

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


def _listening_addresses(pid: int) -> set[str]:
    """``address:port`` of every TCP socket process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                assert len(address) == width
                found.add(f"{_address(address)}:{int(port, 16)}")
    return found


def _address(hex_address: str) -> str:
    """/proc/net/tcp's little-endian hex address as text (IPv4, or IPv6 as hex groups)."""
    raw = bytes.fromhex(hex_address)
    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
    packed = b"".join(words)
    return str(ipaddress.ip_address(packed))


def test_orthanc_listens_on_loopback_only(orthanc):
    listening = _listening_addresses(orthanc.process.pid)
    assert {f"127.0.0.1:{orthanc.http_port}", f"127.0.0.1:{orthanc.dicom_port}"} <= listening
    assert all(a.startswith(("127.0.0.1:", "::1:")) for a in listening), listening
