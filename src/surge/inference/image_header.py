"""What an image file declares before it is decoded (:func:`probe`), and float colour TIFFs.

:func:`probe` gives the size, frame count and sample layout from the header alone: the
budget of :mod:`surge.inference.limits` is checked against it before any pixel is
allocated. Pillow opens float TIFFs with one channel only ("F"); colour ones (RGB, RGBA
float32) are read here with tifffile, with the same rule as grey ones: finite values in
[0, 1], never clipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surge.errors import ImageReadError
from surge.inference.image_io.formats import _DECODE_ERRORS, ANIMATED_INPUT_FORMATS, _reason
from surge.inference.image_io.metadata import ImageMeta
from surge.inference.image_io.pixels import _unit_float
from surge.inference.image_io.reading import _check_pixels, _open


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header declares, read without decoding the pixels."""

    width: int
    height: int
    frames: int  # frames/pages (the first is all a still output reads)
    channels: int
    sample_bytes: int  # bytes per sample of the array surge decodes it to (1, 2 or 4)
    format: str = ""  # Pillow's format name ("JPEG", "PNG", "HEIF", ...; "TIFF" for float TIFFs)


def probe(path: str | Path) -> ImageHeader:
    """The size, frame count and pixel layout ``path`` declares, without decoding it: what a
    budget (:mod:`surge.inference.limits`) is checked against before any pixel is allocated."""
    path = Path(path)
    try:
        img = _open(path)
    except ImageReadError:
        if not is_float_colour_tiff(path):
            raise
        shape, frames = float_tiff_shape(path)
        return ImageHeader(shape[1], shape[0], frames, shape[2], 4, "TIFF")
    with img:
        try:
            frames = img.n_frames if img.format in ANIMATED_INPUT_FORMATS else 1
        except _DECODE_ERRORS as exc:
            raise ImageReadError(f"{path}: truncated or corrupt frames ({_reason(exc)})") from None
        bands = len(img.getbands())
        # 16-bit colour PNG/TIFF open as "RGB" in Pillow; their raw mode says 16 (e.g. "RGB;16B").
        raw = " ".join(str(tile.args) for tile in (img.tile or [])[:1])
        wide = img.mode.startswith("I") or ";16" in raw or (img.format == "HEIF" and img.info.get("bit_depth", 8) > 8)
        return ImageHeader(img.size[0], img.size[1], int(frames), max(3, bands) if bands != 2 else 2,
                           4 if img.mode == "F" else 2 if wide else 1, img.format or "")


# Pillow opens float TIFFs with one channel only ("F"); colour ones are read with tifffile.
def is_float_colour_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            if f.read(4) not in (b"II*\0", b"MM\0*"):
                return False
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return page.dtype is not None and page.dtype.kind == "f" and len(page.shape) == 3
    except Exception:  # tifffile's own errors: not one we can read
        return False


def float_tiff_shape(path: Path) -> tuple[tuple[int, int, int], int]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        shape = page.shape if page.planarconfig != 2 else (*page.shape[1:], page.shape[0])
        return tuple(int(x) for x in shape), len(tif.pages)


def read_float_colour_tiff(path: Path, max_pixels: int | None) -> tuple[np.ndarray, ImageMeta]:
    """A float RGB(A) TIFF (which Pillow cannot open): finite values in [0, 1], like a float grey one."""
    import tifffile

    (height, width, channels), pages = float_tiff_shape(path)
    _check_pixels(path, (width, height), max_pixels)
    if channels not in (3, 4):
        raise ImageReadError(f"{path}: float TIFF with {channels} channels (surge reads 1, 3 or 4)")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            arr = page.asarray()
            if page.planarconfig == 2:
                arr = np.moveaxis(arr, 0, -1)
    except Exception as exc:  # tifffile's own errors
        raise ImageReadError(f"{path}: truncated or corrupt float TIFF ({_reason(exc)})") from None
    array = _unit_float(np.ascontiguousarray(arr, dtype=np.float32))
    return array, ImageMeta(path=path, format="TIFF", mode="RGBA" if channels == 4 else "RGB", frames=pages)
