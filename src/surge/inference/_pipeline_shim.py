"""TEMPORARY stand-in for ``surge.inference.pipeline`` (being extracted on another branch):
the same names and contract, built on ``surge.cli.upscale_cmd``'s per-file steps so that
outputs are those of ``surge upscale``. Deleted once the pipeline lands on main."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from surge.inference.image_io import DEFAULT_MAX_PIXELS, JPEG_QUALITY


@dataclass
class UpscaleOptions:
    model: str | None = None
    real_for_jpeg: bool | None = None
    outscale: float | None = None
    ext: str = "png"
    quality: int = JPEG_QUALITY
    tile: int | str | None = "auto"
    overlap: int | None = None
    precision: str = "auto"
    device: str = "auto"
    backend: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = 1
    self_ensemble: bool = False
    overwrite: bool = False
    suffix: str | None = None
    allow_untrained: bool = False


@dataclass
class FileResult:
    source: Path
    target: Path
    model: str | None
    status: str
    error: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _args(options: UpscaleOptions, **more) -> argparse.Namespace:
    return argparse.Namespace(**asdict(options), io_threads=0, quiet=True, **more)


class Upscaler:
    def __init__(self, options: UpscaleOptions):
        from surge.cli import upscale_cmd

        self._cmd = upscale_cmd
        self.args = _args(options)
        self.models = upscale_cmd._load_models(self.args)

    def output_path(self, source: Path, out_dir: Path, relative_dir: Path = Path()) -> Path:
        args = argparse.Namespace(**vars(self.args), output=Path(out_dir))
        return self._cmd._target(Path(source), Path(relative_dir), args)

    def process_file(self, source: Path, target: Path, progress=None) -> FileResult:
        import surge

        cmd, args = self._cmd, self.args
        start = time.perf_counter()
        job = cmd.Job(Path(source), Path(target))
        if job.target.exists() and not args.overwrite:
            return FileResult(job.source, job.target, None, "skipped", f"{job.target} exists")
        model_name = None
        try:
            frames, meta = cmd._read_job(job, args)
            model, model_name = self.models.pick(meta)
            meta.software = f"surge {surge.__version__} ({model_name})"
            results = cmd._compute(frames, meta, job, model, args, progress=False)
            cmd._write_job(results, job, meta, args)
        except cmd._FILE_ERRORS as exc:
            message = str(exc) if isinstance(exc, cmd.SurgeError) else f"{job.source}: {type(exc).__name__}: {exc}"
            return FileResult(job.source, job.target, model_name, "failed", message, time.perf_counter() - start)
        return FileResult(job.source, job.target, model_name, "done", None, time.perf_counter() - start)


def plan_jobs(inputs, out, options: UpscaleOptions, recursive: bool = False):
    from surge.cli import upscale_cmd

    notes: list[str] = []
    args = _args(options, inputs=[str(i) for i in inputs], output=Path(out), recursive=recursive)
    jobs, errors = upscale_cmd.plan_jobs(args, notes)
    return jobs, errors + notes
