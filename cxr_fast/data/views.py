"""DICOM views by name: what ``--skip-views`` accepts."""

from __future__ import annotations


def parse_views(text: str | None) -> tuple[str, ...]:
    """``--skip-views LATERAL,LL`` -> ('LATERAL', 'LL'): DICOM ViewPosition is upper case."""
    return tuple(v.strip().upper() for v in (text or "").split(",") if v.strip())
