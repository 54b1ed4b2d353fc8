"""The SR of :func:`cxr_fast.network.sr.structured_report`, built per film from a template.

highdicom builds and validates the whole content tree of every report it makes; for one model
only a few values change from film to film. :class:`ReportTemplate` has highdicom build the
reports once (finding present, absent, not assessed) and then, per film, assembles a plain
pydicom dataset: the parts that are the same for every film (algorithm identification, concept
names, flags, highdicom's own equipment item) are taken from the template by reference, and the
film's parts (UIDs, patient and study attributes, references, probability, finding, dates) are
set the way highdicom sets them. ``tests/network/test_sr_template.py`` checks that both give
the same file, byte for byte.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Mapping

import highdicom as hd
from highdicom._standard_utils import (  # highdicom's own tables: what it copies, and when
    does_iod_have_pixel_data,
    get_iod_module_map,
    get_module_attribute_map,
    get_sop_class_iod_map,
)
from highdicom.valuerep import _check_specific_character_set
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import DigitalXRayImageStorageForPresentation
from pydicom.valuerep import DA, DS, DT, TM

from cxr_fast.labels import CLASS_NAMES
from cxr_fast.network.sr import (
    ABSENT,
    PRESENT,
    has_finding,
    header_for_report,
    sr_uids,
    structured_report,
)

# What a report holds the same for every film of one model (highdicom's values).
_CONSTANT = (
    "SOPClassUID", "Modality", "Manufacturer", "SeriesDescription", "SeriesNumber",
    "InstanceNumber", "ValueType", "ConceptNameCodeSequence", "ContinuityOfContent",
    "CompletionFlag", "VerificationFlag", "PreliminaryFlag", "PerformedProcedureCodeSequence",
    "ReferencedPerformedProcedureStepSequence",
)  # fmt: skip
# What highdicom's equipment item copies from an image that names its manufacturer.
_EQUIPMENT = (
    "ManufacturerModelName", "SoftwareVersions", "DeviceSerialNumber", "InstitutionName",
    "InstitutionalDepartmentName", "InstitutionAddress", "StationName",
)  # fmt: skip
_PROBE_ROW = {"prob_pneumonia": 0.5, "pred": CLASS_NAMES[1], "threshold": 0.5, "status": "ok"}


def _probe_source() -> Dataset:
    """A film header for the template's reports (none of its values reach a film's report)."""
    source = Dataset()
    source.SOPClassUID = DigitalXRayImageStorageForPresentation
    source.SOPInstanceUID, source.SeriesInstanceUID, source.StudyInstanceUID = "1.2.3", "1.2", "1"
    return header_for_report(source)


def _with(item: Dataset, **changes: object) -> Dataset:
    """A new dataset holding ``item``'s elements and, as new elements, ``changes``. The
    elements kept are shared, not copied: nothing may set their values afterwards."""
    result = Dataset()
    changed = {tag_for_keyword(keyword) for keyword in changes}
    for element in item:
        if element.tag not in changed:
            result.add(element)
    for keyword, value in changes.items():
        setattr(result, keyword, value)
    return result


@functools.cache
def _copied_tags(sop_class_uid: str) -> tuple[int, ...]:
    """The patient and study attributes highdicom copies from a film of this class (the root
    attributes of its IOD's Patient and Study modules)."""
    iod = get_sop_class_iod_map()[sop_class_uid]
    attributes = get_module_attribute_map()
    return tuple(
        tag_for_keyword(str(item["keyword"]))
        for module in get_iod_module_map()[iod]
        if module["ie"] in ("Patient", "Study")
        for item in attributes[module["key"]]
        if len(item["path"]) == 0
    )


@functools.cache
def _is_image(sop_class_uid: str) -> bool:
    return does_iod_have_pixel_data(sop_class_uid)


def _acquisition_equipment(source: Dataset) -> list[Dataset]:
    """highdicom's item for the film's acquisition equipment, when it names its manufacturer."""
    manufacturer = source.get("Manufacturer")
    if manufacturer is None or manufacturer == "" or not _is_image(source.SOPClassUID):
        return []
    when = source.get("AcquisitionDateTime")
    date, time = source.get("AcquisitionDate"), source.get("AcquisitionTime")
    if when is None and isinstance(date, dt.date) and isinstance(time, dt.time):
        when = dt.datetime.combine(date, time)
    try:
        return [
            hd.ContributingEquipment(
                manufacturer=manufacturer,
                purpose_of_reference=codes.DCM.AcquisitionEquipment,
                **{hd_name(keyword): source.get(keyword) for keyword in _EQUIPMENT},
                contribution_datetime=when,
                contribution_description="Acquisition equipment of the source image(s)",
            )
        ]
    except Exception:  # highdicom leaves out an item it cannot make, silently
        return []


def hd_name(keyword: str) -> str:
    """A DICOM keyword as highdicom's argument name (``StationName`` -> ``station_name``)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in keyword).lstrip("_")


class ReportTemplate:
    """``report(source, row)``: :func:`structured_report` for one model ``identity``, fast."""

    def __init__(self, identity: Mapping[str, object]):
        self.identity = dict(identity)
        probe = _probe_source()
        found = structured_report(probe, _PROBE_ROW, self.identity)
        refused = structured_report(probe, {**_PROBE_ROW, "status": "not_cxr"}, self.identity)
        self.meta, self.preamble = found.file_meta, found.preamble
        self.constant = [found[tag_for_keyword(keyword)] for keyword in _CONSTANT]
        self.highdicom = found.ContributingEquipmentSequence[-1]
        content = list(found.ContentSequence)
        self.algorithm, (self.finding, self.probability, self.threshold) = (
            content[:-3],
            content[-3:],
        )
        self.image = self.finding.ContentSequence[0]
        self.not_assessed = refused.ContentSequence[-1]

    def report(
        self, source: Dataset, row: Mapping[str, object], now: dt.datetime | None = None
    ) -> Dataset:
        """The report of ``source`` (a film's header, pixels or not) answered with ``row``,
        as highdicom would build it at ``now``."""
        now = now or dt.datetime.now()
        source = header_for_report(source)
        instance, series = sr_uids(source, self.identity)
        report = Dataset()
        report.preamble = self.preamble  # written as a file by those who do not enforce one
        # Copied, not shared: a writer sets the group length of the meta it writes.
        report.file_meta = FileMetaDataset()
        for element in self.meta:
            report.file_meta.add(copy.copy(element))
        report.file_meta.MediaStorageSOPInstanceUID = instance
        for element in self.constant:
            report.add(element)
        report.SOPInstanceUID, report.SeriesInstanceUID = instance, series
        report.StudyInstanceUID = source.StudyInstanceUID
        report.InstanceCreationDate, report.InstanceCreationTime = DA(now.date()), TM(now.time())
        report.ContentDate, report.ContentTime = DA(now.date()), TM(now.time())
        charset = source.get("SpecificCharacterSet")
        if charset is not None:
            report.SpecificCharacterSet = _check_specific_character_set(charset)
        for tag in _copied_tags(source.SOPClassUID):
            if tag in source:
                report.add(source[tag])
        report.ContributingEquipmentSequence = [
            *_acquisition_equipment(source),
            _with(self.highdicom, ContributionDateTime=DT(now)),
        ]
        report.CurrentRequestedProcedureEvidenceSequence = [_evidence(source)]
        report.ContentSequence = [*self.algorithm, *self._content(source, row)]
        return report

    def _content(self, source: Dataset, row: Mapping[str, object]) -> list[Dataset]:
        """The film's own content items (those of sr._findings or sr._not_assessed)."""
        reference = Dataset()
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
        image = [_with(self.image, ReferencedSOPSequence=[reference])]
        if not has_finding(row):
            text = f"{row['status']}: {row.get('error') or 'no reason given'}"[:1024]
            return [_with(self.not_assessed, TextValue=text, ContentSequence=image)]
        code = PRESENT if row["pred"] == CLASS_NAMES[1] else ABSENT
        return [
            _with(self.finding, ConceptCodeSequence=[_with(code)], ContentSequence=image),
            _with(self.probability, MeasuredValueSequence=[
                _measured(self.probability, float(row["prob_pneumonia"]))
            ], ContentSequence=image),
            _with(self.threshold, MeasuredValueSequence=[
                _measured(self.threshold, float(row["threshold"]))
            ]),
        ]  # fmt: skip


def _measured(item: Dataset, value: float) -> Dataset:
    """``item``'s measured value (its unit kept) holding ``value`` as highdicom writes it."""
    return _with(
        item.MeasuredValueSequence[0],
        NumericValue=DS(value, auto_format=True),
        FloatingPointValue=value,
    )


def _evidence(source: Dataset) -> Dataset:
    """The Current Requested Procedure Evidence item naming the film (highdicom's layout)."""
    instance = Dataset()
    instance.ReferencedSOPClassUID = source.SOPClassUID
    instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series = Dataset()
    series.ReferencedSOPSequence = [instance]
    series.SeriesInstanceUID = source.SeriesInstanceUID
    study = Dataset()
    study.ReferencedSeriesSequence = [series]
    study.StudyInstanceUID = source.StudyInstanceUID
    return study


_TEMPLATES: dict[str, ReportTemplate] = {}


def template_for(identity: Mapping[str, object]) -> ReportTemplate:
    """The report template of the model ``identity`` (made on its first call, then kept)."""
    key = repr(sorted(identity.items()))
    if key not in _TEMPLATES:
        _TEMPLATES[key] = ReportTemplate(identity)
    return _TEMPLATES[key]


def templated_report(
    source: Dataset, row: Mapping[str, object], identity: Mapping[str, object]
) -> Dataset:
    """:func:`cxr_fast.network.sr.structured_report`'s report, built from the model's template."""
    return template_for(identity).report(source, row)
