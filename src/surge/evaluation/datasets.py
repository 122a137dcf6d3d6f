"""Benchmark sets on disk: find the (LR, HR) pairs of a set and decode them, checked.

Layouts understood, per set folder ``<root>/<Set>``:

* ``HR/<name>.png`` + ``LR_bicubic_X4/<name>x4.png`` (SelfExSR / EDSR / DIV2K naming; also
  ``LR_bicubic/X4/``);
* ``GTmod12/<name>.png`` + ``LRbicx4/<name>.png`` (BasicSR's benchmark release);
* ``HR/<name>.png`` + ``LR_degraded_X4/<name>x4.png`` (``surge degrade``: LR that is not bicubic);
* HR only: ``HR/``, ``GTmod12/`` or the images directly in the set folder. The LR input is
  then made like the published LR files: MATLAB bicubic ``imresize(HR, 1/4)`` of HR cropped
  to a multiple of 4 (:func:`surge.imaging.bicubic.imresize`, identical to the SelfExSR
  LR files on every pixel of Set5, Set14 and BSD100).

Pairing rule: ``HR[:4*h_lr, :4*w_lr]`` (HR may exceed 4x the LR by less than 4 px).

Nothing is dropped silently: a missing LR file, an LR file without its HR, sizes that do
not pair, an unreadable or unsupported image each become a :class:`Skipped` entry naming
the file and the problem; the runner reports them and flags any mean taken over fewer
images than the set has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from surge.errors import DatasetError, ImageReadError
from surge.imaging.bicubic import imresize

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
HR_DIRS = ("HR", "GTmod12")
# (LR folder relative to the set, LR file name from the HR stem and suffix)
LR_LAYOUTS = (
    ("LR_bicubic_X{s}", "{stem}x{s}{suffix}"),
    ("LR_bicubic/X{s}", "{stem}x{s}{suffix}"),
    ("LRbicx{s}", "{stem}{suffix}"),
    ("LR_degraded_X{s}", "{stem}x{s}{suffix}"),
)


@dataclass(frozen=True)
class ImagePair:
    """One benchmark image: its HR file and LR file (None: LR is made from HR)."""

    name: str
    hr_path: Path
    lr_path: Path | None


@dataclass(frozen=True)
class Skipped:
    """An image that was not measured, and why (one line that names the file)."""

    name: str
    reason: str


@dataclass
class BenchmarkSet:
    """The pairs found in a set folder, plus the files that could not be paired."""

    name: str
    root: Path
    scale: int
    pairs: list[ImagePair]
    skipped: list[Skipped] = field(default_factory=list)
    lr_source: str = "files"  # "files" or "bicubic from HR"

    @property
    def total(self) -> int:
        """Every image the set holds (measured or skipped)."""
        return len(self.pairs) + len(self.skipped)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def find_set(data_root: str | os.PathLike, set_name: str) -> Path:
    """``<data_root>/<set_name>``, matching the name case-insensitively; DatasetError if absent."""
    root = Path(data_root)
    if not root.is_dir():
        raise DatasetError(f"{root}: benchmark folder not found")
    exact = root / set_name
    if exact.is_dir():
        return exact
    matches = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == set_name.lower()]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))) or "none"
    raise DatasetError(f"{exact}: set {set_name!r} not found (sets there: {available})")


def discover_set(set_dir: str | os.PathLike, scale: int = 4) -> BenchmarkSet:
    """Find the pairs of one set folder (see the module docstring for the layouts)."""
    set_dir = Path(set_dir)
    if not set_dir.is_dir():
        raise DatasetError(f"{set_dir}: set folder not found")
    hr_dir = next((set_dir / d for d in HR_DIRS if (set_dir / d).is_dir()), None)
    lr_dir, lr_pattern = None, None
    for folder, pattern in LR_LAYOUTS:
        candidate = set_dir / folder.format(s=scale)
        if candidate.is_dir():
            lr_dir, lr_pattern = candidate, pattern
            break
    if hr_dir is None:
        if lr_dir is not None:
            raise DatasetError(f"{set_dir}: has an LR folder ({lr_dir.name}) but no HR folder ({' or '.join(HR_DIRS)})")
        hr_dir = set_dir  # HR-only: the images are directly in the set folder
    hr_files = _images_in(hr_dir)
    if not hr_files:
        raise DatasetError(f"{hr_dir}: no images found")
    _refuse_name_clashes(hr_files)

    bench = BenchmarkSet(set_dir.name, set_dir, scale, [], lr_source="files" if lr_dir else "bicubic from HR")
    if lr_dir is None:
        bench.pairs = [ImagePair(p.stem, p, None) for p in hr_files]
        return bench
    expected: set[Path] = set()
    for hr in hr_files:
        lr = lr_dir / lr_pattern.format(stem=hr.stem, s=scale, suffix=hr.suffix)
        if not lr.is_file():
            # The LR may be saved in another format than the HR (e.g. HR .bmp, LR .png).
            alternatives = [q for q in lr_dir.glob(lr_pattern.format(stem=hr.stem, s=scale, suffix=".*")) if q.suffix.lower() in IMAGE_SUFFIXES]
            if len(alternatives) == 1:
                lr = alternatives[0]
            elif len(alternatives) > 1:
                expected.update(alternatives)
                names = " and ".join(q.name for q in sorted(alternatives))
                bench.skipped.append(Skipped(hr.stem, f"{lr_dir}: {names} are all LR candidates for {hr}; keep one"))
                continue
        if lr.is_file():
            expected.add(lr)
            bench.pairs.append(ImagePair(hr.stem, hr, lr))
        else:
            bench.skipped.append(Skipped(hr.stem, f"{lr}: LR file missing (HR is {hr})"))
    for orphan in _images_in(lr_dir):
        if orphan not in expected:
            bench.skipped.append(Skipped(orphan.stem, f"{orphan}: LR file without an HR image in {hr_dir}"))
    return bench


def _refuse_name_clashes(files: list[Path]) -> None:
    """Results are keyed by file stem: ``x.png`` and ``x.bmp`` would silently count as one image."""
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise DatasetError(f"{seen[path.stem]} and {path.name}: two images named {path.stem!r} in one set "
                               "(scores are keyed by name); remove or rename one")
        seen[path.stem] = path


# ---------------------------------------------------------------------------------------
# Decoding


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an 8-bit image to uint8 HxW (grayscale) or HxWx3 (RGB); ImageReadError otherwise.

    Palette and alpha images are converted to RGB (alpha dropped); grayscale stays
    single-channel (its own Y); 16-bit and float images are refused rather than silently
    truncated.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise ImageReadError(f"{path}: {mode} images (16-bit/float) are not supported, expected 8-bit")
            if mode in ("L", "1"):
                im = im.convert("L")
            elif mode == "LA":
                im = im.convert("L")
            elif mode != "RGB":
                im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from None
    if arr.size == 0:
        raise ImageReadError(f"{path}: empty image")
    return arr


class _ByteBoundedCache:
    """LRU cache of read-only arrays with a total-bytes budget (thread-unsafe, like the runner)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple, make) -> np.ndarray:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        arr = make()
        arr.setflags(write=False)
        if arr.nbytes <= self.max_bytes:
            self._items[key] = arr
            self._bytes += arr.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return arr

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


# Decoded benchmark images: Set5 + Set14 + BSD100 (HR and LR) are about 60 MB.
_CACHE = _ByteBoundedCache(max_bytes=int(os.environ.get("SURGE_EVAL_CACHE_MB", "512")) * 2**20)


def _file_key(path: str | os.PathLike) -> tuple[str, int, int]:
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def read_image_cached(path: str | os.PathLike) -> np.ndarray:
    """:func:`read_image`, memoised on (path, mtime, size); the array is read-only.

    Validation during training evaluates the same few hundred small images again and
    again; decoding PNGs would otherwise dominate the bicubic and tiny-model runs. The
    cache holds at most ``SURGE_EVAL_CACHE_MB`` (default 512) MB.
    """
    try:
        key = _file_key(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    return _CACHE.get(("img", *key), lambda: read_image(path))


def _lr_from_hr(hr_path: Path, hr: np.ndarray, scale: int) -> np.ndarray:
    def make() -> np.ndarray:
        h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
        return imresize(np.ascontiguousarray(hr[:h, :w]), 1.0 / scale)

    return _CACHE.get(("lr", *_file_key(hr_path), scale), make)


def load_pair(pair: ImagePair, scale: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one pair: (LR uint8, HR uint8 cropped to ``scale`` x LR size).

    Raises :class:`ImageReadError` (unreadable file) or :class:`DatasetError` (sizes or
    channels that do not pair), each naming the file.
    """
    hr = read_image_cached(pair.hr_path)
    if pair.lr_path is None:
        if hr.shape[0] < scale or hr.shape[1] < scale:
            raise DatasetError(f"{pair.hr_path}: {hr.shape[1]}x{hr.shape[0]} px is smaller than the scale {scale}")
        lr = _lr_from_hr(pair.hr_path, hr, scale)
    else:
        lr = read_image_cached(pair.lr_path)
    h, w = lr.shape[:2]
    H, W = hr.shape[:2]
    if not (scale * h <= H < scale * (h + 1) and scale * w <= W < scale * (w + 1)):
        raise DatasetError(
            f"{pair.lr_path}: LR {w}x{h} x{scale} = {scale * w}x{scale * h} does not pair with HR {W}x{H} ({pair.hr_path})"
        )
    if lr.ndim != hr.ndim:
        kinds = {2: "grayscale", 3: "RGB"}
        raise DatasetError(f"{pair.lr_path}: LR is {kinds[lr.ndim]} but HR is {kinds[hr.ndim]} ({pair.hr_path})")
    return lr, hr[: scale * h, : scale * w]


def clear_cache() -> None:
    """Forget decoded images (tests, or to free memory after a long evaluation)."""
    _CACHE.clear()
