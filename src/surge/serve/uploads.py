"""Uploads are recognised by decoding their header, never by name, and checked against the
library's per-file budget (:mod:`surge.inference.limits`: input pixels, output pixels, memory)
from the size the header declares, before any pixel is decoded (a few-KB PNG can declare
100,000 x 100,000: a bomb)."""

from __future__ import annotations

from pathlib import Path

from surge.errors import ImageReadError
from surge.inference.image_header import ImageHeader
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


def recognise(path: Path, name: str) -> ImageHeader:
    """The upload's header (``.format`` is Pillow's name, e.g. "JPEG"), read once by the library's
    probe (Pillow's bomb limit handled there); 415 for anything that is not an image, or not one
    of ACCEPTED. ``name`` is the client's file name, for messages only."""
    heif_available()  # registers the HEIC opener, when pillow-heif is installed
    try:
        header = read_header(path)
    except ImageReadError as exc:
        raise UploadRejected(415, str(exc).replace(str(path), name)) from None
    if header.format not in ACCEPTED:
        raise UploadRejected(415, f"{name}: {header.format or 'this'} images are not accepted "
                                  "(JPEG, PNG, WebP, HEIC, AVIF, TIFF, BMP, GIF)")
    return header


def check_budget(header: ImageHeader, name: str, limits: Limits, outscale: float | None, ext: str) -> None:
    """The declared size against ``limits`` (413 when over), as the pipeline will check it: all
    frames count when the output keeps them (``ext`` png or webp)."""
    frames = header.frames if ext in ANIMATED_OUTPUTS else 1
    try:
        limits.check(name, header.width, header.height, frames=frames, outscale=outscale,
                     channels=header.channels, sample_bytes=header.sample_bytes)
    except LimitError as exc:
        raise UploadRejected(413, str(exc)) from None
