"""Writing still images atomically (temporary file, then :func:`surge.atomic.publish`), in the
format of the extension, with the metadata the format stores."""

from __future__ import annotations

import contextlib
import io
import numpy as np
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from surge.atomic import publish, temp_name
from surge.errors import ImageWriteError, OutputExistsError
from surge.inference.image_io.formats import (
    _EXIF_FORMATS,
    _HIGH_DEPTH_FORMATS,
    _ICC_FORMATS,
    JPEG_QUALITY,
    output_format,
    _reason,
)
from surge.inference.image_io.heif import _write_heif10
from surge.inference.image_io.metadata import _T, _TIFF_TEXT_TAGS, ImageMeta, _load_exif, _matching_icc, _output_exif
from surge.inference.image_io.pixels import array_to_pil, _channels, _flatten_alpha, _grey_to_rgb, quantise


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
