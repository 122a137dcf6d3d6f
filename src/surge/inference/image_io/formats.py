"""What surge reads and writes: file extensions, output formats, limits, and the errors decoders raise."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from surge.errors import ImageWriteError
from surge.inference.image_io import heif
from surge.inference.image_io.heif import _NEEDS_AVIF, _NEEDS_HEIF


# What `surge upscale` picks up in folders. GIF is read (all frames with read_frames) but not written.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".avif", ".heic", ".heif")
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
                  ".bmp": "BMP", ".avif": "AVIF", ".heic": "HEIF", ".heif": "HEIF"}
DEFAULT_MAX_PIXELS = 100_000_000
JPEG_QUALITY = 95
_HIGH_DEPTH_FORMATS = ("PNG", "TIFF", "HEIF")  # HEIF: 16-bit arrays are written as 10-bit HEIC
ANIMATED_INPUT_FORMATS = ("GIF", "PNG", "WEBP", "AVIF")  # read_frames gives all their frames
# write_animation writes these (APNG, animated WebP). Not AVIF: Pillow cannot set its loop count.
ANIMATED_OUTPUT_FORMATS = ("PNG", "WEBP")
DEFAULT_FRAME_MS = 100  # a frame without a display time: what browsers show a GIF frame for
_ICC_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "AVIF", "HEIF")
_EXIF_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "AVIF", "HEIF")
# Exceptions Pillow (and pypng/tifffile) raise on damaged data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError)


def _reason(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__


def output_format(path: str | Path) -> str:
    """Pillow format name for an output path's extension."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"{path}: unsupported output extension (use one of {', '.join(OUTPUT_FORMATS)})")
    if fmt == "HEIF" and not heif.heif_available():
        raise ImageWriteError(f"{path}: writing HEIC/HEIF {_NEEDS_HEIF}")
    if fmt == "AVIF" and not heif.avif_available():
        raise ImageWriteError(f"{path}: writing AVIF {_NEEDS_AVIF}")
    return fmt
