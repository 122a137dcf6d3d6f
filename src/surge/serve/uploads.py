"""Uploads are recognised by decoding their header, never by name, and their size in pixels is
checked before any pixel is decoded (a few-KB PNG can declare 100,000 x 100,000: a bomb)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from surge.inference.image_io import heif_available

# Pillow format -> the extension its results get with format "same" (GIF is read, written as PNG).
ACCEPTED = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic", "AVIF": "avif", "TIFF": "tif",
            "BMP": "bmp", "GIF": "png"}
ANIMATED = ("GIF", "PNG", "WEBP", "AVIF")


class UploadRejected(Exception):
    """An upload refused before decoding; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Probe:
    format: str  # Pillow's name, e.g. "JPEG"
    width: int
    height: int
    frames: int

    @property
    def ext(self) -> str:
        return ACCEPTED[self.format]


def probe(path: Path, name: str, max_pixels: int, outscale: float | None) -> Probe:
    """Read ``path``'s header only (Pillow decodes lazily) and refuse what the server won't decode:
    not an image (415), a format outside ACCEPTED (415), more pixels than ``max_pixels`` in or
    ``max_pixels * 16`` out (413). ``name`` is the client's file name, used in messages only."""
    from surge.inference.image_io import _own_pixel_limit  # Pillow's global bomb limit, swapped under a lock

    heif_available()  # registers the HEIC opener, when pillow-heif is installed
    try:
        with _own_pixel_limit(), Image.open(path) as img:
            fmt, (width, height) = img.format, img.size
            frames = _frames(img) if fmt in ANIMATED else 1
    except UnidentifiedImageError:
        raise UploadRejected(415, f"{name}: not a recognised image file") from None
    except Exception as exc:  # damaged header: Pillow raises many kinds
        raise UploadRejected(415, f"{name}: cannot read image header ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if fmt not in ACCEPTED:
        raise UploadRejected(415, f"{name}: {fmt} images are not accepted (JPEG, PNG, WebP, HEIC, AVIF, TIFF, BMP, GIF)")
    pixels = width * height * frames
    if pixels > max_pixels:
        what = f"{frames} frames of {width}x{height}" if frames > 1 else f"{width}x{height}"
        raise UploadRejected(413, f"{name}: {what} = {pixels} pixels exceeds this server's limit of {max_pixels}")
    scale = 4 if outscale is None else outscale
    if pixels * scale * scale > max_pixels * 16:
        raise UploadRejected(413, f"{name}: a x{scale:g} result of {width}x{height} would exceed this server's output limit of {max_pixels * 16} pixels")
    return Probe(fmt, width, height, frames)


def _frames(img: Image.Image) -> int:
    # Pillow counts GIF frames by walking the file: damage there raises, and is reported as a bad header.
    return int(getattr(img, "n_frames", 1))
