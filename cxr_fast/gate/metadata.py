"""The metadata check: what a DICOM header says the film is, before any pixel is looked at."""

from __future__ import annotations

from collections.abc import Collection

from cxr_fast.choices import PROJECTION_MODALITIES

# BodyPartExamined is free text in practice ("CHEST", "THORAX", "PORT CHEST", "TORAX"): a value
# holding one of these is a chest; any other named part is not.
_CHEST_WORDS = ("CHEST", "THORA", "TORAX", "LUNG", "PULM", "RIB")
# Storage classes of other modalities (by UID prefix): their pixels are slices, scans or
# plans, never a projection radiograph, whatever the Modality tag says.
_OTHER_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.6": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.3.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.20": "nuclear medicine",
    "1.2.840.10008.5.1.4.1.1.128": "PET",
    "1.2.840.10008.5.1.4.1.1.130": "PET",
    "1.2.840.10008.5.1.4.1.1.481": "radiotherapy",
    "1.2.840.10008.5.1.4.1.1.77": "visible light (photograph, endoscopy, microscopy)",
    "1.2.840.10008.5.1.4.1.1.1.2": "mammography",
    "1.2.840.10008.5.1.4.1.1.1.3": "intra-oral radiography",
    "1.2.840.10008.5.1.4.1.1.12": "X-ray angiography or fluoroscopy",
    "1.2.840.10008.5.1.4.1.1.13": "breast tomosynthesis",
}


def metadata_reason(
    info: dict | None, modalities: Collection[str] = PROJECTION_MODALITIES
) -> str | None:
    """Why the DICOM header says this is no chest radiograph, or None (also for non-DICOM
    files and headers that say nothing)."""
    if not info:
        return None
    modality = (info.get("modality") or "").strip().upper()
    if modality and modality not in {m.upper() for m in modalities}:
        return f"DICOM Modality {modality} (chest radiographs are {', '.join(modalities)})"
    sop_class = (info.get("sop_class_uid") or "").strip()
    for prefix, name in _OTHER_CLASSES.items():
        if sop_class == prefix or sop_class.startswith(prefix + "."):
            return f"DICOM SOP class {sop_class} is {name}, not a projection radiograph"
    part = (info.get("body_part_examined") or "").strip().upper()
    if part and not any(word in part for word in _CHEST_WORDS):
        return f"DICOM BodyPartExamined {part}, not the chest"
    return None
