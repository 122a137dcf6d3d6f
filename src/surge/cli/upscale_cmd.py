"""``surge upscale INPUT... -o OUTDIR`` (or ``INPUT -o FILE``): batch upscaling of files and folders.

The model is loaded once. Every output path is planned before any work starts, so
collisions and attempts to write over an input are refused up front. A file that fails
is reported on one line (``surge: error: <file>: <reason>``) and the batch goes on;
the exit code is 0 when every file succeeded (or was skipped), 1 when any failed, and
2 for usage and model errors. Without ``--overwrite`` an output is never replaced, not
even one that another process created while this one was computing (reported, exit 1).

Folders are walked for the extensions in ``IMAGE_EXTENSIONS`` (GIF included, as when
named); with ``--recursive`` symlinked folders are followed, each real folder once, and
an unreadable folder is an error. Animated GIF, PNG, WebP and AVIF files are upscaled frame by
frame into an animated PNG or WebP with the same display times and loop count; where the
output format holds one frame (JPEG, BMP, TIFF, AVIF, HEIC) and for multi-page TIFFs, the first frame is
upscaled, with a warning line per file. ``-s/--outscale`` resizes the model's output with
MATLAB bicubic to any final scale. When a network trained on clean LR meets JPEGs of quality
85 or lower, one closing note names the model made for them (the README's "which model");
``--real-for-jpeg`` (on for the default model) hands such JPEGs to that model, file by file.
``-`` as the input reads one image from stdin, ``-o -`` writes one image to stdout (only once
it is complete; messages always go to stderr).

This module is a front-end: argument parsing, stdin/stdout, the threaded read/write overlap
(``--io-threads``) and the messages. Planning, the model for each file, output names, reading and
writing with metadata and the atomic publish are :mod:`surge.inference.pipeline`'s, shared with
every other front-end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from surge import BACKENDS, PRECISIONS
from surge.atomic import sweep_stale_temps
from surge.cli.argtypes import add_limit_arguments, non_negative, positive, positive_number, quality, tile_size
from surge.cli.messages import emit, error, warn
from surge.cli.untrained import add_allow_untrained
from surge.errors import SurgeError
from surge.inference.image_io import (
    DEFAULT_MAX_PIXELS,
    JPEG_QUALITY,
    OUTPUT_FORMATS,
    ImageMeta,
    check_writable_dir,
)
from surge.inference.planning import check_suffix
from surge.inference.tiling import MIN_TILE
from surge.inference.pipeline import (
    COMPRESSED_MODEL,
    COMPRESSED_QUALITY,
    FILE_ERRORS,
    Job,
    UpscaleOptions,
    Upscaler,
    describe_error,
    is_compressed,
    output_file,
    plan_jobs,
)
from surge.models.registry import REAL_WORLD_COUNTERPART

EXTENSIONS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "avif", "heic", "same")

def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders; - reads one image from stdin")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR|FILE|-",
                   help="output folder (created if missing; a name ending in / is always a folder); or, for one input "
                        "file, the output file (format from its extension); - writes the one image to stdout (format from --ext)")
    p.add_argument("--model", default=None, metavar="NAME|FILE",
                   help="model name, .safetensors file, or .onnx file from `surge export` (runs with onnxruntime: "
                        "input float32 NCHW RGB in [0, 1], output clamped to [0, 1]) (default: the best installed model; see `surge models`)")
    p.add_argument("-s", "--outscale", default=None, type=positive_number, metavar="S",
                   help="final scale of the output vs the input, e.g. 2 or 3.5: the model's output is resized with MATLAB bicubic (default: the model's scale, 4)")
    p.add_argument("--recursive", action="store_true", help="walk folders recursively (keeps the sub-folder structure; follows symlinked folders once)")
    p.add_argument("--suffix", default=None, help="appended to each output file name, no '/' or '..' (default: _x<S>, e.g. _x4)")
    p.add_argument("--ext", default="png", choices=EXTENSIONS, help="output format; 'same' keeps the input's (default: %(default)s)")
    p.add_argument("--quality", default=JPEG_QUALITY, type=quality, metavar="1-100", help="JPEG/WebP/AVIF/HEIC quality (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--tile", default="auto", type=tile_size, metavar="N|auto|0", help="LR tile size; auto = from free memory; 0 = whole image (default: auto)")
    p.add_argument("--overlap", default=None, type=non_negative, metavar="N", help="LR context per tile side (default: the model's receptive radius, exact)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]")
    p.add_argument("--backend", default=None, choices=BACKENDS, help="default: onnxruntime for an .onnx --model, else torch")
    add_limit_arguments(p, DEFAULT_MAX_PIXELS, memory_available="at start")
    p.add_argument("--batch-size", default=1, type=positive, metavar="N", help="tiles per forward pass (default: %(default)s)")
    p.add_argument("--io-threads", default=None, type=non_negative, metavar="N",
                   help="threads that write outputs (and one that reads the next input) while the model computes; "
                        "0 = read, compute and write one after another (default: half the CPU cores, 2-4)")
    p.add_argument("--real-for-jpeg", action=argparse.BooleanOptionalAction, default=None,
                   help=f"JPEGs of quality <= {COMPRESSED_QUALITY} (read from their quantisation tables) are upscaled by the "
                        "model's real-world counterpart, which removes the artifacts a clean-input model sharpens: "
                        + ", ".join(f"{a} -> {b}" for a, b in REAL_WORLD_COUNTERPART.items())
                        + " (default: on for the default model, off for a model given with --model)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average over the 8 flips/rotations of the input: a little more faithful, 8x slower")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file messages (errors and warnings are still printed)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray (needs surge-sr[ray]): no ADDRESS starts a local Ray for the run; an ADDRESS (auto, "
                        "ray://host:10001) joins a cluster. Inputs/-o may be pyarrow.fs URIs (s3://, gs://); writes "
                        "OUT/surge-manifest.jsonl. Put it after the inputs, or write --ray=ADDRESS")
    p.add_argument("--ray-actors", default=None, type=positive, metavar="N",
                   help="with --ray: workers holding the model (default: one per GPU, else one per 4 CPUs)")
    add_allow_untrained(p)


# --- running -------------------------------------------------------------------------


STDIO = "-"  # as INPUT: read the image from stdin; as -o: write it to stdout


def run(args) -> int:
    if getattr(args, "ray", None) is not None:
        from surge.cli import upscale_ray

        return upscale_ray.run(args, options_from_args(args))
    if STDIO in args.inputs or str(args.output) == STDIO:
        return _run_piped(args)
    return _run(args)


def _run_piped(args) -> int:
    """``-`` as the input (stdin) and/or ``-o -`` (stdout). The bytes pass through a private
    temporary folder, so reading, writing and every check are those of files, and stdout gets
    the image only once it is complete; messages say <stdin>/<stdout>, not the temporary names."""
    if STDIO in args.inputs and len(args.inputs) > 1:
        raise SurgeError("-: stdin is read as the only input; give files and folders in another call")
    if STDIO in args.inputs and sys.stdin is None:  # `<&-`: Python leaves sys.stdin None
        raise SurgeError("-: stdin is closed")
    if STDIO in args.inputs and sys.stdin.isatty():
        raise SurgeError("-: stdin is a terminal; pipe or redirect an image into it")
    to_stdout = str(args.output) == STDIO
    if to_stdout and sys.stdout is None:  # `>&-`
        raise SurgeError("-o -: stdout is closed")
    if to_stdout and (len(args.inputs) != 1 or Path(args.inputs[0]).is_dir()):
        raise SurgeError("-o -: stdout takes exactly one image; give one input file, or an output folder")
    if to_stdout and sys.stdout.isatty():
        raise SurgeError("-o -: stdout is a terminal; redirect it to a file or pipe it on")
    with tempfile.TemporaryDirectory(prefix="surge-") as tmp:
        aliases: dict[str, str] = {}
        if args.inputs == [STDIO]:
            source = _stdin_file(Path(tmp))
            args.inputs = [str(source)]
            aliases[str(source)] = "<stdin>"
        if to_stdout:
            ext = Path(args.inputs[0]).suffix.lower() if args.ext == "same" else f".{args.ext}"
            args.output = Path(tmp) / f"stdout{ext if ext in OUTPUT_FORMATS else '.png'}"
            aliases[str(args.output)] = "<stdout>"
        _ALIASES.update(aliases)
        try:
            return _run(args, deliver=_to_stdout if to_stdout else None)
        except SurgeError as exc:
            raise type(exc)(_aliased(str(exc))) from None
        finally:
            _ALIASES.clear()


# Pillow's format -> the extension `--ext same` gives an image read from stdin.
_FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif",
                      "AVIF": ".avif", "HEIF": ".heic"}


def _stdin_file(folder: Path) -> Path:
    """stdin's bytes as a file named after their format (``stdin.jpg``), so that ``--ext same``
    keeps it; ``stdin`` alone when the format is not recognised (the read then says so)."""
    data = sys.stdin.buffer.read()
    source = folder / "stdin"
    source.write_bytes(data)
    try:
        from surge.inference.image_io import heif_available

        heif_available()  # registers the HEIF opener, when installed
        with Image.open(source) as img:
            ext = _FORMAT_EXTENSIONS.get(img.format or "")
    except Exception:  # not an image: the read reports it, naming <stdin>
        ext = None
    if ext:
        source = source.rename(source.with_suffix(ext))
    return source


def _to_stdout(path: Path) -> None:
    """The finished image onto stdout, unbuffered: an error (a full disk, a closed pipe) is
    raised here, before anything reports success, and nothing is left to flush at exit."""
    data = memoryview(path.read_bytes())
    sys.stdout.flush()
    fd = sys.stdout.fileno()
    while data:
        data = data[os.write(fd, data):]


_ALIASES: dict[str, str] = {}  # temporary path -> what messages call it (<stdin>, <stdout>)


def _aliased(message: str) -> str:
    for path, name in _ALIASES.items():
        message = message.replace(path, name)
    return message


def options_from_args(args) -> UpscaleOptions:
    """The library's options from the parsed command line (same names)."""
    return UpscaleOptions(**{f.name: getattr(args, f.name) for f in fields(UpscaleOptions)})


def _run(args, deliver=None) -> int:
    """``deliver(path)``: hands the one output on (stdout) before the closing line is printed."""
    if isinstance(args.tile, int) and 0 < args.tile < MIN_TILE:
        _warn(f"--tile {args.tile}: raised to {MIN_TILE} (smaller tiles give the same output, only slower)")
    check_suffix(args.suffix)  # before the options, to name the option as given
    options = options_from_args(args)
    notes: list[str] = []
    jobs, errors = plan_jobs(args.inputs, args.output, options, args.recursive, notes)
    for message in notes:
        _warn(message)
    for message in errors:
        _error(message)
    if not jobs:
        return 1
    single = output_file(args.output)
    # Once, before loading a model: exit 2 if not writable, or if --ext names a format this
    # install cannot write (with --ext same such files fail one by one, as their inputs would).
    check_writable_dir(single.parent if single is not None else args.output)
    if single is None and args.ext != "same":
        jobs[0].format  # noqa: B018 - raises for a format this install cannot write
    upscaler = Upscaler(options)
    upscaler.load()  # model errors: exit 2, before any work
    for folder in sorted({job.target.parent for job in jobs}):
        sweep_stale_temps(folder)  # temp files of earlier runs that were killed (only ours, only dead ones)
    compressed: list[tuple[Path, int]] = []
    done, skipped, failed = _process(jobs, upscaler, args, compressed)
    if deliver is not None and done:
        try:
            deliver(jobs[0].target)
        except OSError as exc:
            _release_stdout()
            _error(f"{args.output}: cannot write ({exc.strerror or exc})")
            done, failed = done - 1, failed + 1
    if not args.quiet:
        if compressed and upscaler.for_jpeg_name is not None:
            emit(f"surge: {len(compressed)} JPEG(s) of quality <= {COMPRESSED_QUALITY} upscaled with {upscaler.for_jpeg_name}")
        elif compressed and _trained_on_clean_lr(upscaler.main_model):
            path, quality = compressed[0]
            more = f" and {len(compressed) - 1} more" if len(compressed) > 1 else ""
            name = upscaler.main_name
            fix = ("--real-for-jpeg upscales them with " + REAL_WORLD_COUNTERPART[name] if name in REAL_WORLD_COUNTERPART
                   else f"--model {COMPRESSED_MODEL} removes them")
            emit(f"surge: note: {_aliased(str(path))} (JPEG quality ~{quality}){more}: this model was trained on clean input and "
                 f"sharpens JPEG artifacts; {fix} (README: Which model)")
        emit(f"surge: {done} upscaled, {skipped} skipped, {failed + len(errors)} failed -> {_aliased(str(args.output))}")
    return 1 if failed or errors else 0


def _release_stdout() -> None:
    # After a failed write, point stdout at nothing so Python's exit-time flush cannot fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _trained_on_clean_lr(model) -> bool:
    """A trained network (its file records a training stage) whose training LR had no degradations."""
    provenance = getattr(model, "provenance", None) or {}
    return "stage" in provenance and provenance.get("degradation") is None


def _process(jobs: list[Job], upscaler: Upscaler, args, compressed: list[tuple[Path, int]]) -> tuple[int, int, int]:
    """(done, skipped, failed); JPEG inputs of quality <= COMPRESSED_QUALITY go to ``compressed``.

    The network runs on this thread, one file after another; the next file is decoded and
    finished outputs are encoded on other threads meanwhile (Pillow, zlib and the codecs release
    the GIL). Encoding a 4x PNG can take longer than a GPU takes to compute it, so without this a
    GPU batch would mostly wait on zlib. Outputs waiting to be written are bounded in number
    (``--io-threads``) and bytes (PENDING_OUTPUT_BYTES), so memory stays that of a few images.
    Each stage is the library's (:class:`surge.inference.pipeline.Upscaler`).
    """
    show = not args.quiet
    # Bars only on a terminal: in logs and pipes their carriage returns are just noise.
    bars = show and sys.stderr.isatty()
    todo, skipped = [], 0
    for job in jobs:
        if job.target.exists() and not args.overwrite:
            skipped += 1
            if show:
                emit(_aliased(f"surge: skipping {job.source}: {job.target} exists (use --overwrite)"))
        else:
            todo.append(job)
    threads = _io_threads(args)
    with _Writes(threads, compressed, upscaler) as writes, ThreadPoolExecutor(max_workers=1, thread_name_prefix="surge-read") as reader:
        following = reader.submit(_read_job, todo[0], upscaler) if todo and threads else None
        bar = tqdm(todo, desc="images", unit="img", file=sys.stderr, disable=not bars or len(todo) <= 1)
        for index, job in enumerate(bar):
            read, following = following, None
            if threads and index + 1 < len(todo):
                following = reader.submit(_read_job, todo[index + 1], upscaler)  # decoded while this one computes
            try:
                frames, meta = read.result() if read is not None else _read_job(job, upscaler)
                model, _ = upscaler.pick(meta)
                results = _compute(frames, meta, job, model, upscaler, progress=bars)
            except _FILE_ERRORS as exc:
                writes.fail(job, exc)
                continue
            writes.submit(job, results, meta)
    return writes.done, skipped, writes.failed


# Per-file failures: reported on one line each, and the batch goes on.
_FILE_ERRORS = FILE_ERRORS
# Outputs computed but not yet written, at most; a larger one is written before the next file is computed.
PENDING_OUTPUT_BYTES = 512 * 2**20


def _io_threads(args) -> int:
    if args.io_threads is not None:
        return args.io_threads
    # The cores this process may use (a container or taskset may allow fewer than the machine has).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    # At least 2: when the network is fast, encoding is the bottleneck and one writer just moves
    # it to another thread (benchmarks/batch_upscale.py: 1.04x with 1, 1.59x with 2 on 2 cores).
    return max(2, min(4, cores // 2))


class _Writes:
    """Outputs being written: on ``threads`` threads (0: right away on this one), settled in
    submission order, each ending as done or failed with its one-line message."""

    def __init__(self, threads: int, compressed: list[tuple[Path, int]], upscaler: Upscaler):
        self.threads, self.compressed, self.upscaler = threads, compressed, upscaler
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="surge-write") if threads else None
        self.pending: deque[tuple[Job, ImageMeta, int, Future]] = deque()
        self.done = self.failed = 0

    def __enter__(self) -> _Writes:
        return self

    def __exit__(self, *exc_info) -> None:
        # Also on Ctrl-C: writes under way finish (each publishes a whole file or nothing).
        try:
            self._settle(keep=0)
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job: Job, results: list[np.ndarray], meta: ImageMeta) -> None:
        if self.pool is None:
            try:
                _write_job(results, job, meta, self.upscaler)
            except _FILE_ERRORS as exc:
                self.fail(job, exc)
            else:
                self._succeed(job, meta)
            return
        size = sum(r.nbytes for r in results)
        self.pending.append((job, meta, size, self.pool.submit(_write_job, results, job, meta, self.upscaler)))
        self._settle(keep=self.threads)

    def fail(self, job: Job, exc: BaseException) -> None:
        self.failed += 1
        _error(describe_error(job.source, exc))

    def _succeed(self, job: Job, meta: ImageMeta) -> None:
        self.done += 1
        if is_compressed(meta):
            self.compressed.append((job.source, meta.jpeg_quality))

    def _settle(self, keep: int) -> None:
        """Wait for the oldest writes until at most ``keep`` remain and their outputs fit the byte bound."""
        while self.pending and (len(self.pending) > keep or sum(p[2] for p in self.pending) > PENDING_OUTPUT_BYTES
                                or self.pending[0][3].done()):
            job, meta, _, future = self.pending.popleft()
            try:
                future.result()
            except _FILE_ERRORS as exc:
                self.fail(job, exc)
            else:
                self._succeed(job, meta)


# The stages, as module functions so tests can watch and slow them.
def _read_job(job: Job, upscaler: Upscaler) -> tuple[list[np.ndarray], ImageMeta]:
    return upscaler.read(job)


def _compute(frames: list[np.ndarray], meta: ImageMeta, job: Job, model, upscaler: Upscaler, progress: bool) -> list[np.ndarray]:
    for message in upscaler.frame_warnings(job, meta, len(frames)):
        _warn(message)
    return upscaler.compute(frames, job, model, progress=progress)


def _write_job(results: list[np.ndarray], job: Job, meta: ImageMeta, upscaler: Upscaler) -> None:
    upscaler.write(results, job, meta)


def _error(message: str) -> None:
    error(_aliased(message))  # escaped: names may hold terminal escapes or newlines


def _warn(message: str) -> None:
    warn(_aliased(message))
