"""Patients a run trained on, found again in data it is judged or calibrated on.

A run's config.json lists each side's patients (``data.patients.train`` / ``.val``). Scoring
those films again measures memory, not generalisation: ``evaluate`` and ``calibrate`` warn and
record the overlap in their metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

from cxr_fast.data.discover import Record
from cxr_fast.text import agree, plural


def leakage(config: dict, records: Sequence[Record]) -> dict | None:
    """The overlap of ``records``' patients with the run's training (and validation) patients,
    or None when the run lists no patients (a run from before fingerprints)."""
    saved = config.get("data")
    patients = saved.get("patients") if isinstance(saved, dict) else None
    if not isinstance(patients, dict):
        return None
    train, val = set(patients.get("train", [])), set(patients.get("val", []))
    here = {r.patient for r in records}
    in_train, in_val = sorted(here & train), sorted(here & val)
    return {
        "patients": len(here),
        "training_patients": len(in_train),
        "training_images": sum(r.patient in train for r in records),
        "validation_patients": len(in_val),
        "examples": in_train[:5],
    }


def leakage_warning(found: dict | None, where: str) -> str | None:
    """One line for the user when ``where`` holds training patients, else None."""
    if not found or not found["training_patients"]:
        return None
    n = found["training_patients"]
    return (
        f"{n:,} of {plural(found['patients'], 'patient')} under {where} "
        f"({plural(found['training_images'], 'image')}) {agree(n, 'was', 'were')} in the run's "
        f"training data (e.g. {', '.join(found['examples'][:3])}): these numbers are optimistic"
    )
