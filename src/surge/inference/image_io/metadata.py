"""What an output carries over from its source: :class:`ImageMeta`, EXIF without layout tags and
with the orientation reset, the ICC profile where it still applies, and a JPEG's quality estimate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from surge.inference.image_io.formats import _DECODE_ERRORS
from surge.inference.image_io.pixels import _ICC_PRESERVING_MODES, _channels


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


def _matching_icc(meta: ImageMeta | None, arr: np.ndarray) -> bytes | None:
    """The source ICC profile if its colour space (header bytes 16-19) fits the output."""
    if meta is None or not meta.icc_profile or len(meta.icc_profile) < 20:
        return None
    space = meta.icc_profile[16:20]
    wanted = b"GRAY" if _channels(arr) in (1, 2) else b"RGB "
    return meta.icc_profile if space == wanted else None
