"""Reading still images (the first frame of animated and multi-page files) within a pixel limit:
EXIF orientation applied, 16-bit PNG/TIFF and 10/12-bit HEIC kept at 16 bits."""

from __future__ import annotations

import contextlib
import numpy as np
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from surge.errors import ImageReadError
from surge.inference.image_io import heif
from surge.inference.image_io.formats import _DECODE_ERRORS, DEFAULT_MAX_PIXELS, _reason
from surge.inference.image_io.heif import _read_heif_high, _unidentified_reason
from surge.inference.image_io.metadata import ImageMeta, _exif_for_output, _icc_applies, jpeg_quality, _orientation
from surge.inference.image_io.pixels import PixelValueError, orient_array, pil_to_array


_PIXEL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Disable Pillow's global decompression-bomb limit while opening: read_image applies
    its own ``max_pixels`` (Pillow's would warn below, and refuse above, a fixed size)."""
    with _PIXEL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Pillow without AVIF warns before failing; _unidentified_reason says it in the error instead.
        warnings.filterwarnings("ignore", message="image file could not be identified because")
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, ImageMeta]:
    """Decode ``path`` into (array, metadata); see the module docstring for the layout."""
    path = Path(path)
    try:
        img = _open(path)
    except ImageReadError:
        from surge.inference.image_header import is_float_colour_tiff, read_float_colour_tiff

        if not is_float_colour_tiff(path):
            raise
        return read_float_colour_tiff(path, max_pixels)
    with img:
        return _read_still(path, img, max_pixels)


def _open(path: Path) -> Image.Image:
    _check_readable(path)
    heif.heif_available()  # registers pillow-heif's opener with Pillow, when installed
    try:
        with _own_pixel_limit():
            return Image.open(path)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: {_unidentified_reason(path)}") from None
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read image header ({_reason(exc)})") from None


def _read_still(path: Path, img: Image.Image, max_pixels: int | None) -> tuple[np.ndarray, ImageMeta]:
    """The (first) frame of an opened image, as :func:`read_image` returns it."""
    _check_pixels(path, img.size, max_pixels)
    _decode(path, img)
    orientation = _orientation(img)
    arr, mode = _pixels(path, img, orientation)
    exif = _exif_for_output(img)  # after _pixels: it edits the image's EXIF
    icc = img.info.get("icc_profile") if _icc_applies(img) else None
    frames = getattr(img, "n_frames", 1)
    return arr, ImageMeta(path=path, format=img.format, mode=mode, icc_profile=icc or None, exif=exif, frames=frames,
                          jpeg_quality=jpeg_quality(img))


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if not path.is_file():
        raise ImageReadError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels and width * height > max_pixels:
        raise ImageReadError(
            f"{path}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} (max_pixels)"
        )


def _decode(path: Path, img: Image.Image) -> None:
    # Pillow decodes lazily; loading here, with ImageFile.LOAD_TRUNCATED_IMAGES left at
    # False, is what turns a truncated or corrupt file into an error instead of grey pixels.
    try:
        img.load()
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: truncated or corrupt image data ({_reason(exc)})") from None


def _pixels(path: Path, img: Image.Image, orientation: int) -> tuple[np.ndarray, str]:
    high = _read_high_depth(path, img)
    if high is not None:
        mode = {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[high.shape[2]]
        return orient_array(high, orientation), mode
    try:
        arr, mode, _ = pil_to_array(ImageOps.exif_transpose(img))
    except PixelValueError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot convert pixels ({_reason(exc)})") from None
    return arr, mode


def _read_high_depth(path: Path, img: Image.Image) -> np.ndarray | None:
    """uint16 (H, W, C) pixels of a 16-bit multi-channel PNG/TIFF or a 10/12-bit colour HEIF, else None."""
    try:
        if img.format == "PNG" and _png_is_16bit_multichannel(path):
            return _read_png16(path)
        if img.format == "TIFF" and _tiff_is_16bit_multichannel(img):
            return _read_tiff16(path)
        if img.format == "HEIF" and int(img.info.get("bit_depth") or 8) > 8 and img.mode in ("RGB", "RGBA"):
            return _read_heif_high(path)
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: truncated or corrupt image data ({_reason(exc)})") from None
    return None


def _png_is_16bit_multichannel(path: Path) -> bool:
    with open(path, "rb") as f:
        header = f.read(26)
    # Signature (8) + IHDR length/type (8) + width, height (8) + bit depth, colour type.
    return len(header) == 26 and header[24] == 16 and header[25] in (2, 4, 6)


def _read_png16(path: Path) -> np.ndarray:
    import png  # pypng: the one well-kept reader of 16-bit colour PNG without OpenCV

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        arr = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except png.Error as exc:  # pypng's own hierarchy: map it onto the decode errors
        raise ValueError(str(exc)) from None
    return arr.reshape(height, width, info["planes"])


def _tiff_is_16bit_multichannel(img: Image.Image) -> bool:
    bits = img.tag_v2.get(258)  # BitsPerSample
    bits = bits if isinstance(bits, tuple) else (bits,)
    return len(bits) > 1 and max(int(b) for b in bits) == 16


def _read_tiff16(path: Path) -> np.ndarray:
    import tifffile  # installed with scikit-image

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        arr = page.asarray()
        if arr.ndim == 3 and page.planarconfig == 2:  # SEPARATE: (C, H, W)
            arr = np.moveaxis(arr, 0, -1)
    if arr.dtype != np.uint16 or arr.ndim != 3:
        raise ValueError(f"unsupported 16-bit TIFF layout {arr.dtype} {arr.shape}")
    return arr
