"""Prediction columns added for hospital archives (additive to the original schema): the
warnings a file's decoding raised, and for DICOM inputs the identifiers that join a row back to
the PACS (null for other formats). Names match :data:`cxr_fast.data.dicom.IDENTIFIER_KEYWORDS`.
"""

from __future__ import annotations

import pyarrow as pa

STATUS_SKIPPED = "skipped"  # a non-image DICOM object or a --skip-views view: not an error

DICOM_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "modality",
    "view_position",
    "body_part_examined",
)
INFO_FIELDS: list[pa.Field] = [
    pa.field("warnings", pa.string()),
    *(pa.field(name, pa.string()) for name in DICOM_COLUMNS),
]


def info_columns(info: dict | None) -> dict:
    """The extra columns of one row from what reading the file found (missing -> null)."""
    info = info or {}
    return {field.name: info.get(field.name) for field in INFO_FIELDS}


def count_status(table: pa.Table, status: str) -> int:
    """Rows with ``status`` in a table holding the ``status`` column."""
    import pyarrow.compute as pc

    return pc.sum(pc.equal(table["status"], status)).as_py() or 0


def count_skipped(table: pa.Table) -> int:
    """Rows with status skipped in a table holding the ``status`` column."""
    return count_status(table, STATUS_SKIPPED)
