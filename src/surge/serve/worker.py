"""The server's one call into the library: upscale one uploaded file into one result file.

INTERIM: ``surge.inference.pipeline`` (the CLI's per-file pipeline: model choice per file, frames,
-s, metadata, atomic writes) is being written on another branch. Until it lands, ``Upscaler`` here
follows its contract (``UpscaleOptions``, ``Upscaler.process_file``, ``FileResult``) with
``surge.load_model`` + ``surge.upscale`` + ``image_io``, and is replaced by the library's once
merged, so that CLI, server and Ray share one code path.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import surge
from surge.errors import SurgeError
from surge.inference.image_io import DEFAULT_MAX_PIXELS, JPEG_QUALITY, read_image, write_image

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class UpscaleOptions:
    model: str | None = None
    real_for_jpeg: bool | None = None
    outscale: float | None = None
    ext: str | None = None
    quality: int | None = None
    tile: int | str | None = "auto"
    precision: str = "auto"
    device: str = "auto"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    overwrite: bool = False


@dataclass
class FileResult:
    source: Path
    target: Path
    model: str | None
    status: str  # "done" | "skipped" | "failed"
    error: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


class Upscaler:
    """Interim stand-in for ``surge.inference.pipeline.Upscaler`` (see the module docstring)."""

    def __init__(self, options: UpscaleOptions):
        from surge.models.registry import REAL_WORLD_COUNTERPART, bundled_path, default_model_name

        self.options = options
        name = default_model_name() if options.model in (None, "default") else options.model
        real = options.real_for_jpeg
        if real is None:
            real = options.model in (None, "default") and bundled_path(REAL_WORLD_COUNTERPART.get(name, "")) is not None
        self.main = (surge.load_model(name, device=options.device, precision=options.precision), name)
        self.for_jpeg = None
        if real and name in REAL_WORLD_COUNTERPART:
            other = REAL_WORLD_COUNTERPART[name]
            self.for_jpeg = (surge.load_model(other, device=options.device, precision=options.precision), other)

    def process_file(self, source: Path, target: Path, progress: Progress | None = None) -> FileResult:
        start = time.perf_counter()
        o = self.options
        try:
            array, meta = read_image(source, max_pixels=o.max_pixels)
            model, name = self.main
            if self.for_jpeg is not None and meta.jpeg_quality is not None and meta.jpeg_quality <= 85:
                model, name = self.for_jpeg
            meta.software = f"surge {surge.__version__} ({Path(name).name})"
            result = _upscale_counting(array, model, o.tile, progress)
            if o.outscale is not None:
                from surge.cli.upscale_cmd import resize

                h, w = array.shape[:2]
                result = resize(result, (max(1, round(h * o.outscale)), max(1, round(w * o.outscale))))
            write_image(result, target, meta, quality=o.quality or JPEG_QUALITY, overwrite=o.overwrite)
        except (SurgeError, RuntimeError, MemoryError, ValueError) as exc:
            return FileResult(source, target, None, "failed", str(exc), time.perf_counter() - start)
        return FileResult(source, target, name, "done", None, time.perf_counter() - start)


def _upscale_counting(array, model, tile, progress: Progress | None):
    """surge.upscale with a tile counter; an exception raised by ``progress`` stops it between tiles."""
    from surge.inference.tiling import plan_tiles
    from surge.inference.upscale import _resolve_tile, _upscale_array

    engine = model._engine(None, None, "torch")
    overlap = model.receptive_radius
    h, w = array.shape[:2]
    total = len(plan_tiles(h, w, _resolve_tile(tile, engine, h, w, overlap), overlap))

    class Counting:
        done = 0

        def __call__(self, x):
            y = engine(x)
            self.done += len(x)
            if progress is not None:
                progress(self.done, total)
            return y

        def __getattr__(self, name):
            return getattr(engine, name)

    return _upscale_array(array, Counting(), tile=tile, overlap=overlap)


class UpscalerCache:
    """A few ``Upscaler``s by options, so requests with the same settings reuse loaded models.
    One per compute worker (each worker is one thread on one device), so it needs no lock."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict[UpscaleOptions, Upscaler] = OrderedDict()

    def get(self, options: UpscaleOptions) -> Upscaler:
        if options in self._items:
            self._items.move_to_end(options)
            return self._items[options]
        upscaler = Upscaler(options)
        self._items[options] = upscaler
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return upscaler
