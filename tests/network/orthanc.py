"""A real PACS for the hospital-network tests: Debian's Orthanc with its DICOMweb plugin.

`make pacs` (part of `make test`) installs the `orthanc`, `orthanc-dicomweb` and `dcmtk`
packages. Without them the tests that need Orthanc are skipped, except under CI (CI=true),
where a missing Orthanc is a failure.

:func:`start_orthanc` writes a config into a temporary folder (free loopback ports, no
authentication, storage in that folder, the DICOMweb plugin at ``/dicom-web/``), starts
Orthanc, waits until both its HTTP and DICOM ports answer, and stops it on exit. Orthanc 1.10
has no option to bind one interface, so it runs with ``loopback_bind.c`` preloaded (compiled
here with the system's C compiler): its binds to every interface become binds to loopback.
The config also refuses every HTTP client but loopback (``RemoteAccessAllowed``) and every DICOM
peer that is not a configured modality at 127.0.0.1 (``DicomCheckModalityHost``, no
``DicomAlwaysAllow*``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
import requests

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
# Where Debian's orthanc-dicomweb puts the plugin (`dpkg -L orthanc-dicomweb`).
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
STORESCU = shutil.which("storescu") or "/usr/bin/storescu"
DICOMWEB_ROOT = "/dicom-web/"
LOOPBACK = "127.0.0.1"
STARTUP_SECONDS = 30.0


def pacs_or_skip(*, storescu: bool = False) -> None:
    """Skip the calling test when Orthanc (or dcmtk's storescu) is missing; fail under CI."""
    missing = [p for p in (ORTHANC,) if not os.access(p, os.X_OK)]
    if not DICOMWEB_PLUGIN.is_file():
        missing.append(str(DICOMWEB_PLUGIN))
    if storescu and not os.access(STORESCU, os.X_OK):
        missing.append(STORESCU)
    if missing:
        message = f"no PACS for the network test: {', '.join(missing)} missing"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install them: make pacs)")
        pytest.skip(message)


def _loopback_bind() -> str:
    """The shared object that keeps Orthanc on loopback, compiled once per source version."""
    source = Path(__file__).with_name("loopback_bind.c")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    built = Path(tempfile.gettempdir()) / f"cxr-fast-loopback-bind-{digest}.so"
    if not built.exists():
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            message = "no C compiler to keep the test PACS on loopback"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        partial = built.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"],
            check=True,
        )
        partial.replace(built)
    return str(built)


def launch_orthanc(folder: Path) -> subprocess.Popen:
    """Start Orthanc on ``folder/orthanc.json``, bound to loopback only; its log in the folder."""
    env = {**os.environ, "LD_PRELOAD": _loopback_bind()}
    with open(folder / "orthanc.log", "ab") as log:
        return subprocess.Popen(
            [ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, env=env
        )


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def storescu(
    files: Iterable[Path | str], port: int, called: str, calling: str, *options: str
) -> subprocess.CompletedProcess:
    """dcmtk's storescu: C-STORE ``files`` to ``called`` at loopback ``port`` in one association.
    ``options`` go before the address (e.g. ``--propose-jpeg8`` for JPEG Baseline files, which
    storescu would otherwise try to decompress)."""
    command = [STORESCU, *options, "-aet", calling, "-aec", called, LOOPBACK, str(port)]
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True)


@dataclass(frozen=True)
class Modality:
    """A DICOM peer Orthanc may talk to (and accept stores from): AE title and loopback port."""

    aet: str
    port: int
    host: str = LOOPBACK


def orthanc_config(
    storage: Path,
    http_port: int,
    dicom_port: int,
    aet: str = "ORTHANC",
    modalities: Mapping[str, Modality] | None = None,
) -> dict:
    """Orthanc's JSON config: storage under ``storage``, the DICOMweb plugin on, no auth."""
    peers = {
        name: {"AET": m.aet, "Host": m.host, "Port": m.port, "AllowStore": True, "AllowEcho": True}
        for name, m in (modalities or {}).items()
    }
    return {
        "Name": "cxr-fast-test",
        "StorageDirectory": str(storage / "db"),
        "IndexDirectory": str(storage / "db"),
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # HTTP answers loopback clients only
        "AuthenticationEnabled": False,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomModalities": peers,
        "DicomAssociationCloseDelay": 0,
        "SaveJobs": False,
        "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT, "EnableWado": False, "Ssl": False},
    }


@dataclass
class Orthanc:
    """A running Orthanc: its ports and REST helpers (every call on loopback)."""

    http_port: int
    dicom_port: int
    aet: str
    folder: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return self.url + DICOMWEB_ROOT.rstrip("/")

    def get(self, path: str) -> requests.Response:
        response = requests.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response

    def upload(self, files: Iterable[Path | str | bytes]) -> list[str]:
        """POST each DICOM file (a path or its bytes) to /instances; Orthanc's instance ids."""
        ids = []
        for item in files:
            data = item if isinstance(item, bytes) else Path(item).read_bytes()
            response = requests.post(self.url + "/instances", data=data, timeout=30)
            response.raise_for_status()
            ids.append(response.json()["ID"])
        return ids

    def instances(self) -> list[str]:
        """Orthanc's ids of every instance it holds."""
        return self.get("/instances").json()

    def dataset(self, instance: str) -> pydicom.Dataset:
        """One stored instance, read back with pydicom."""
        return pydicom.dcmread(BytesIO(self.get(f"/instances/{instance}/file").content))

    def datasets(self, modality: str | None = None) -> list[pydicom.Dataset]:
        """Every stored instance (of ``modality`` when given), read back with pydicom."""
        found = [self.dataset(i) for i in self.instances()]
        return [ds for ds in found if modality is None or ds.get("Modality") == modality]

    def add_modality(self, name: str, modality: Modality) -> None:
        """Declare (or replace) a DICOM peer while Orthanc runs (REST PUT /modalities/NAME)."""
        body = {"AET": modality.aet, "Host": modality.host, "Port": modality.port}
        body |= {"AllowStore": True, "AllowEcho": True}
        response = requests.put(f"{self.url}/modalities/{name}", json=body, timeout=30)
        response.raise_for_status()

    def send(self, modality: str, instances: Iterable[str], timeout: float = 60) -> dict:
        """C-STORE ``instances`` (Orthanc ids) to a declared peer; Orthanc's answer."""
        body = {"Resources": list(instances), "Synchronous": True, "Timeout": int(timeout)}
        response = requests.post(
            f"{self.url}/modalities/{modality}/store", json=body, timeout=timeout + 10
        )
        response.raise_for_status()
        return response.json()

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 30, what: str = "a condition"
    ) -> None:
        """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc: timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    def log(self) -> str:
        path = self.folder / "orthanc.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _answers(orthanc: Orthanc) -> bool:
    try:
        requests.get(orthanc.url + "/system", timeout=1).raise_for_status()
        with socket.create_connection((LOOPBACK, orthanc.dicom_port), timeout=1):
            return True
    except (requests.RequestException, OSError):
        return False


@contextlib.contextmanager
def start_orthanc(
    folder: Path, aet: str = "ORTHANC", modalities: Mapping[str, Modality] | None = None
) -> Iterator[Orthanc]:
    """Run Orthanc with its config and storage in ``folder`` until the block ends."""
    pacs_or_skip()
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = orthanc_config(folder, http_port, dicom_port, aet, modalities)
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    orthanc = Orthanc(http_port, dicom_port, aet, folder, launch_orthanc(folder))
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(orthanc):
            if orthanc.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not start:\n{orthanc.log()[-3000:]}")
            time.sleep(0.05)
        yield orthanc
    finally:
        # Killed, not asked to stop: its storage is thrown away, and a clean stop takes seconds.
        # The process now, which a test may have restarted.
        orthanc.process.kill()
        orthanc.process.wait()
