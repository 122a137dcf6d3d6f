"""``surge upscale INPUT... -o OUTDIR``: batch x4 upscaling of files and folders.

The model is loaded once. Every output path is planned before any work starts, so
collisions and attempts to write over an input are refused up front. A file that fails
is reported on one line (``surge: error: <file>: <reason>``) and the batch goes on;
the exit code is 0 when every file succeeded (or was skipped), 1 when any failed, and
2 for usage and model errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

import surge
from surge import BACKENDS, PRECISIONS
from surge.errors import ImageWriteError, SurgeError
from surge.inference.image_io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, check_writable_dir, read_image, write_image
from surge.models.registry import default_model_name

EXTENSIONS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "same")


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder (created if missing)")
    p.add_argument("--model", default=None, metavar="NAME|FILE", help="model name or .safetensors file (default: the best installed model; see `surge models`)")
    p.add_argument("--recursive", action="store_true", help="walk folders recursively (keeps the sub-folder structure)")
    p.add_argument("--suffix", default="_x4", help="appended to each output file name (default: %(default)s)")
    p.add_argument("--ext", default="png", choices=EXTENSIONS, help="output format; 'same' keeps the input's (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--tile", default="auto", type=_tile_arg, metavar="N|auto|0", help="LR tile size; auto = from free memory; 0 = whole image (default: auto)")
    p.add_argument("--overlap", default=None, type=_non_negative, metavar="N", help="LR context per tile side (default: the model's receptive radius, exact)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--max-pixels", default=DEFAULT_MAX_PIXELS, type=_positive, metavar="N", help="refuse inputs with more pixels (default: %(default)s)")
    p.add_argument("--batch-size", default=1, type=_positive, metavar="N", help="tiles per forward pass (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file messages (errors are still printed)")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected an integer > 0")
    return value


def _tile_arg(text: str) -> int | str | None:
    if text == "auto":
        return "auto"
    return _non_negative(text) or None


# --- planning ------------------------------------------------------------------------


def _walk(folder: Path, recursive: bool, skip: Path) -> list[Path]:
    """Image files under ``folder``, sorted, excluding anything inside the output folder
    (so re-running with -o inside an input folder never upscales earlier outputs)."""
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    files = []
    for path in pattern:
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            if not _is_within(path.resolve(), skip):
                files.append(path)
    return sorted(files)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _target(source: Path, relative_dir: Path, args) -> Path:
    ext = source.suffix.lower() if args.ext == "same" else f".{args.ext}"
    if args.ext == "same" and ext not in IMAGE_EXTENSIONS:
        ext = ".png"
    return args.output / relative_dir / f"{source.stem}{args.suffix}{ext}"


def plan_jobs(args) -> tuple[list[Job], list[str]]:
    """(jobs, errors): every input file with its output path; problems found on the way."""
    out_root = args.output.resolve()
    jobs, errors = [], []
    for given in map(Path, args.inputs):
        if given.is_dir():
            found = _walk(given, args.recursive, out_root)
            if not found:
                errors.append(f"{given}: no image files found ({', '.join(IMAGE_EXTENSIONS)})")
            jobs += [Job(f, _target(f, f.parent.relative_to(given), args)) for f in found]
        elif given.exists():
            jobs.append(Job(given, _target(given, Path(), args)))
        else:
            errors.append(f"{given}: no such file or folder")
    return _refuse_clashes(jobs, errors)


def _refuse_clashes(jobs: list[Job], errors: list[str]) -> tuple[list[Job], list[str]]:
    """Drop jobs whose output would be an input file, or another job's output."""
    inputs = {job.source.resolve(): job.source for job in jobs}
    taken: dict[Path, Path] = {}
    kept = []
    for job in jobs:
        target = job.target.resolve()
        if target in inputs or _same_existing_file(target, job.source):
            errors.append(f"{job.source}: output {job.target} would overwrite input {inputs.get(target, job.source)}; refused (change -o or --suffix)")
        elif target in taken:
            errors.append(f"{job.source}: output {job.target} is also the output of {taken[target]}; refused (use --ext same or rename)")
        else:
            taken[target] = job.source
            kept.append(job)
    return kept, errors


def _same_existing_file(a: Path, b: Path) -> bool:
    # Hard links and bind mounts: resolve() cannot see that two paths are one file.
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


# --- running -------------------------------------------------------------------------


def run(args) -> int:
    jobs, errors = plan_jobs(args)
    for message in errors:
        _error(message)
    if not jobs:
        return 1
    check_writable_dir(args.output)  # once, before loading a model: exit 2 if not writable
    model = args.model or default_model_name()
    # Loaded once: the model keeps its inference copy across all files.
    sr_model = surge.load_model(model, device=args.device, precision=args.precision).prepare(backend=args.backend)
    done, skipped, failed = _process(jobs, sr_model, args)
    if not args.quiet:
        print(f"surge: {done} upscaled, {skipped} skipped, {failed + len(errors)} failed -> {args.output}", file=sys.stderr)
    return 1 if failed or errors else 0


def _process(jobs: list[Job], model, args) -> tuple[int, int, int]:
    done = skipped = failed = 0
    show = not args.quiet
    # Bars only on a terminal: in logs and pipes their carriage returns are just noise.
    bars = show and sys.stderr.isatty()
    bar = tqdm(jobs, desc="images", unit="img", file=sys.stderr, disable=not bars or len(jobs) <= 1)
    for job in bar:
        if job.target.exists() and not args.overwrite:
            skipped += 1
            if show:
                tqdm.write(f"surge: skipping {job.source}: {job.target} exists (use --overwrite)", file=sys.stderr)
            continue
        try:
            _upscale_file(job, model, args, progress=bars)
            done += 1
        except SurgeError as exc:
            failed += 1
            _error(str(exc))
        except (RuntimeError, MemoryError) as exc:  # e.g. out of memory: the next file may fit
            failed += 1
            _error(f"{job.source}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return done, skipped, failed


def _upscale_file(job: Job, model, args, progress: bool) -> None:
    array, meta = read_image(job.source, max_pixels=args.max_pixels)
    try:
        result = surge.upscale(array, model=model, tile=args.tile, overlap=args.overlap, progress=progress,
                               batch_size=args.batch_size, backend=args.backend)
    except SurgeError as exc:
        raise type(exc)(f"{job.source}: {exc}") from None
    try:
        write_image(result, job.target, meta)
    except ImageWriteError as exc:
        raise ImageWriteError(f"{job.source}: {exc}") from None


def _error(message: str) -> None:
    tqdm.write(f"surge: error: {message}", file=sys.stderr)
