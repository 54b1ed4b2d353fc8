"""Which libraries decode compressed DICOM pixel data, set up once per process.

pydicom finds GDCM (``python-gdcm``) by itself: JPEG Lossless, JPEG-LS, JPEG 2000 and RLE. Two
gaps are closed here:

- JPEG Extended with 12-bit samples (``1.2.840.10008.1.2.4.51``): pydicom's GDCM plugin refuses
  it, Pillow cannot, and the only pylibjpeg decoder for it (libjpeg) is GPL-3. ``imagecodecs``
  (BSD-3) decodes it with libjpeg-turbo 3, so it is added as a pydicom decoder plugin.
- JPEG Baseline: Pillow is put before GDCM, so the pixels are libjpeg-turbo's, as before GDCM
  was installed and as DALI's CPU decoder gives them.

This module is also the plugin pydicom imports (``is_available``, ``DECODER_DEPENDENCIES``,
``_decode_frame`` are its plugin interface).
"""

from __future__ import annotations

import contextlib

import numpy as np
from pydicom import uid
from pydicom.pixels.common import PhotometricInterpretation as PI

_PLUGIN = "cxr-fast-imagecodecs"
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("imagecodecs>=2024.1",)}
_registered = False


def is_available(transfer_syntax: str) -> bool:
    """pydicom plugin interface: can this plugin decode ``transfer_syntax`` here?"""
    if transfer_syntax not in DECODER_DEPENDENCIES:
        return False
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(imagecodecs.JPEG8.available)


def _decode_frame(src: bytes, runner) -> bytes:
    """pydicom plugin interface: one encoded frame -> its decoded bytes."""
    import imagecodecs

    frame = imagecodecs.jpeg8_decode(src)
    if frame.ndim == 3 and runner.samples_per_pixel == 3:
        # libjpeg-turbo converts YCbCr to RGB; pixel-interleaved, like every JPEG decoder.
        runner.set_option("photometric_interpretation", PI.RGB)
        runner.set_option("planar_configuration", 0)
    runner.set_option("bits_allocated", 8 * frame.dtype.itemsize)
    return np.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<")).tobytes()


def _quiet_gdcm() -> None:
    # GDCM's C++ traces go straight to the process's stderr, between progress-bar updates.
    try:
        import gdcm
    except ImportError:
        return
    gdcm.Trace.WarningOff()
    gdcm.Trace.ErrorOff()
    gdcm.Trace.DebugOff()


def register_decoders() -> None:
    """Add the imagecodecs plugin and prefer Pillow for JPEG Baseline (idempotent)."""
    global _registered
    if _registered:
        return
    from pydicom.pixels.decoders import JPEGBaseline8BitDecoder, JPEGExtended12BitDecoder

    with contextlib.suppress(ValueError):  # already added (another import path of this module)
        JPEGExtended12BitDecoder.add_plugin(_PLUGIN, (__name__, "_decode_frame"))
    baseline = JPEGBaseline8BitDecoder
    if baseline.is_available and "gdcm" in baseline.available_plugins:
        baseline.remove_plugin("gdcm")  # re-added last: Pillow goes first
        baseline.add_plugin("gdcm", ("pydicom.pixels.decoders.gdcm", "_decode_frame"))
    _quiet_gdcm()
    _registered = True
