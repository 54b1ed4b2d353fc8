"""A scored film's answer as a DICOM Comprehensive SR (highdicom), in the film's own study.

The report holds the finding (pneumonia present or absent at the run's threshold), the
probability and the threshold as numeric items (unit "1"), the algorithm's identity (TID 4019:
name, version, and as parameters the architecture, model checksum and calibration), and a
reference to the source image. A film the input gate refused (status ``not_cxr``) gets a report
saying it was not assessed, and why: no finding, no probability.

Its SOP Instance UID (and its series') is derived from the source instance and the model, not
drawn at random: the same film answered twice by the same model is the same SR, which a PACS
stores once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

import highdicom as hd
import pydicom
from highdicom.sr import CodedConcept, RelationshipTypeValues

from cxr_fast.labels import CLASS_NAMES
from cxr_fast.scoring.parquet_out import STATUS_OK

# Codes from SNOMED CT and DICOM where the standard has one; cxr-fast's own (scheme 99CXRFAST,
# a private coding scheme as PS3.16 allows) for what it has not.
REPORT_TITLE = CodedConcept("18748-4", "LN", "Diagnostic imaging report")
PNEUMONIA = CodedConcept("233604007", "SCT", "Pneumonia")
PRESENT = CodedConcept("52101004", "SCT", "Present")
ABSENT = CodedConcept("2667000", "SCT", "Absent")
SOURCE = CodedConcept("121112", "DCM", "Source of Measurement")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
PROBABILITY = CodedConcept("PNEUMONIA_PROB", "99CXRFAST", "Probability of pneumonia")
THRESHOLD = CodedConcept("THRESHOLD", "99CXRFAST", "Decision threshold")
NOT_ASSESSED = CodedConcept("NOT_ASSESSED", "99CXRFAST", "Not assessed")
SERIES_NUMBER = 9901  # a high number, so viewers list the AI series after the films'
SERIES_DESCRIPTION = "cxr-fast pneumonia"
MANUFACTURER = "cxr-fast"
# The namespace of cxr-fast's name-based UIDs (a fixed random UUID: changing it changes every
# UID, so that a PACS would store every answer twice).
_NAMESPACE = uuid.UUID("5c0b7e1e-7a4e-4f0c-9a51-2f8c1d6b3e90")


def sr_uids(source: pydicom.Dataset, identity: Mapping[str, object]) -> tuple[str, str]:
    """(SR SOP Instance UID, its Series Instance UID): the first from the source instance and
    the model, the second from the study and the model (one AI series per study)."""
    # The checksum and threshold decide the answer; the version and calibration are in the
    # checksum's model or do not change it, so they are left out of the UID.
    model = f"{identity['model_sha256']}|{identity['threshold']}"
    instance = name_uid(f"sr|{source.SOPInstanceUID}|{model}")
    series = name_uid(f"series|{source.StudyInstanceUID}|{model}")
    return instance, series


def name_uid(name: str) -> str:
    """A UID under 2.25 from a name-based (SHA-1) UUID, as ISO/IEC 9834-8 allows: the same name
    always gives the same UID. (pydicom's generate_uid ignores its entropy under 2.25.)"""
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


def _algorithm(identity: Mapping[str, object]) -> hd.sr.AlgorithmIdentification:
    """TID 4019: the algorithm's name and version, its model as parameters."""
    calibration = identity.get("calibration")
    parameters = [
        f"architecture={identity.get('arch')}",
        f"model_sha256={identity['model_sha256']}",
        f"threshold={identity['threshold']}",
        "calibration=" + (json.dumps(calibration, sort_keys=True) if calibration else "none"),
    ]
    return hd.sr.AlgorithmIdentification(
        name=f"{identity.get('name', 'cxr-fast')} {identity.get('arch')}",
        version=str(identity.get("version")),
        parameters=parameters,
    )


def _source_image(source: pydicom.Dataset) -> hd.sr.ImageContentItem:
    return hd.sr.ImageContentItem(
        name=SOURCE,
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
        relationship_type=RelationshipTypeValues.INFERRED_FROM,
    )


def _findings(source: pydicom.Dataset, row: Mapping[str, object]) -> list:
    """The content of an assessed film: finding, probability, threshold, each from the image."""
    present = row["pred"] == CLASS_NAMES[1]
    finding = hd.sr.CodeContentItem(
        name=PNEUMONIA,
        value=PRESENT if present else ABSENT,
        relationship_type=RelationshipTypeValues.CONTAINS,
    )
    probability = hd.sr.NumContentItem(
        name=PROBABILITY,
        value=float(row["prob_pneumonia"]),
        unit=NO_UNITS,
        relationship_type=RelationshipTypeValues.CONTAINS,
    )
    for item in (finding, probability):
        item.ContentSequence = hd.sr.ContentSequence([_source_image(source)])
    threshold = hd.sr.NumContentItem(
        name=THRESHOLD,
        value=float(row["threshold"]),
        unit=NO_UNITS,
        relationship_type=RelationshipTypeValues.CONTAINS,
    )
    return [finding, probability, threshold]


def _not_assessed(source: pydicom.Dataset, row: Mapping[str, object]) -> list:
    """The content of a film not scored (the gate refused it): why, and which film."""
    reason = hd.sr.TextContentItem(
        name=NOT_ASSESSED,
        value=f"{row['status']}: {row.get('error') or 'no reason given'}"[:1024],
        relationship_type=RelationshipTypeValues.CONTAINS,
    )
    reason.ContentSequence = hd.sr.ContentSequence([_source_image(source)])
    return [reason]


def has_finding(row: Mapping[str, object]) -> bool:
    """Whether the row's SR carries a finding (a scored film), not a "not assessed" note."""
    return row["status"] == STATUS_OK and row.get("prob_pneumonia") is not None


# The study attributes an SR copies from its film (highdicom reads them); a film may leave these
# type 2 attributes out, the SR then has them empty, as the standard allows.
_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "StudyID", "AccessionNumber", "ReferringPhysicianName",
)  # fmt: skip


def header_for_report(source: pydicom.Dataset) -> pydicom.Dataset:
    """``source`` without its pixels, with the study attributes an SR needs present."""
    header = pydicom.Dataset()
    for element in source:
        if element.keyword != "PixelData":
            header.add(element)
    for keyword in _STUDY_KEYWORDS:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def structured_report(
    source: pydicom.Dataset, row: Mapping[str, object], identity: Mapping[str, object]
) -> pydicom.Dataset:
    """The Comprehensive SR answering ``source`` (its header is enough: no pixels needed) with
    ``row`` (a scoring Parquet row: ``prob_pneumonia``, ``pred``, ``threshold``, ``status``,
    ``error``) made by the model ``identity`` (:func:`cxr_fast.scoring.identity.algorithm`)."""
    content = _findings(source, row) if has_finding(row) else _not_assessed(source, row)
    root = hd.sr.ContainerContentItem(name=REPORT_TITLE, template_id=None)
    root.ContentSequence = hd.sr.ContentSequence([*_algorithm(identity), *content], is_root=False)
    instance, series = sr_uids(source, identity)
    report = hd.sr.ComprehensiveSR(
        evidence=[header_for_report(source)],
        content=root,
        series_instance_uid=series,
        series_number=SERIES_NUMBER,
        sop_instance_uid=instance,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SERIES_DESCRIPTION,
    )
    return report


def read_answer(report: pydicom.Dataset) -> dict:
    """What an SR written by :func:`structured_report` says, read back (a PACS's copy, say):
    ``finding`` (True, False, or None when not assessed), ``probability``, ``threshold`` and
    the ``source`` SOP Instance UID."""
    answer: dict = {"finding": None, "probability": None, "threshold": None, "source": None}
    for item in report.ContentSequence:
        code = item.ConceptNameCodeSequence[0].CodeValue
        if code == PNEUMONIA.value:
            answer["finding"] = item.ConceptCodeSequence[0].CodeValue == PRESENT.value
        elif code in (PROBABILITY.value, THRESHOLD.value):
            key = "probability" if code == PROBABILITY.value else "threshold"
            answer[key] = float(item.MeasuredValueSequence[0].FloatingPointValue)
        for child in item.get("ContentSequence", []):
            if child.ValueType == "IMAGE":
                answer["source"] = str(child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    return answer
