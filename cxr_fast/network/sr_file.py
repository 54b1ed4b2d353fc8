"""The SR answering a film as a DICOM file's bytes, built from the model's template
(``sr_template``) in the caller's own process (spawned workers were measured slower:
docs/hospital.md); and any dataset (an SR, a capture) as a file's bytes."""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO

import pydicom

from cxr_fast.network.sr_template import templated_report


def report_file(
    source: pydicom.Dataset, row: Mapping[str, object], identity: Mapping[str, object]
) -> tuple[str, bytes] | str:
    """(SOP Instance UID, DICOM file bytes) of the SR answering ``source`` with ``row`` (built
    from the model's template: highdicom's report, faster), or why it cannot be made (a header
    highdicom refuses)."""
    try:
        report = templated_report(source, row, identity)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        return f"no SR: {type(exc).__name__}: {exc}"
    return str(report.SOPInstanceUID), file_bytes(report)


def file_bytes(dataset: pydicom.Dataset) -> bytes:
    """A dataset with its file meta (an SR, a capture) as a DICOM file's bytes."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
