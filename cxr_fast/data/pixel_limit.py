"""The decompression-bomb guard every decoder shares: an image is refused from what its header
announces, before any pixel is decoded (the web app answers such uploads 413)."""

from __future__ import annotations

# The most bytes one pixel can take in any format read here (4 samples of 16 bits, or DICOM's
# double-float pixel data): what a header may declare for an image within the pixel limit.
MAX_BYTES_PER_PIXEL = 8


class ImageTooLargeError(ValueError):
    """An image whose header announces more pixels (or bytes) than the caller accepts."""


def check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    """Refuse a (width, height) above ``max_pixels`` (None: no limit)."""
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ImageTooLargeError(
            f"image is {size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} MP), above "
            f"the {max_pixels / 1e6:.0f} MP limit (a decompression-bomb guard)"
        )


def check_declared_bytes(what: str, declared: int, max_pixels: int | None) -> None:
    """Refuse a header field that declares ``declared`` bytes, more than any image within
    ``max_pixels`` needs (None: no limit); ``what`` names the field."""
    if max_pixels is None:
        return
    limit = max_pixels * MAX_BYTES_PER_PIXEL
    if declared > limit:
        raise ImageTooLargeError(
            f"{what} declares {declared / 1e6:,.0f} MB, above the {limit / 1e6:,.0f} MB an image "
            f"within the {max_pixels / 1e6:.0f} MP limit takes (a header bomb)"
        )
