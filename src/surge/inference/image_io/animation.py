"""Animated GIF, PNG (APNG), WebP and AVIF read frame by frame; written as animated PNG or WebP."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from surge.errors import ImageReadError, ImageWriteError
from surge.inference.image_io.formats import (
    ANIMATED_INPUT_FORMATS,
    ANIMATED_OUTPUT_FORMATS,
    _DECODE_ERRORS,
    DEFAULT_FRAME_MS,
    DEFAULT_MAX_PIXELS,
    JPEG_QUALITY,
    output_format,
    _reason,
)
from surge.inference.image_io.metadata import ImageMeta, _exif_for_output, _matching_icc, _orientation, _output_exif
from surge.inference.image_io.pixels import array_to_pil, orient_array, quantise
from surge.inference.image_io.reading import _open, _read_still
from surge.inference.image_io.writing import _atomic_output, _fit_to_format, _png_text


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
