"""PIL images <-> numpy arrays in the image's own precision and layout, orientation, quantisation."""

from __future__ import annotations

import io
import numpy as np

from PIL import Image, ImageCms

from surge.errors import ImageValueError


# Modes whose pixel values keep their colour space when turned into L/LA/RGB/RGBA, so an
# embedded ICC profile still describes the output. CMYK, LAB, ... are converted.
_ICC_PRESERVING_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "I", "F"}


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


def _channels(arr: np.ndarray) -> int:
    return 1 if arr.ndim == 2 else arr.shape[2]


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
