"""A DICOMweb server's side of ``score --dicomweb``, through MGH's ``dicomweb-client``: find
instances (QIDO-RS), fetch each into a spool folder as a DICOM file (WADO-RS), store answers
back (STOW-RS). An instance that cannot be fetched is an :class:`Unfetched` entry (the caller
makes it an error row), never a crash; a server that cannot be reached is one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.errors import InvalidDicomError

from cxr_fast.errors import UserInputError

# QIDO-RS attribute tags (DICOM JSON model keys).
_TAGS = {
    "study": "0020000D",
    "series": "0020000E",
    "sop": "00080018",
    "modality": "00080060",
    "patient": "00100020",
}
# Instances fetched at once: WADO-RS round trips overlap, a server sees a few connections only.
FETCH_THREADS = 4
STORE_BATCH = 32  # SRs per STOW-RS request
TIMEOUT_S = 60.0
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


@dataclass(frozen=True)
class Instance:
    """One instance a QIDO-RS search found: its UIDs and what the rows keep of it."""

    study: str
    series: str
    sop: str
    modality: str | None = None
    patient: str | None = None

    def url(self, root: str) -> str:
        """Its WADO-RS URL under the server's DICOMweb ``root``: what its row's path says."""
        return f"{root.rstrip('/')}/studies/{self.study}/series/{self.series}/instances/{self.sop}"


@dataclass(frozen=True)
class Unfetched:
    """An instance WADO-RS did not deliver as a readable DICOM file, and why."""

    instance: Instance
    reason: str


def open_client(url: str) -> DICOMwebClient:
    """A client of the DICOMweb root ``url`` (QIDO, WADO and STOW under it)."""
    session = requests.Session()
    session.mount(url, requests.adapters.HTTPAdapter(pool_maxsize=FETCH_THREADS))
    client = DICOMwebClient(url, session=session, timeout=TIMEOUT_S)
    # Its default retries a refused connection for half a minute, each try logged with a
    # traceback: a server that is not there is one line at once, and an instance that fails
    # is an error row (the next run fetches it again).
    client.set_http_retry_params(retry=False)
    return client


def _value(found: dict, key: str) -> str | None:
    values = found.get(_TAGS[key], {}).get("Value") or [None]
    value = values[0]
    return value if value is None or isinstance(value, str) else str(value)


def reason(exc: Exception) -> str:
    """A request's failure in a few words: the OS's reason for a connection that failed (not
    urllib3's nested repr), the HTTP status for an error answer, else the first line."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.ConnectionError):
        found = _ERRNO.search(str(exc))
        return f"cannot connect: {found.group(1)}" if found else "cannot connect"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def _server_error(url: str, exc: Exception) -> UserInputError:
    return UserInputError(f"--dicomweb {url}: the server did not answer QIDO-RS ({reason(exc)})")


def find_instances(client: DICOMwebClient, studies: Sequence[str] = ()) -> list[Instance]:
    """Every instance the server holds (of ``studies`` when given), each once, by QIDO-RS."""
    found: list[dict] = []
    try:
        for study in studies or (None,):
            found += client.search_for_instances(study_instance_uid=study, get_remaining=True)
    except (requests.RequestException, ValueError) as exc:
        raise _server_error(client.base_url, exc) from None
    instances = {}
    for item in found:
        uids = [_value(item, key) for key in ("study", "series", "sop")]
        if all(uids):
            instances[uids[2]] = Instance(*uids, _value(item, "modality"), _value(item, "patient"))
    return list(instances.values())


def _fetch_one(client: DICOMwebClient, instance: Instance, path: Path) -> Unfetched | None:
    try:
        dataset = client.retrieve_instance(instance.study, instance.series, instance.sop)
        dataset.save_as(path, enforce_file_format=True)
    except (requests.RequestException, InvalidDicomError, ValueError) as exc:
        return Unfetched(instance, f"WADO-RS could not fetch it: {reason(exc)}")
    return None


def fetch_instances(
    client: DICOMwebClient, instances: Sequence[Instance], folder: Path
) -> tuple[dict[Path, Instance], list[Unfetched]]:
    """Each instance into ``folder`` as a DICOM file: (file -> instance, the ones not fetched)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [(folder / f"{index:07d}.dcm").resolve() for index in range(len(instances))]
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        outcomes = list(pool.map(partial(_fetch_one, client), instances, paths))
    fetched = {
        path: instance
        for path, instance, outcome in zip(paths, instances, outcomes, strict=True)
        if outcome is None
    }
    return fetched, [outcome for outcome in outcomes if outcome is not None]


def store_instances(client: DICOMwebClient, datasets: Iterable[pydicom.Dataset]) -> list[str]:
    """STOW-RS ``datasets`` in batches; the reasons of those the server refused (none: [])."""
    refused: list[str] = []
    batch: list[pydicom.Dataset] = []
    for dataset in [*datasets, None]:
        if dataset is not None:
            batch.append(dataset)
        if batch and (dataset is None or len(batch) == STORE_BATCH):
            refused += _store_batch(client, batch)
            batch = []
    return refused


def _store_batch(client: DICOMwebClient, batch: list[pydicom.Dataset]) -> list[str]:
    try:
        response = client.store_instances(batch)
    except requests.RequestException as exc:
        return [f"{ds.SOPInstanceUID}: STOW-RS failed ({reason(exc)})" for ds in batch]
    return [
        f"{item.ReferencedSOPInstanceUID}: refused (failure reason {item.get('FailureReason')})"
        for item in response.get("FailedSOPSequence", [])
    ]
