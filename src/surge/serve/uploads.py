"""Uploads are recognised by decoding their header, never by name, and checked against the
library's per-file budget (:mod:`surge.inference.limits`: input pixels, output pixels, memory)
from the size the header declares, before any pixel is decoded (a few-KB PNG can declare
100,000 x 100,000: a bomb)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from surge.errors import ImageReadError
from surge.inference.image_header import ImageHeader, is_float_colour_tiff
from surge.inference.image_header import probe as read_header
from surge.inference.image_io import heif_available
from surge.inference.limits import LimitError, Limits

# Pillow format -> the extension its results get with format "same" (GIF is read, written as PNG).
ACCEPTED = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic", "AVIF": "avif", "TIFF": "tif",
            "BMP": "bmp", "GIF": "png"}
ANIMATED_OUTPUTS = ("png", "webp")  # extensions whose results keep every frame (the pipeline's rule)


class UploadRejected(Exception):
    """An upload refused before decoding; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def recognise(path: Path, name: str) -> str:
    """The upload's format (Pillow's name, e.g. "JPEG") from its header; 415 for anything that is
    not an image, or not one of ACCEPTED. ``name`` is the client's file name, for messages only."""
    from surge.inference.image_io.reading import _own_pixel_limit  # Pillow's global bomb limit, swapped under a lock

    heif_available()  # registers the HEIC opener, when pillow-heif is installed
    try:
        with _own_pixel_limit(), Image.open(path) as img:
            fmt = img.format
    except UnidentifiedImageError:
        if is_float_colour_tiff(path):  # Pillow cannot open these; the pipeline reads them with tifffile
            return "TIFF"
        raise UploadRejected(415, f"{name}: not a recognised image file") from None
    except Exception as exc:  # damaged header: Pillow raises many kinds
        raise UploadRejected(415, f"{name}: cannot read image header ({_first_line(exc)})") from None
    if fmt not in ACCEPTED:
        raise UploadRejected(415, f"{name}: {fmt} images are not accepted (JPEG, PNG, WebP, HEIC, AVIF, TIFF, BMP, GIF)")
    return fmt


def check_budget(path: Path, name: str, limits: Limits, outscale: float | None, ext: str) -> ImageHeader:
    """The declared size against ``limits`` (413 when over), as the pipeline will check it: all
    frames count when the output keeps them (``ext`` png or webp)."""
    try:
        header = read_header(path)
    except ImageReadError as exc:
        raise UploadRejected(415, str(exc).replace(str(path), name)) from None
    frames = header.frames if ext in ANIMATED_OUTPUTS else 1
    try:
        limits.check(name, header.width, header.height, frames=frames, outscale=outscale,
                     channels=header.channels, sample_bytes=header.sample_bytes)
    except LimitError as exc:
        raise UploadRejected(413, str(exc)) from None
    return header


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
