"""One file through surge: read, choose the model, upscale, resize, write with metadata.

The per-file path every front-end shares (``surge upscale``, a server, a Ray batch)::

    from surge.inference.pipeline import UpscaleOptions, Upscaler, plan_jobs

    upscaler = Upscaler(UpscaleOptions(model="surge-x4", ext="webp"))
    jobs, errors = plan_jobs([Path("photos")], Path("out"), upscaler.options, recursive=True)
    for job in jobs:
        result = upscaler.process_file(job.source, job.target)  # FileResult; never raises for a bad file

A file is read within ``max_pixels``, EXIF-oriented, all its frames when the output format
holds an animation (PNG, WebP); its model is chosen per file (a JPEG of quality <=
COMPRESSED_QUALITY goes to the model's real-world counterpart with ``real_for_jpeg``); it is
upscaled tile by tile, resized to ``outscale`` with MATLAB bicubic, and written with its ICC
profile, EXIF and a Software tag naming the model, through a temporary file renamed into
place: without ``overwrite`` an existing file is never replaced, not even one that appeared
while computing.

The stages (:meth:`Upscaler.read`, :meth:`Upscaler.pick`, :meth:`Upscaler.compute`,
:meth:`Upscaler.write`) are public too, so a front-end can overlap reading and writing with
computing on other threads, as ``surge upscale`` does.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import surge
from surge import BACKENDS, PRECISIONS
from surge.errors import ConfigError, ImageWriteError, OutputExistsError, SurgeError
from surge.imaging.bicubic import imresize_torch
from surge.inference.image_io import (
    ANIMATED_INPUT_FORMATS,
    ANIMATED_OUTPUT_FORMATS,
    DEFAULT_MAX_PIXELS,
    JPEG_QUALITY,
    OUTPUT_FORMATS,
    ImageMeta,
    quantise,
    read_frames,
    read_image,
    write_animation,
    write_image,
)
from surge.inference.image_header import probe
from surge.inference.limits import DEFAULT_MAX_OUTPUT_PIXELS, Limits, default_max_memory
from surge.inference.planning import Job, output_file, output_path, plan_jobs, suffix_problem
from surge.inference.tiling import MIN_TILE, activation_bytes_per_lr_pixel, memory_budget
from surge.models.registry import REAL_WORLD_COUNTERPART, bundled_path, default_model_name, refuse_untrained

__all__ = [
    "COMPRESSED_MODEL", "COMPRESSED_QUALITY", "FILE_ERRORS", "FileResult", "Job", "UpscaleOptions", "Upscaler",
    "describe_error", "is_compressed", "output_file", "output_path", "plan_jobs", "resize",
]

# At this JPEG quality and below, surge-x4-real-psnr beat the models trained on clean LR on photos
# outside the reported sets (quality 80: yes, 90: no; scripts/jpeg_sweep.py, docs/results/real-world.md).
COMPRESSED_QUALITY = 85
COMPRESSED_MODEL = "surge-x4-real-psnr"
# Per-file failures: reported on one line each, and a batch goes on.
FILE_ERRORS = (SurgeError, RuntimeError, MemoryError)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class UpscaleOptions:
    """Everything per-file processing needs; the fields are ``surge upscale``'s option names.
    Values the CLI would refuse raise :class:`~surge.errors.ConfigError` here."""

    model: str | None = None  # name, .safetensors or .onnx file; None/"default": the best installed model
    real_for_jpeg: bool | None = None  # None: on for the default model (when its counterpart is installed)
    outscale: float | None = None  # final scale vs the input; None: the model's (4)
    ext: str | None = None  # output format extension, or "same" (the input's); None: png
    quality: int | None = None  # JPEG/WebP/AVIF/HEIC quality; None: JPEG_QUALITY
    suffix: str | None = None  # appended to output names; None: _x<outscale>
    tile: int | str | None = "auto"  # LR tile size, "auto", or None/0 (whole image)
    overlap: int | None = None  # LR context per tile side; None: the model's receptive radius (exact)
    precision: str = "auto"
    device: str = "auto"
    backend: str | None = None  # None: onnxruntime for an .onnx model, else torch
    batch_size: int = 1
    self_ensemble: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    allow_untrained: bool = False
    # With max_pixels, the budget each file is checked against from its header (surge.inference.limits).
    max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS  # one output frame
    max_memory: int | str | None = "auto"  # bytes; "auto": 3/4 of the RAM available when the Upscaler is made

    def __post_init__(self) -> None:
        # `surge upscale` checks the same while parsing; other front-ends get one error up front
        # instead of a silent fallback or a failure per file.
        problem = _option_problem(self)
        if problem:
            raise ConfigError(f"UpscaleOptions: {problem}")


def _option_problem(o: UpscaleOptions) -> str | None:
    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if o.ext is not None and o.ext != "same" and not (isinstance(o.ext, str) and f".{o.ext.lower().lstrip('.')}" in OUTPUT_FORMATS):
        return f"ext {o.ext!r} is not an output format ({', '.join(f[1:] for f in OUTPUT_FORMATS)} or same)"
    if o.quality is not None and not (integer(o.quality) and 1 <= o.quality <= 100):
        return f"quality must be 1-100, got {o.quality!r}"
    if o.outscale is not None and not (isinstance(o.outscale, (int, float)) and 0 < o.outscale < float("inf")):
        return f"outscale must be a number > 0, got {o.outscale!r}"
    if not (o.tile is None or o.tile == "auto" or (integer(o.tile) and o.tile >= 0)):
        return f"tile must be an integer >= 0, 'auto' or None, got {o.tile!r}"
    if o.overlap is not None and not (integer(o.overlap) and o.overlap >= 0):
        return f"overlap must be an integer >= 0 or None, got {o.overlap!r}"
    if not (integer(o.batch_size) and o.batch_size >= 1):
        return f"batch_size must be an integer >= 1, got {o.batch_size!r}"
    if o.max_pixels is not None and not (integer(o.max_pixels) and o.max_pixels >= 1):
        return f"max_pixels must be an integer >= 1 or None, got {o.max_pixels!r}"
    if o.max_output_pixels is not None and not (integer(o.max_output_pixels) and o.max_output_pixels >= 1):
        return f"max_output_pixels must be an integer >= 1 or None, got {o.max_output_pixels!r}"
    if not (o.max_memory is None or o.max_memory == "auto" or (integer(o.max_memory) and o.max_memory >= 1)):
        return f"max_memory must be a number of bytes >= 1, 'auto' or None, got {o.max_memory!r}"
    if o.suffix is not None and (not isinstance(o.suffix, str) or suffix_problem(o.suffix)):
        return f"suffix {o.suffix!r}: {suffix_problem(o.suffix) if isinstance(o.suffix, str) else 'must be a string'}"
    if o.precision not in PRECISIONS:
        return f"precision must be one of {', '.join(PRECISIONS)}, got {o.precision!r}"
    if o.backend is not None and o.backend not in BACKENDS:
        return f"backend must be one of {', '.join(BACKENDS)} or None, got {o.backend!r}"
    return None


@dataclass
class FileResult:
    """What became of one file. ``error`` is one line naming the file (failed and skipped)."""

    source: Path
    target: Path
    model: str | None  # the name the output's Software tag gives its model
    status: str  # "done" | "skipped" | "failed"
    error: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    jpeg_quality: int | None = None  # a JPEG source's estimated quality


def is_compressed(meta: ImageMeta) -> bool:
    """A JPEG source of quality <= COMPRESSED_QUALITY."""
    return meta.jpeg_quality is not None and meta.jpeg_quality <= COMPRESSED_QUALITY


def describe_error(source: Path, exc: BaseException) -> str:
    """The one-line message for a file that failed with ``exc``."""
    if isinstance(exc, OutputExistsError):
        return f"{exc}; use --overwrite to replace it"
    if isinstance(exc, SurgeError):
        return str(exc)
    # e.g. out of memory: the next file may fit
    return f"{source}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class Upscaler:
    """Runs :class:`UpscaleOptions` on files. Models are loaded on first use (or all at once by
    :meth:`load`) and kept, each with its inference copy, for every later file."""

    def __init__(self, options: UpscaleOptions | None = None):
        self.options = options = options or UpscaleOptions()
        self.main_name = str(default_model_name() if options.model in (None, "default") else options.model)
        self.backend = options.backend or ("onnxruntime" if self.main_name.lower().endswith(".onnx") else "torch")
        real = options.real_for_jpeg
        if real is None:  # on for the default model, when its counterpart is installed
            counterpart = REAL_WORLD_COUNTERPART.get(self.main_name)
            real = options.model in (None, "default") and counterpart is not None and bundled_path(counterpart) is not None
        self.real_for_jpeg = bool(real)
        memory = default_max_memory() if options.max_memory == "auto" else options.max_memory
        self.limits = Limits(options.max_pixels, options.max_output_pixels, memory)
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def for_jpeg_name(self) -> str | None:
        """The model for JPEGs of quality <= COMPRESSED_QUALITY, or None (they get the main model)."""
        if not self.real_for_jpeg:
            return None
        if self.main_name not in REAL_WORLD_COUNTERPART:
            raise SurgeError(f"--real-for-jpeg: {self.main_name} has no real-world counterpart (it works with "
                             f"{' and '.join(REAL_WORLD_COUNTERPART)}; or give --model {COMPRESSED_MODEL} for every file)")
        return REAL_WORLD_COUNTERPART[self.main_name]

    def load(self) -> None:
        """Load every model the files may need now, so that option and model errors
        (SurgeError) come before any work."""
        for_jpeg = self.for_jpeg_name  # an impossible --real-for-jpeg fails before any loading
        self.model(self.main_name)
        if for_jpeg is not None:
            self.model(for_jpeg)

    @property
    def main_model(self):
        return self.model(self.main_name)

    def model(self, name: str):
        """The model ``name``, loaded once and prepared for the options' precision and backend."""
        with self._lock:
            if name not in self._models:
                self._models[name] = self._load(name)
            return self._models[name]

    def _load(self, name: str):
        opts = self.options
        if name.lower().endswith(".onnx"):
            if self.backend != "onnxruntime":
                raise SurgeError(f"{name}: an ONNX file runs with --backend onnxruntime, not {self.backend}")
            from surge.inference.onnx_backend import load_onnx_model

            model = load_onnx_model(name, device=opts.device)
        else:
            model = surge.load_model(name, device=opts.device, precision=opts.precision)
            refuse_untrained(model, opts.allow_untrained)
        model.prepare(precision=opts.precision, backend=self.backend)
        if opts.overlap is None and opts.tile is not None:
            model.receptive_radius  # noqa: B018 - an ONNX file without it fails here, once
        return model

    # --- the stages of one file ---------------------------------------------------

    def output_path(self, source: Path, out_dir: Path, relative_dir: Path = Path()) -> Path:
        """Where ``source``'s output goes in ``out_dir`` (suffix and extension from the options)."""
        return output_path(Path(source), Path(out_dir), self.options, relative_dir)

    def check_limits(self, job: Job) -> None:
        """Refuse (LimitError, naming the file) a file whose declared size would exceed the input,
        output or memory budget: from its header, before a pixel is decoded."""
        header = probe(job.source)
        frames = header.frames if job.format in ANIMATED_OUTPUT_FORMATS else 1
        model = self.main_model
        in_px = header.width * header.height
        limits = dataclasses.replace(self.limits, tile_bytes=self._tile_bytes(model, in_px))
        limits.check(job.source, header.width, header.height, frames=frames, scale=model.scale,
                     outscale=self.options.outscale, channels=header.channels, sample_bytes=header.sample_bytes)

    def _tile_bytes(self, model, in_px: int) -> int:
        """The tiles' working set: what the automatic tile size allows, or the whole image untiled."""
        per_pixel = activation_bytes_per_lr_pixel(model.network, model.in_channels)
        tile = self.tile
        if tile == "auto":
            return min(memory_budget(torch.device("cpu")), in_px * per_pixel)
        if tile is None:
            return in_px * per_pixel
        overlap = self.options.overlap or 0
        return min(in_px, (tile + 2 * overlap) ** 2) * per_pixel * self.options.batch_size

    @property
    def tile(self) -> int | str | None:
        """The LR tile size used: tiles under MIN_TILE give the same output, only slower (each
        carries its full context: --tile 5 took 95 s on a 64x64 image), so they are raised to it."""
        tile = self.options.tile
        if tile == "auto" or not tile:
            return tile or None
        return max(int(tile), MIN_TILE)

    def read(self, job: Job) -> tuple[list[np.ndarray], ImageMeta]:
        """The frames to upscale (all of an animation when the output format holds one) and the
        metadata; the file's declared size is checked against the budget first (:meth:`check_limits`)."""
        self.check_limits(job)
        if job.format in ANIMATED_OUTPUT_FORMATS:
            return read_frames(job.source, max_pixels=self.options.max_pixels)
        array, meta = read_image(job.source, max_pixels=self.options.max_pixels)
        return [array], meta

    def pick(self, meta: ImageMeta) -> tuple[object, str]:
        """The model for a file, and the name its output's Software tag gives it (set in ``meta``)."""
        for_jpeg = self.for_jpeg_name
        if for_jpeg is not None and is_compressed(meta):
            model, name = self.model(for_jpeg), for_jpeg
        else:
            model, name = self.main_model, Path(self.main_name).name  # a file: its name, not the user's folders
        meta.software = f"surge {surge.__version__} ({name})"
        return model, name

    @staticmethod
    def frame_warnings(job: Job, meta: ImageMeta, frames: int) -> list[str]:
        """A line when frames or pages of the source are dropped."""
        if frames >= meta.frames:
            return []
        hint = ""
        if meta.format in ANIMATED_INPUT_FORMATS and job.format not in ANIMATED_OUTPUT_FORMATS:
            hint = f" ({job.format} holds one frame; --ext png or webp keeps them all)"
        return [f"{job.source}: has {meta.frames} frames/pages; only the first was upscaled{hint}"]

    def compute(self, frames: list[np.ndarray], job: Job, model, progress: bool | Progress = False) -> list[np.ndarray]:
        """The upscaled (and ``outscale``-resized) frames. ``progress``: True for tqdm bars on
        stderr, or a callable(done, total) called as tiles finish (over all frames)."""
        if callable(progress):
            count = len(frames)
            return [self.upscale_array(frame, job, model, _frame_progress(progress, i, count)) for i, frame in enumerate(frames)]
        bar = tqdm(frames, desc="frames", unit="frame", file=sys.stderr, leave=False, disable=not progress or len(frames) == 1)
        return [self.upscale_array(frame, job, model, progress and len(frames) == 1) for frame in bar]

    def upscale_array(self, array: np.ndarray, job: Job, model, progress: bool | Progress = False) -> np.ndarray:
        opts = self.options
        # Untiled, context is irrelevant; not asking for it lets a graph without a known radius run.
        overlap = 0 if opts.overlap is None and opts.tile is None else opts.overlap
        try:
            result = surge.upscale(array, model=model, tile=self.tile, overlap=overlap, progress=progress,
                                   batch_size=opts.batch_size, backend=self.backend, self_ensemble=opts.self_ensemble)
        except SurgeError as exc:
            raise type(exc)(f"{job.source}: {exc}") from None
        if opts.outscale is not None:
            size = (max(1, round(array.shape[0] * opts.outscale)), max(1, round(array.shape[1] * opts.outscale)))
            result = resize(result, size)
        return result

    def write(self, results: list[np.ndarray], job: Job, meta: ImageMeta) -> None:
        """Publish the output atomically (a whole file or nothing); without ``overwrite`` an
        existing file is never replaced (OutputExistsError)."""
        quality = self.options.quality or JPEG_QUALITY
        try:
            if len(results) > 1:
                write_animation(results, job.target, meta, quality=quality, overwrite=self.options.overwrite)
            else:
                write_image(results[0], job.target, meta, quality=quality, overwrite=self.options.overwrite)
        except ImageWriteError as exc:
            raise type(exc)(f"{job.source}: {exc}") from None

    # --- the whole of one file ----------------------------------------------------

    def process_file(self, source: Path, target: Path, progress: Progress | None = None) -> FileResult:
        """Upscale ``source`` into ``target``. Never raises for a bad file: the result says
        "failed" with a one-line error naming it, or "skipped" when ``target`` exists and
        ``overwrite`` is off. Model errors (a model that does not load) raise SurgeError:
        call :meth:`load` first to meet them before any work. ``progress(done, total)`` is
        called as tiles finish (over all frames of an animation); an exception it raises (other
        than FILE_ERRORS) propagates with nothing written, which is how a caller cancels a file.
        Safe to call from several threads at once."""
        start = time.perf_counter()
        job = Job(Path(source), Path(target))
        result = FileResult(job.source, job.target, None, "failed")
        try:
            if _same_file(job.target, job.source):
                raise ImageWriteError(f"{job.source}: output {job.target} would overwrite the input; refused")
            if job.target.exists() and not self.options.overwrite:
                result.status, result.error = "skipped", f"{job.source}: {job.target} exists (use --overwrite)"
                return result
            frames, meta = self.read(job)
            result.jpeg_quality = meta.jpeg_quality
        except FILE_ERRORS as exc:
            result.error = describe_error(job.source, exc)
            return result
        finally:
            result.seconds = time.perf_counter() - start
        model, result.model = self.pick(meta)
        result.warnings = self.frame_warnings(job, meta, len(frames))
        try:
            self.write(self.compute(frames, job, model, progress or False), job, meta)
        except FILE_ERRORS as exc:
            result.error = describe_error(job.source, exc)
        else:
            result.status = "done"
        result.seconds = time.perf_counter() - start
        return result


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and a.samefile(b))
    except OSError:
        return False


def _frame_progress(progress: Progress, index: int, count: int) -> Progress:
    """Frame ``index`` of ``count`` (all the same size, so the same tiles): tiles over all frames."""
    return lambda done, total: progress(index * total + done, count * total)


def resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image array (any layout and dtype :func:`read_image` gives) resized to ``size`` =
    (height, width) with MATLAB bicubic, in float, clamped and re-quantised once."""
    if array.shape[:2] == tuple(size):
        return array
    x = array.astype(np.float32)
    if array.dtype.kind != "f":
        x /= np.float32(np.iinfo(array.dtype).max)
    planes = torch.from_numpy(x[None] if array.ndim == 2 else np.moveaxis(x, -1, 0))
    out = imresize_torch(planes, out_size=tuple(size)).clamp_(0.0, 1.0).numpy()
    out = out[0] if array.ndim == 2 else np.moveaxis(out, 0, -1)
    return out.astype(array.dtype) if array.dtype.kind == "f" else quantise(out, array.dtype)
