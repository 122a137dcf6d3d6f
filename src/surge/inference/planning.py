"""Planning a batch: input files and folders -> (source, output path) jobs.

Every output path is planned before any work starts, so collisions and attempts to write
over an input are refused up front. Folders are walked for the extensions in
``IMAGE_EXTENSIONS``; with ``recursive`` symlinked folders are followed, each real folder
once, and an unreadable folder is an error. Used by ``surge upscale`` and by any other
front-end of :mod:`surge.inference.pipeline`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from surge.errors import SurgeError
from surge.inference.image_io import IMAGE_EXTENSIONS, OUTPUT_FORMATS, output_format

if TYPE_CHECKING:
    from surge.inference.pipeline import UpscaleOptions


@dataclass(frozen=True)
class Job:
    """One file to upscale: its source and the output path planned for it."""

    source: Path
    target: Path

    @cached_property
    def format(self) -> str:
        """The output's format (from the target's extension), looked up once per file."""
        return output_format(self.target)


def _walk(folder: Path, recursive: bool, skip: Path, errors: list[str], notes: list[str]) -> list[Path]:
    """Image files under ``folder``, sorted, excluding anything inside the output folder
    (so re-running with -o inside an input folder never upscales earlier outputs).

    Symlinked folders are followed, each real folder once: a link to a parent would
    otherwise loop forever, and one to a sibling would upscale its images twice (a note
    says which). A folder that can be reached without links is walked under that path,
    whatever order the file system lists folders in, so its outputs keep its own name.
    A folder that cannot be listed is an error, not a silent gap.
    """
    files, walked = [], {}
    own_path = _link_free_paths(folder, skip) if recursive else {}

    def unreadable(exc: OSError) -> None:
        errors.append(f"{exc.filename}: cannot read folder ({exc.strerror or exc})")

    for top, dirs, names in os.walk(folder, onerror=unreadable, followlinks=True):
        dirs.sort()  # links reaching only link-only folders: the first in name order walks them
        real = Path(top).resolve()
        if _is_within(real, skip):
            dirs.clear()
            continue
        owner = walked.get(real, own_path.get(real, top))
        if owner != top:
            notes.append(f"{top}: same folder as {owner} (symbolic link), walked once")
            dirs.clear()
            continue
        walked[real] = top
        if not recursive:
            dirs.clear()
        for name in names:
            path = Path(top, name)
            if path.suffix.lower() in IMAGE_EXTENSIONS and not name.startswith(".") and path.is_file():
                if not _is_within(path.resolve(), skip):
                    files.append(path)
    return sorted(files)


def _link_free_paths(folder: Path, skip: Path) -> dict[Path, str]:
    """Each real folder under ``folder`` reachable without following links -> that path."""
    paths: dict[Path, str] = {}
    for top, dirs, _ in os.walk(folder):  # symlinked folders are listed, not entered
        real = Path(top).resolve()
        if _is_within(real, skip):
            dirs.clear()
            continue
        paths.setdefault(real, top)
    return paths


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def suffix_problem(suffix: str) -> str | None:
    """Why ``suffix`` cannot be appended to file names, or None: a separator or ``..`` would put
    outputs outside the output folder (``--suffix /../../x``) or make folders (``../x``: ``a..``)."""
    if "/" in suffix or "\\" in suffix or os.sep in suffix or ".." in suffix or "\0" in suffix:
        return "must not contain '/', '\\' or '..' (it is appended to each file name)"
    return None


def check_suffix(suffix: str | None) -> None:
    """SurgeError naming ``--suffix`` if :func:`suffix_problem` finds one."""
    problem = suffix_problem(suffix) if suffix is not None else None
    if problem:
        raise SurgeError(f"--suffix {suffix!r}: {problem}")


def output_path(source: Path, out_dir: Path, options: UpscaleOptions, relative_dir: Path = Path()) -> Path:
    """Where ``source``'s output goes in ``out_dir``: ``<stem><suffix><ext>``, the suffix
    ``_x<scale>`` unless ``options.suffix`` is given, the extension from ``options.ext``
    ("same": the input's; a format surge reads but does not write, e.g. GIF: .png)."""
    ext = options.ext or "png"
    ext = source.suffix.lower() if ext == "same" else f".{ext.lower().lstrip('.')}"
    if ext not in OUTPUT_FORMATS:  # e.g. GIF: read, not written
        ext = ".png"
    check_suffix(options.suffix)
    suffix = options.suffix if options.suffix is not None else f"_x{options.outscale or 4:g}"
    return Path(out_dir) / relative_dir / f"{source.stem}{suffix}{ext}"


def output_file(out: Path | str) -> Path | None:
    """``out`` when it names a file (an image extension, not an existing folder), else None.

    A name ending in a separator is a folder, whatever it looks like (``-o shots.png/``). A new
    name with any other extension is refused (SurgeError) rather than silently made a folder:
    ``-o photo.xyz`` is more likely a typo than a folder name (end it with / for a folder)."""
    text = str(out)
    if text.endswith(("/", os.sep)):
        return None
    out = Path(out)
    if out.is_dir():
        return None
    ext = out.suffix.lower()
    if ext in (*OUTPUT_FORMATS, *IMAGE_EXTENSIONS):
        return out
    if ext and not out.exists():
        raise SurgeError(f"{out}: unknown output extension {out.suffix} (image files: {', '.join(OUTPUT_FORMATS)}); "
                         f"for a folder of that name, end it with / ({out}/)")
    return None


def _single_file_job(inputs: list[Path], out: Path) -> Job:
    if len(inputs) != 1 or inputs[0].is_dir():
        given = f"{len(inputs)} inputs" if len(inputs) != 1 else f"folder {inputs[0]}"
        raise SurgeError(f"{out}: -o names a file, which takes exactly one input file (got {given}); give an output folder instead")
    output_format(out)  # an unsupported extension fails here, before any work
    return Job(inputs[0], out)


def plan_jobs(
    inputs: list[Path],
    out: Path,
    options: UpscaleOptions,
    recursive: bool = False,
    notes: list[str] | None = None,
) -> tuple[list[Job], list[str]]:
    """(jobs, errors): every input file (folders walked for IMAGE_EXTENSIONS) with its output
    path under ``out``; problems found on the way, one line each. Remarks that are not errors
    (a folder reached twice through links) go to ``notes``. ``out`` naming a file (an image
    extension, not an existing folder) takes exactly one input file (SurgeError otherwise).
    Outputs that would replace an input or another job's output are refused here."""
    notes = [] if notes is None else notes
    check_suffix(options.suffix)
    inputs = [Path(p) for p in inputs]
    is_file = output_file(out) is not None
    out = Path(out)
    if is_file:
        job = _single_file_job(inputs, out)
        if not job.source.exists():
            return [], [f"{job.source}: no such file or folder"]
        return _refuse_clashes([job], [])
    out_root = out.resolve()
    jobs, errors = [], []
    for given in inputs:
        if given.is_dir():
            reported = len(errors)
            found = _walk(given, recursive, out_root, errors, notes)
            if not found and len(errors) == reported:  # an unreadable folder is reported already
                errors.append(_nothing_found(given, out, out_root))
            jobs += [Job(f, output_path(f, out, options, f.parent.relative_to(given))) for f in found]
        elif given.exists():
            jobs.append(Job(given, output_path(given, out, options)))
        else:
            errors.append(f"{given}: no such file or folder")
    return _refuse_clashes(jobs, errors, options.ext)


def _nothing_found(given: Path, out: Path, out_root: Path) -> str:
    """Why a folder gave no images: none there, or they are all inside the output folder,
    which is never read (it holds earlier outputs, which must not be upscaled again)."""
    real = given.resolve()
    if _is_within(real, out_root):
        return (f"{given}: no image files read: it is the output folder {out} or inside it, and files under the output "
                "folder are never read (they may be earlier outputs); give an output folder outside it")
    if _is_within(out_root, real):
        return (f"{given}: no image files found outside the output folder {out} (files under the output folder are "
                "never read: they may be earlier outputs)")
    return f"{given}: no image files found ({', '.join(IMAGE_EXTENSIONS)})"


def _refuse_clashes(jobs: list[Job], errors: list[str], ext: str | None = None) -> tuple[list[Job], list[str]]:
    """Drop jobs whose output would be an input file, or another job's output."""
    inputs = {job.source.resolve(): job.source for job in jobs}
    taken: dict[Path, Path] = {}
    kept = []
    for job in jobs:
        target = job.target.resolve()
        if target in inputs or _same_existing_file(target, job.source):
            errors.append(f"{job.source}: output {job.target} would overwrite input {inputs.get(target, job.source)}; refused (change -o or --suffix)")
        elif target in taken:
            fix = "use --suffix or rename one" if ext == "same" else "use --ext same, --suffix or rename one"
            errors.append(f"{job.source}: output {job.target} is also the output of {taken[target]}; refused ({fix})")
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
