"""Phone formats: AVIF (Pillow) and HEIC/HEIF (the optional pillow-heif): availability, telling which
library a file needs, and the high-bit-depth HEIF reader and writer."""

from __future__ import annotations

import functools
import numpy as np
from pathlib import Path
from typing import BinaryIO

from PIL import features


# ISO-BMFF brands (the ftyp box) of files that only an optional library decodes.
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_NEEDS_HEIF = "needs the optional pillow-heif package (pip install 'surge-sr[heif]')"
_NEEDS_AVIF = "needs Pillow built with AVIF (the wheels of Pillow >= 11.3 are)"


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
