"""Reading and writing image files for upscaling, without losing what the user had.

Reading gives a numpy array in the file's own precision and layout (uint8 or uint16;
HxW grey, HxWx2 grey+alpha, HxWx3 RGB, HxWx4 RGBA) plus :class:`ImageMeta` (ICC
profile, EXIF). EXIF orientation is applied to the pixels, and the orientation tag is
reset to 1 so viewers don't rotate the output a second time. Only descriptive EXIF is
kept: a TIFF's IFD0 is its EXIF to Pillow, and carrying its layout tags (width, strips,
bits per sample...) into an output would describe the input's pixels, not the output's.

Accepted pixel values: uint8 and uint16 as stored; float ("F", 32-bit grey TIFF) must be
finite and within [0, 1], the library's float convention; 32-bit integer grey ("I") is
read as 16-bit when every value is within 0..65535 (Pillow hands out some 16-bit files
that way) and refused otherwise, since no scale for it would be a guess. Values outside
these ranges are an error naming the file, never clipped. :func:`read_image` gives the first
frame of animated and multi-page files (:attr:`ImageMeta.frames` says how many there were);
:func:`read_frames` gives every frame of an animated GIF, PNG (APNG) or WebP as a full canvas,
with its display times, and :func:`write_animation` writes such frames as an animated PNG or WebP.

Pillow reads 16-bit colour PNG and TIFF as 8-bit, so those pixels come from pypng and
tifffile instead; Pillow still parses their metadata.

Phone formats: AVIF is read and written by Pillow (11.3+ wheels carry libavif; 8 bits per
channel, read and written; an animated AVIF is read frame by frame). HEIC/HEIF, the iPhone's
camera format, needs the optional ``pillow-heif`` package (``pip install 'surge[heif]'``; kept
out of the core install because its wheels bundle the GPL x265 encoder); 10- and 12-bit HEIC is
read as 16-bit, and 16-bit pixels are written as 10-bit HEIC (8-bit ones as 8-bit). Both
formats' rotation (``irot``/``imir``) is applied like EXIF orientation. A file of either kind
that the installed libraries cannot open is an error that names the package it needs.

Every failure is a :class:`~surge.errors.ImageReadError` or
:class:`~surge.errors.ImageWriteError` whose one-line message starts with the path.
Writes go to a temporary file in the destination folder and are published under the
final name only once complete (:func:`surge.atomic.publish`), so a crash never leaves a
half-written image; with ``overwrite=False`` a file that appeared there meanwhile is
never replaced.
"""

from __future__ import annotations

import contextlib
import functools
import io
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError, features

from surge.atomic import publish, temp_name
from surge.errors import ImageReadError, ImageValueError, ImageWriteError, OutputExistsError

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
# ISO-BMFF brands (the ftyp box) of files that only an optional library decodes.
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_NEEDS_HEIF = "needs the optional pillow-heif package (pip install 'surge[heif]')"
_NEEDS_AVIF = "needs Pillow built with AVIF (the wheels of Pillow >= 11.3 are)"
_ORIENTATION = ExifTags.Base.Orientation
_T = ExifTags.Base
# TIFF tags that describe how the pixels of *this* file are stored. They are IFD0 tags, so
# a TIFF's getexif() returns them (and a JPEG's EXIF may hold some); copied into a TIFF
# output they would override the writer's own (a 4x image saved as the input's size).
_LAYOUT_TAGS = frozenset({
    _T.NewSubfileType, _T.SubfileType, _T.ImageWidth, _T.ImageLength, _T.BitsPerSample,
    _T.Compression, _T.PhotometricInterpretation, _T.Thresholding, _T.CellWidth, _T.CellLength,
    _T.FillOrder, _T.StripOffsets, _T.SamplesPerPixel, _T.RowsPerStrip, _T.StripByteCounts,
    _T.MinSampleValue, _T.MaxSampleValue, _T.PlanarConfiguration, _T.FreeOffsets,
    _T.FreeByteCounts, _T.GrayResponseUnit, _T.GrayResponseCurve, _T.T4Options, _T.T6Options,
    _T.TransferFunction, _T.Predictor, _T.ColorMap, _T.HalftoneHints, _T.TileWidth,
    _T.TileLength, _T.TileOffsets, _T.TileByteCounts, _T.SubIFDs, _T.InkSet, _T.InkNames,
    _T.NumberOfInks, _T.DotRange, _T.ExtraSamples, _T.SampleFormat, _T.SMinSampleValue,
    _T.SMaxSampleValue, _T.JPEGTables, _T.JPEGProc, _T.JpegIFOffset, _T.JpegIFByteCount,
    _T.JpegRestartInterval, _T.JpegLosslessPredictors, _T.JpegPointTransforms,
    _T.JpegQTables, _T.JpegDCTables, _T.JpegACTables,
    _T.YCbCrCoefficients, _T.YCbCrSubSampling, _T.YCbCrPositioning, _T.ReferenceBlackWhite,
    _T.InterColorProfile,  # the ICC profile travels separately and only when it still applies
})
# Modes whose pixel values keep their colour space when turned into L/LA/RGB/RGBA, so an
# embedded ICC profile still describes the output. CMYK, LAB, ... are converted.
_ICC_PRESERVING_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "I", "F"}
# Exceptions Pillow (and pypng/tifffile) raise on damaged data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError)


@dataclass
class ImageMeta:
    """What a written image should carry over from the file it was read from."""

    path: Path | None = None
    format: str | None = None  # Pillow's format name of the source, e.g. "PNG"
    mode: str = "RGB"  # source pixel layout: a Pillow mode, or "RGB;16" etc. for 16-bit colour
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already applied and reset to 1; no layout tags
    frames: int = 1  # frames/pages in the source
    durations: tuple[int, ...] | None = None  # ms per frame, set by read_frames for an animation
    loop: int | None = None  # the source's loop count (0 = forever); None: it had none (plays once)
    jpeg_quality: int | None = None  # a JPEG source's quality on the IJG scale, estimated (jpeg_quality())
    software: str | None = None  # written as the output's Software tag (surge upscale: "surge <version> (<model>)")


# --- PIL image <-> array -------------------------------------------------------------


class PixelValueError(ImageValueError):
    """Pixel values outside what surge accepts (see the module docstring): the same error
    ``surge.upscale`` raises for such a numpy array, whether given an array or a PIL image."""


def pil_to_array(img: Image.Image) -> tuple[np.ndarray, str, bool]:
    """An array in the image's own precision, the mode to rebuild it, and whether an ICC
    profile of the image still applies to the array.

    Raises :class:`PixelValueError` for float pixels that are not finite or not in [0, 1]
    and for 32-bit integer pixels outside 0..65535.
    """
    mode = img.mode
    keeps_icc = mode in _ICC_PRESERVING_MODES or mode.startswith("I;16")
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(img), mode, keeps_icc
    if mode.startswith("I;16"):
        arr = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        return arr, "I;16", keeps_icc
    if mode == "I":
        return _int32_as_uint16(np.asarray(img)), "I", keeps_icc
    if mode == "F":
        return _unit_float(np.asarray(img, dtype=np.float32)), "F", keeps_icc
    if mode == "CMYK":
        rgb = _cmyk_to_rgb(img)
        return np.asarray(rgb), "RGB", False
    target = _conversion_target(img)
    try:
        converted = img.convert(target)
    except ValueError as exc:
        raise ValueError(f"cannot convert image mode {mode} to {target}: {exc}") from None
    return np.asarray(converted), target, keeps_icc


def _int32_as_uint16(arr: np.ndarray) -> np.ndarray:
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise PixelValueError(
            f"32-bit integer pixels span {lo}..{hi}, outside 0..65535; surge reads 8/16-bit integer "
            "or float [0, 1] images (convert the file first)"
        )
    return arr.astype(np.uint16)


def _unit_float(arr: np.ndarray) -> np.ndarray:
    # One NaN spreads through every conv it reaches and blackens most of the output.
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise PixelValueError(f"{bad} float pixel value(s) are NaN or infinite; surge needs finite values in [0, 1]")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        raise PixelValueError(f"float pixels span {lo:.6g}..{hi:.6g}, outside [0, 1]; rescale the image to [0, 1] first")
    return arr


def _conversion_target(img: Image.Image) -> str:
    if img.mode == "1":
        return "L"
    if img.mode in ("La",):
        return "LA"
    if img.mode in ("P", "PA"):
        return "RGBA" if img.has_transparency_data else "RGB"
    return "RGBA" if img.mode.endswith("A") or img.mode == "RGBa" else "RGB"


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """CMYK -> RGB through the embedded profile when there is one (print files often
    have one), else Pillow's naive formula."""
    profile = img.info.get("icc_profile")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return img.convert("RGB")


def array_to_pil(arr: np.ndarray, mode: str | None = None) -> Image.Image:
    """The PIL image for an array from :func:`pil_to_array` (``mode`` picks I vs I;16)."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint16 and arr.ndim == 3:
        raise ValueError("Pillow has no 16-bit colour mode; write 16-bit colour with write_image")
    if mode == "I":
        return Image.fromarray(arr.astype(np.int32))
    if arr.dtype.kind == "f":
        return Image.fromarray(arr.astype(np.float32))
    return Image.fromarray(np.ascontiguousarray(arr))


# --- reading -------------------------------------------------------------------------

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
    heif_available()  # registers pillow-heif's opener with Pillow, when installed
    try:
        with _own_pixel_limit():
            return Image.open(path)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: {_unidentified_reason(path)}") from None
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read image header ({_reason(exc)})") from None


@functools.cache
def heif_available() -> bool:
    """Whether HEIC/HEIF files can be read and written: pillow-heif imports (its opener and
    saver are then registered with Pillow, once per process)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def avif_available() -> bool:
    """Whether this Pillow reads and writes AVIF (wheels of Pillow >= 11.3 do)."""
    return bool(features.check("avif"))


def _unidentified_reason(path: Path) -> str:
    """Why Pillow recognised no format: a missing optional decoder, named, or unknown data."""
    kind = _bmff_kind(path)
    if kind == "AVIF":
        return f"AVIF image {_NEEDS_AVIF}" if not avif_available() else "truncated or corrupt AVIF image"
    if kind == "HEIF":
        return f"HEIC/HEIF image {_NEEDS_HEIF}" if not heif_available() else "truncated or corrupt HEIC/HEIF image"
    return "not a recognised image file"


def _bmff_kind(path: Path) -> str | None:
    """"AVIF" or "HEIF" from an ISO-BMFF file's ftyp box (major and compatible brands), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    end = min(int.from_bytes(head[:4], "big"), len(head))
    # Major brand at 8, minor version at 12, compatible brands from 16. AVIF files list mif1 too.
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, end - 3, 4)}
    if brands.intersection(_AVIF_BRANDS):
        return "AVIF"
    return "HEIF" if brands.intersection(_HEIF_BRANDS) else None


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


def read_frames(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[list[np.ndarray], ImageMeta]:
    """Every frame of an animated GIF, PNG or WebP, each the full canvas as shown (Pillow
    applies the frames' disposal and blending), as uint8 RGB, or RGBA where any frame has
    transparency; ``meta.durations`` and ``meta.loop`` hold the timing. Any other file gives
    ``[read_image(path)[0]]``.

    ``max_pixels`` bounds the pixels of all frames together: they are all held in memory, and
    upscaled x16 each.
    """
    path = Path(path)
    from surge.inference.image_header import is_float_colour_tiff, read_float_colour_tiff

    if is_float_colour_tiff(path):  # Pillow cannot open it; a TIFF output holds one page anyway
        array, meta = read_float_colour_tiff(path, max_pixels)
        return [array], meta
    with _open(path) as img:
        try:
            # Pillow walks the file to count GIF frames: damage there surfaces here.
            count = img.n_frames if img.format in ANIMATED_INPUT_FORMATS else 1
        except _DECODE_ERRORS as exc:
            raise ImageReadError(f"{path}: truncated or corrupt frames ({_reason(exc)})") from None
        if count < 2:
            array, meta = _read_still(path, img, max_pixels)
            return [array], meta
        width, height = img.size
        if max_pixels and count * width * height > max_pixels:
            raise ImageReadError(
                f"{path}: {count} frames of {width}x{height} = {count * width * height} pixels exceeds the limit of "
                f"{max_pixels} (max_pixels)"
            )
        loop = img.info.get("loop")
        if loop is None and img.format == "AVIF":
            loop = 0  # Pillow does not expose AVIF's repetition count; libavif writes "forever" by default
        orientation = _orientation(img)
        exif = _exif_for_output(img)
        icc = img.info.get("icc_profile") or None
        frames, durations = [], []
        for index in range(count):
            try:
                img.seek(index)
                img.load()
                rgba = np.asarray(img.convert("RGBA"))
            except _DECODE_ERRORS as exc:
                raise ImageReadError(f"{path}: frame {index + 1} of {count}: truncated or corrupt ({_reason(exc)})") from None
            frames.append(orient_array(rgba, orientation))
            duration = img.info.get("duration")
            durations.append(int(round(duration)) if duration is not None else DEFAULT_FRAME_MS)
        fmt = img.format
    if all(bool((f[..., 3] == 255).all()) for f in frames):
        frames = [np.ascontiguousarray(f[..., :3]) for f in frames]
    mode = "RGBA" if frames[0].shape[2] == 4 else "RGB"
    meta = ImageMeta(path=path, format=fmt, mode=mode, icc_profile=icc, exif=exif, frames=count,
                     durations=tuple(durations), loop=None if loop is None else int(loop))
    return frames, meta


# The IJG (libjpeg) luminance quantisation table at quality 50, in natural order (JPEG standard, Annex K).
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])


def _ijg_luma_table(quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)


def jpeg_quality(img: Image.Image) -> int | None:
    """A JPEG's quality on the IJG scale (1-100) that libjpeg, Pillow, browsers and most phones
    use: the quality whose luminance table is nearest the file's (exact for files those
    encoders wrote; an approximation for other tables). None for anything but a JPEG."""
    tables = getattr(img, "quantization", None) if img.format == "JPEG" else None
    if not tables or len(tables.get(0, ())) != 64:
        return None
    luma = np.asarray(tables[0], dtype=np.int64)
    errors = [int(np.abs(_ijg_luma_table(q) - luma).sum()) for q in range(1, 101)]
    return 1 + int(np.argmin(errors))


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


def _reason(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION, 1))
    except (*_DECODE_ERRORS, TypeError):
        return 1  # damaged EXIF: keep the pixels as stored


def _exif_for_output(img: Image.Image) -> bytes | None:
    """The image's EXIF without layout tags, orientation reset to 1 (the pixels are
    already upright)."""
    try:
        exif = img.getexif()
        if _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        return _without_layout_tags(exif)
    except (*_DECODE_ERRORS, TypeError):
        return None  # damaged EXIF: drop the metadata rather than the image


def _without_layout_tags(exif: Image.Exif) -> bytes | None:
    for tag in _LAYOUT_TAGS.intersection(exif):
        del exif[tag]
    return exif.tobytes() if len(exif) else None


def _load_exif(exif: bytes | None) -> Image.Exif | None:
    loaded = Image.Exif()
    try:
        if exif:
            loaded.load(exif)
    except (*_DECODE_ERRORS, TypeError):
        return None
    return loaded


def _output_exif(meta: ImageMeta | None) -> bytes | None:
    """The EXIF an output carries: the source's without layout tags, with ``meta.software`` as
    its Software tag (like an editor's, replacing the camera firmware's)."""
    if meta is None or not (meta.exif or meta.software):
        return None
    exif = _load_exif(meta.exif)
    if exif is None:  # damaged: drop the source's EXIF, keep the Software tag
        exif = Image.Exif()
    if meta.software:
        exif[_T.Software] = meta.software
    return _without_layout_tags(exif)


# IFD0 text tags a 16-bit TIFF (written by tifffile, which has no EXIF IFD) carries over.
_TIFF_TEXT_TAGS = (_T.Make, _T.Model, _T.DateTime, _T.Artist, _T.Copyright, _T.Software)


def _icc_applies(img: Image.Image) -> bool:
    return img.mode in _ICC_PRESERVING_MODES or img.mode.startswith("I;16")


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


# PIL's Transpose meaning of each EXIF orientation, as numpy operations on (H, W, ...).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def orient_array(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an array, as ``ImageOps.exif_transpose`` does to images."""
    op = _ORIENT.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


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


def _read_heif_high(path: Path) -> np.ndarray:
    """A 10/12-bit HEIF's colour pixels at full 16-bit scale. Pillow's HEIF plugin hands out
    8 bits; pillow-heif's own reader keeps the depth (applying rotation as the plugin does)."""
    import pillow_heif

    heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)
    depth = int(heif.info.get("bit_depth") or 16)
    arr = np.asarray(heif)
    if arr.dtype != np.uint16 or arr.ndim != 3:
        raise ValueError(f"unsupported HEIF layout {heif.mode} {arr.shape}")
    # pillow-heif puts the samples in the high bits (1023 -> 65472); rescale so white is 65535.
    top = (1 << depth) - 1
    samples = (arr >> (16 - depth)).astype(np.uint32)
    return ((samples * 65535 + top // 2) // top).astype(np.uint16)


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


# --- writing -------------------------------------------------------------------------


def output_format(path: str | Path) -> str:
    """Pillow format name for an output path's extension."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"{path}: unsupported output extension (use one of {', '.join(OUTPUT_FORMATS)})")
    if fmt == "HEIF" and not heif_available():
        raise ImageWriteError(f"{path}: writing HEIC/HEIF {_NEEDS_HEIF}")
    if fmt == "AVIF" and not avif_available():
        raise ImageWriteError(f"{path}: writing AVIF {_NEEDS_AVIF}")
    return fmt


def ensure_output_dir(folder: str | Path) -> Path:
    """Create ``folder`` (and parents); ImageWriteError naming it when that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(f"{folder}: cannot create output folder ({exc.strerror or exc})") from None
    return folder


def check_writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` and prove a file can be created in it (permissions, read-only
    mounts), so a batch fails once up front rather than once per image."""
    folder = ensure_output_dir(folder)
    tmp, f = _create_temp(folder, "write-test")
    f.close()
    tmp.unlink(missing_ok=True)
    return folder


def _create_temp(folder: Path, name: str) -> tuple[Path, BinaryIO]:
    # A hidden, unique name in the destination folder, so publishing (rename or link) is atomic
    # (same file system); open(..., "x") gets the user's umask, unlike tempfile's 0600.
    tmp = folder / temp_name(name)  # with our pid, so a later run can sweep it if we are killed
    try:
        return tmp, open(tmp, "xb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise ImageWriteError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _atomic_output(path: Path, overwrite: bool = True) -> Iterator[BinaryIO]:
    """A new file next to ``path`` that takes its name only once fully written."""
    tmp, f = _create_temp(ensure_output_dir(path.parent), path.name)
    try:
        with f:
            yield f
        try:
            publish(tmp, path, replace=overwrite)
        except FileExistsError:
            raise OutputExistsError(f"{path}: exists now (created while this image was computed); not replaced") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_image(
    array: np.ndarray,
    path: str | Path,
    meta: ImageMeta | None = None,
    quality: int = JPEG_QUALITY,
    overwrite: bool = True,
) -> Path:
    """Write an array (layout as :func:`read_image` returns) to ``path``, format by extension.

    Keeps 16-bit precision in PNG and TIFF, 10 bits of it in HEIC (other formats get 8 bits),
    the ICC profile and EXIF where the format stores them (with ``meta.software`` as the Software
    tag); alpha is flattened onto white for JPEG. ``quality``
    (1-100) applies to JPEG, WebP, AVIF and HEIC. ``overwrite=False`` raises
    :class:`~surge.errors.OutputExistsError` rather than replace a file at ``path``, including
    one that appeared while this image was being encoded.
    """
    path = Path(path)
    fmt = output_format(path)
    if not 1 <= quality <= 100:
        raise ImageWriteError(f"{path}: quality must be 1-100, got {quality}")
    array = _fit_to_format(array, fmt)
    icc = _matching_icc(meta, array)
    exif = _output_exif(meta) if fmt in _EXIF_FORMATS else None
    software = meta.software if meta is not None else None
    try:
        with _atomic_output(path, overwrite) as f:
            if array.dtype == np.uint16 and array.ndim == 3:
                _write_high_depth(f, array, fmt, icc, exif, software, quality)
            else:
                _write_pil(f, array, fmt, icc, exif, software, quality, meta.mode if meta else None)
    except ImageWriteError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ImageWriteError(f"{path}: cannot write {fmt} ({_reason(exc)})") from None
    return path


def write_animation(
    frames: list[np.ndarray],
    path: str | Path,
    meta: ImageMeta,
    quality: int = JPEG_QUALITY,
    overwrite: bool = True,
) -> Path:
    """Write frames (uint8, one layout, as :func:`read_frames` gives) as an animated PNG or WebP,
    with ``meta.durations`` (ms per frame) and ``meta.loop`` (none: plays once), the ICC
    profile and EXIF. Atomic like :func:`write_image`. ``quality`` applies to WebP (lossy, as for
    still WebP); PNG is lossless.
    """
    path = Path(path)
    fmt = output_format(path)
    if fmt not in ANIMATED_OUTPUT_FORMATS:
        raise ImageWriteError(f"{path}: {fmt} cannot hold an animation (use .png or .webp)")
    if not 1 <= quality <= 100:
        raise ImageWriteError(f"{path}: quality must be 1-100, got {quality}")
    if not frames or meta.durations is None or len(meta.durations) != len(frames):
        raise ValueError(f"{path}: need one duration per frame ({len(frames)} frames)")
    arrays = [_fit_to_format(quantise(f, np.uint8) if f.dtype.kind == "f" else f, fmt) for f in frames]
    if any(a.dtype != np.uint8 for a in arrays) or len({a.shape for a in arrays}) != 1:
        raise ValueError(f"{path}: animation frames must be uint8 and all of one shape")
    images = [array_to_pil(a) for a in arrays]
    # Plays once when the source had no loop count (a GIF without a NETSCAPE block); both
    # writers' own default would be forever.
    options: dict = {"save_all": True, "append_images": images[1:], "duration": list(meta.durations),
                     "loop": 1 if meta.loop is None else meta.loop}
    icc = _matching_icc(meta, arrays[0])
    if icc:
        options["icc_profile"] = icc
    exif = _output_exif(meta)
    if exif:
        options["exif"] = exif
    if fmt == "WEBP":
        options["quality"] = quality
    else:
        options.update(_png_text(meta.software))
    try:
        with _atomic_output(path, overwrite) as f:
            images[0].save(f, format=fmt, **options)
    except ImageWriteError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ImageWriteError(f"{path}: cannot write animated {fmt} ({_reason(exc)})") from None
    return path


def _channels(arr: np.ndarray) -> int:
    return 1 if arr.ndim == 2 else arr.shape[2]


def _fit_to_format(arr: np.ndarray, fmt: str) -> np.ndarray:
    """Adapt dtype and channels to what ``fmt`` can store."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype.kind == "f" and not (fmt == "TIFF" and arr.ndim == 2):
        arr = quantise(arr, np.uint16 if fmt in _HIGH_DEPTH_FORMATS else np.uint8)
    if arr.dtype == np.uint16 and fmt not in _HIGH_DEPTH_FORMATS:
        arr = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    channels = _channels(arr)
    if fmt in ("JPEG", "BMP") and channels in (2, 4):
        arr = _flatten_alpha(arr)  # JPEG has no alpha; BMP's 32-bit alpha is widely ignored
    elif fmt == "WEBP" and channels in (1, 2):
        arr = _grey_to_rgb(arr)  # WebP has no grey modes
    elif (fmt in ("AVIF", "HEIF") and channels == 2) or (fmt == "HEIF" and channels == 1 and arr.dtype == np.uint16):
        # Both encoders store grey + alpha as colour + alpha (and 10-bit HEIC is written as colour):
        # say so, and match an RGB profile.
        arr = _grey_to_rgb(arr)
    elif fmt == "TIFF" and channels == 2 and arr.dtype == np.uint16:
        arr = _grey_to_rgb(arr)  # 16-bit grey+alpha TIFF is legal but few readers (Pillow) open it
    return arr


def _grey_to_rgb(arr: np.ndarray) -> np.ndarray:
    grey = arr if arr.ndim == 2 else arr[..., 0]
    alpha = [arr[..., 1]] if arr.ndim == 3 else []
    return np.stack([grey, grey, grey, *alpha], axis=-1)


def quantise(x: np.ndarray, dtype) -> np.ndarray:
    """Float in [0, 1] -> integer dtype, clamped and rounded to nearest."""
    top = np.iinfo(dtype).max
    return np.rint(np.clip(x, 0.0, 1.0) * top).astype(dtype)


def _flatten_alpha(arr: np.ndarray) -> np.ndarray:
    """Composite onto white: JPEG has no alpha, and dropping it would expose whatever
    colour happens to sit under fully transparent pixels."""
    top = float(np.iinfo(arr.dtype).max)
    colour, alpha = arr[..., :-1].astype(np.float32) / top, arr[..., -1:].astype(np.float32) / top
    flat = colour * alpha + (1.0 - alpha)
    flat = flat[..., 0] if flat.shape[2] == 1 else flat
    return quantise(flat, arr.dtype)


def _matching_icc(meta: ImageMeta | None, arr: np.ndarray) -> bytes | None:
    """The source ICC profile if its colour space (header bytes 16-19) fits the output."""
    if meta is None or not meta.icc_profile or len(meta.icc_profile) < 20:
        return None
    space = meta.icc_profile[16:20]
    wanted = b"GRAY" if _channels(arr) in (1, 2) else b"RGB "
    return meta.icc_profile if space == wanted else None


def _write_pil(f: BinaryIO, arr, fmt: str, icc, exif, software: str | None, quality: int, mode: str | None) -> None:
    img = array_to_pil(arr, "I" if mode == "I" and fmt == "TIFF" else None)
    options: dict = {}
    if icc and fmt in _ICC_FORMATS:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "PNG":
        options.update(_png_text(software))
    if fmt == "JPEG":
        # 4:4:4 chroma: upscaled detail is what the user wants, don't halve colour resolution.
        options.update(quality=quality, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=quality)
    elif fmt == "AVIF":
        # Full-resolution chroma for colour, as for JPEG; grey is 4:0:0 (Pillow's choice for L).
        options.update(quality=quality, **({} if img.mode in ("L", "LA") else {"subsampling": "4:4:4"}))
    elif fmt == "HEIF":
        options.update(quality=quality, chroma=444)
    elif fmt == "TIFF":
        options.update(compression="tiff_lzw")
    img.save(f, format=fmt, **options)


def _png_text(software: str | None) -> dict:
    """A tEXt Software chunk for PNG viewers that do not read eXIf (most of them)."""
    if not software:
        return {}
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", software)
    return {"pnginfo": info}


def _write_high_depth(f: BinaryIO, arr: np.ndarray, fmt: str, icc, exif, software: str | None, quality: int) -> None:
    if fmt == "HEIF":
        _write_heif10(f, arr, icc, exif, quality)
        return
    if fmt == "TIFF":
        import tifffile

        photometric = "rgb" if arr.shape[2] >= 3 else "minisblack"
        extra = ["unassalpha"] if arr.shape[2] in (2, 4) else None
        loaded = _load_exif(exif) if exif else None
        text = [(int(tag), "s", 0, str(loaded[tag]), True)
                for tag in _TIFF_TEXT_TAGS if loaded is not None and loaded.get(tag)]
        # tifffile names itself as Software unless told not to; the EXIF's own Software is in `text`.
        own = any(tag == int(_T.Software) for tag, *_ in text)
        tifffile.imwrite(f, arr, photometric=photometric, extrasamples=extra, iccprofile=icc, compression=None,
                         software=False if own else None, extratags=text)
        return
    _write_png16(f, arr, icc, exif, software)


def _write_heif10(f: BinaryIO, arr: np.ndarray, icc: bytes | None, exif: bytes | None, quality: int) -> None:
    """16-bit RGB/RGBA as 10-bit HEIC (what HEVC Main 10 and phones' HDR photos hold), through
    pillow-heif, which takes 16-bit samples with the 10 bits at the top."""
    import pillow_heif

    ten = (arr.astype(np.uint32) * 1023 + 32767) // 65535
    height, width, channels = arr.shape
    heif = pillow_heif.from_bytes(mode="RGBA;16" if channels == 4 else "RGB;16", size=(width, height),
                                  data=np.ascontiguousarray((ten << 6).astype(np.uint16)).tobytes())
    if icc:
        heif.info["icc_profile"] = icc
    heif.save(f, quality=quality, chroma=444, **({"exif": exif} if exif else {}))


def _write_png16(f: BinaryIO, arr: np.ndarray, icc: bytes | None, exif: bytes | None, software: str | None) -> None:
    """16-bit grey+alpha / RGB / RGBA PNG via pypng, with iCCP and eXIf chunks added
    (pypng's writer has no option for them)."""
    import png

    height, width, channels = arr.shape
    writer = png.Writer(width, height, greyscale=channels <= 2, alpha=channels in (2, 4), bitdepth=16)
    buf = io.BytesIO()
    big_endian = arr.astype(">u2")
    writer.write_packed(buf, (big_endian[y].tobytes() for y in range(height)))
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    extra = []
    if icc:
        extra.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        extra.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    if software:
        extra.append((b"tEXt", b"Software\x00" + software.encode("latin-1", "replace")))
    png.write_chunks(f, [chunks[0], *extra, *chunks[1:]])  # right after IHDR
