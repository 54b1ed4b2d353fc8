"""A scored film's Grad-CAM overlay as a DICOM Secondary Capture (highdicom), in its study.

``listen --cam`` sends it beside the SR, so that a viewer shows where the model looked. Like
the SR, its UIDs are derived from the film and the model: answered twice, stored once.
"""

from __future__ import annotations

from collections.abc import Mapping

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image

from cxr_fast.network.sr import MANUFACTURER, header_for_report, name_uid

SERIES_NUMBER = 9902  # after the SR series (sr.SERIES_NUMBER)
SERIES_DESCRIPTION = "cxr-fast Grad-CAM"
# Rows run to the patient's left, columns to the feet: how a frontal chest film is displayed;
# used when the film does not say (PatientOrientation is type 2C in DX and CR).
FRONTAL = ("L", "F")


def cam_uids(source: pydicom.Dataset, identity: Mapping[str, object]) -> tuple[str, str]:
    """(SOP Instance UID, Series Instance UID) of the overlay of ``source`` by the model."""
    model = f"{identity['model_sha256']}|{identity['threshold']}"
    instance = name_uid(f"cam|{source.SOPInstanceUID}|{model}")
    series = name_uid(f"cam-series|{source.StudyInstanceUID}|{model}")
    return instance, series


def cam_capture(
    source: pydicom.Dataset, overlay: Image.Image, identity: Mapping[str, object]
) -> pydicom.Dataset:
    """The Secondary Capture of ``overlay`` (the film with its heat map, RGB) in the study of
    ``source`` (its header is enough)."""
    instance, series = cam_uids(source, identity)
    orientation = source.get("PatientOrientation")
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header_for_report(source),
        pixel_array=np.asarray(overlay.convert("RGB"), dtype=np.uint8),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series,
        series_number=SERIES_NUMBER,
        sop_instance_uid=instance,
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=tuple(orientation)
        if orientation and len(orientation) == 2
        else FRONTAL,
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
    )
    capture.SeriesDescription = SERIES_DESCRIPTION
    return capture
