"""Pack training and benchmark images losslessly and compactly, for carrying to a GPU machine.

The 291 training images are 66 MB as BMP/PNG: over the 64 MiB a device call can carry. Lossless
WebP stores the same pixels in about 41 MB. Every written file is decoded again and compared
with the source, pixel for pixel and mode for mode; an image WebP cannot hold exactly (a
grayscale "L" image comes back as RGB, which would change its PSNR-Y under the evaluator's
grayscale rule) is stored as PNG instead.

Layout of ``--out`` (what ``scripts/gpu_train.sh`` and ``surge eval --data`` expect)::

    OUT/train/<source folder name>/...          training HR images (sub-folders kept)
    OUT/benchmark/<Set>/HR/..., LR_bicubic_X4/  benchmark sets, same structure as the source
    OUT/manifest.json                           source -> packed file, format, bytes

    python scripts/pack_data.py ../shared/datasets/train/T91 ../shared/datasets/train/BSD200 \\
        --bench ../shared/datasets/benchmark/Set5 ../shared/datasets/benchmark/Set14 --out .pack

A benchmark set is packed under its folder's name, or under NAME when given as ``NAME=DIR`` (e.g.
``Set5-bench-v1=.bench-v1/Set5`` for the output of ``surge degrade``, whose folders are named like
the clean sets).

The pack is built in a temporary folder beside ``--out`` and moved into place only when
complete and within ``--budget-mib`` (default 60; packed images plus manifest.json); an existing
``--out`` is replaced only with ``--force``. Sources are never modified.

With ``--fit``, a pack over the budget leaves training images out instead of failing: the training
folders are taken in the order given, each folder's images by sorted name, and the pack keeps the
longest prefix of that order that fits beside the benchmark sets, which are always packed whole
(refused if they alone exceed the budget). manifest.json lists the packed files ("files") and the
training images left out ("left_out"), so a run's data is documented. Size the budget to what a
device call leaves (scripts/device_budget.py)::

    B=$(python scripts/device_budget.py --carry .whl .carry --left)
    python scripts/pack_data.py ... --out .pack --budget-mib "$B" --fit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError, features

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
DEFAULT_TRAIN = (SHARED / "train" / "T91", SHARED / "train" / "BSD200")
DEFAULT_BENCH = (SHARED / "benchmark" / "Set5", SHARED / "benchmark" / "Set14")
IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
WEBP_MODES = {"RGB", "RGBA"}  # what lossless WebP gives back unchanged
KEEP_MODES = WEBP_MODES | {"L", "LA", "I;16"}  # stored as they are (PNG where not WebP)
# Lossless WebP effort. Measured on 6 BSD200 images (1 loaded core): quality 80 / method 4 (Pillow's
# defaults) 1.8 s for 1005184 bytes; quality 100 / method 4 13.3 s for 1001920 bytes (0.3% smaller).
WEBP_QUALITY, WEBP_METHOD = 80, 4


class PackError(Exception):
    """A one-line problem naming the file or folder; the script prints it and exits 2."""


@dataclass(frozen=True)
class Packed:
    source: str
    packed: str
    format: str
    mode: str
    bytes: int


def _open(path: Path) -> Image.Image:
    """The decoded image (loaded, file closed); PackError naming the file if it cannot be read."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()  # keeps .info (transparency)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise PackError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from None


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def pack_image(source: Path, target_stem: Path) -> Packed:
    """One image -> ``target_stem``.webp (lossless, verified) or .png where WebP is not exact."""
    im = _open(source)
    if im.mode not in KEEP_MODES:
        # Palette, bilevel, CMYK...: the project's readers all convert these to RGB(A) anyway.
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    target_stem.parent.mkdir(parents=True, exist_ok=True)
    for fmt, suffix in (("WEBP", ".webp"), ("PNG", ".png")):
        if fmt == "WEBP" and im.mode not in WEBP_MODES:
            continue
        target = target_stem.with_name(target_stem.name + suffix)  # not with_suffix: 'a.b' stays 'a.b'
        tmp = target.with_name(f".{target.name}.tmp")
        if fmt == "WEBP":
            im.save(tmp, format="WEBP", lossless=True, quality=WEBP_QUALITY, method=WEBP_METHOD, exact=True)
        else:
            im.save(tmp, format="PNG", optimize=True)
        if _same_pixels(im, _open(tmp)):
            os.replace(tmp, target)
            return Packed(str(source), str(target), fmt.lower(), im.mode, target.stat().st_size)
        tmp.unlink()
    raise PackError(f"{source}: {im.mode} image could not be stored losslessly as WebP or PNG")


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def named_folder(arg: str | Path) -> tuple[str, Path]:
    """``DIR`` -> (DIR's name, DIR); ``NAME=DIR`` -> (NAME, DIR)."""
    name, sep, folder = str(arg).partition("=")
    if sep and name and "/" not in name and folder:
        return name, Path(folder)
    return Path(arg).name, Path(arg)


def plan(train: list[Path], bench: list[tuple[str, Path]], out: Path) -> list[tuple[Path, Path]]:
    """(source, target path without suffix) for every image; checks folders and name clashes.

    ``bench`` holds (name to pack under, folder) pairs (:func:`named_folder`).
    """
    jobs: list[tuple[Path, Path]] = []
    seen: dict[str, Path] = {}
    for kind, folders in (("train", [(f.name, f) for f in train]), ("benchmark", bench)):
        for name, folder in folders:
            if not folder.is_dir():
                raise PackError(f"{folder}: folder not found")
            resolved = folder.resolve()
            if out.resolve() == resolved or resolved in out.resolve().parents or out.resolve() in resolved.parents:
                raise PackError(f"{out}: the output folder must lie outside the source {folder}")
            key = f"{kind}/{name}"
            if key in seen:
                raise PackError(f"{folder}: same folder name as {seen[key]} (both would be packed as {key})")
            seen[key] = folder
            images = _images_under(folder)
            if not images:
                raise PackError(f"{folder}: no images found")
            stems: dict[Path, Path] = {}
            for src in images:
                stem = Path(kind) / name / src.relative_to(folder).with_suffix("")
                if stem in stems:
                    raise PackError(f"{src}: same name as {stems[stem]} apart from the suffix")
                stems[stem] = src
                jobs.append((src, stem))
    return jobs


def fit_training(packed: list[Packed], is_train: list[bool], limit: int) -> int:
    """How many training images, taken in packing order, fit in ``limit`` bytes beside every benchmark image.

    Packing order is the order of the training folders given, each folder's images by sorted name, so
    the first folders are kept whole and the cut falls in a later one; the kept images are always a
    prefix of that order (the same sources and budget always give the same choice).
    """
    room = limit - sum(p.bytes for p, t in zip(packed, is_train) if not t)
    if room < 0:
        raise PackError(f"the benchmark sets alone are {(limit - room) / 2**20:.2f} MiB, over the budget of "
                        f"{limit / 2**20:.2f} MiB (pack fewer sets or raise --budget-mib)")
    kept = 0
    for p in (p for p, t in zip(packed, is_train) if t):
        if p.bytes > room:
            break
        room -= p.bytes
        kept += 1
    if kept == 0:
        raise PackError(f"not one training image fits the budget of {limit / 2**20:.2f} MiB beside the benchmark sets")
    return kept


def _manifest(packed: list[Packed], left_out: list[tuple[Path, Path]], train: list[Path],
              bench: list[tuple[str, Path]], staging: Path, budget: int, fit: bool) -> dict:
    return {
        "total_bytes": sum(p.bytes for p in packed),
        "budget_bytes": budget,
        "fit": fit,
        "train_dirs": [f"train/{f.name}" for f in train],
        "benchmark_sets": [name for name, _ in bench],
        "files": [asdict(p) | {"packed": str(Path(p.packed).relative_to(staging))} for p in packed],
        # training images --fit left out, in packing order: the run's data is the files above only
        "left_out": [{"source": str(src), "packed": str(stem)} for src, stem in left_out],
    }


def pack(train: list[Path], bench: list[tuple[str, Path]], out: Path, budget_mib: float, force: bool,
         jobs: int = 1, fit: bool = False) -> dict:
    """Build the pack; returns the manifest. PackError on bad input or a pack over the budget.

    The budget counts the packed images and manifest.json. With ``fit``, training images are left
    out from the end of the packing order until the pack fits (:func:`fit_training`); the benchmark
    sets are always packed whole.
    """
    if not features.check("webp"):
        raise PackError("this Pillow was built without WebP support")
    if out.exists() and not out.is_dir():
        raise PackError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PackError(f"{out}: already exists and is not empty (use --force to replace it)")
    todo = plan(train, bench, out)
    budget = int(budget_mib * 2**20)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would carry over to the finished pack
    try:
        sources, targets = [src for src, _ in todo], [staging / stem for _, stem in todo]
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                packed = list(pool.map(pack_image, sources, targets, chunksize=4))
        else:
            packed = list(map(pack_image, sources, targets))
        left_out: list[tuple[Path, Path]] = []
        if fit:
            # Listing every image as packed gives the largest manifest: moving an entry to left_out shrinks it.
            most = len(json.dumps(_manifest(packed, [], train, bench, staging, budget, fit), indent=1).encode())
            is_train = [stem.parts[0] == "train" for _, stem in todo]
            kept = fit_training(packed, is_train, budget - most)
            train_idx = [i for i, t in enumerate(is_train) if t]
            dropped = set(train_idx[kept:])
            for i in sorted(dropped):
                Path(packed[i].packed).unlink()
                left_out.append(todo[i])
            packed = [p for i, p in enumerate(packed) if i not in dropped]
            for folder in sorted((staging / "train").rglob("*"), reverse=True):  # deepest first
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()  # a wholly left-out folder would reach the trainer empty
        manifest = _manifest(packed, left_out, train, bench, staging, budget, fit)
        text = json.dumps(manifest, indent=1)
        total = manifest["total_bytes"] + len(text.encode())
        if total > budget:
            raise PackError(f"{out}: the pack would be {total / 2**20:.1f} MiB, over the budget of {budget_mib:g} MiB "
                            "(pack fewer folders, raise --budget-mib or leave training images out with --fit)")
        (staging / "manifest.json").write_text(text)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def summary(manifest: dict, out: Path) -> str:
    lines = []
    groups: dict[str, list[dict]] = {}
    for f in manifest["files"]:
        parts = Path(f["packed"]).parts
        groups.setdefault("/".join(parts[:2]), []).append(f)
    for name, files in groups.items():
        src = sum(Path(f["source"]).stat().st_size for f in files)
        dst = sum(f["bytes"] for f in files)
        kinds = ", ".join(f"{sum(1 for f in files if f['format'] == k)} {k}" for k in ("webp", "png")
                          if any(f["format"] == k for f in files))
        lines.append(f"{name}: {len(files)} images ({kinds}), {src / 2**20:.1f} MiB -> {dst / 2**20:.1f} MiB")
    if manifest["left_out"]:
        lines.append(f"left out to fit the budget: {len(manifest['left_out'])} training images, from "
                     f"{manifest['left_out'][0]['source']} on (listed in manifest.json)")
    lines.append(f"total: {manifest['total_bytes'] / 2**20:.1f} MiB ({manifest['total_bytes']} bytes) in {out}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train", nargs="*", type=Path, metavar="SRC",
                   help="training image folders (default: ../shared/datasets/train/T91 and BSD200)")
    p.add_argument("--bench", nargs="*", type=named_folder, default=None, metavar="[NAME=]SET",
                   help="benchmark set folders, packed with their HR/LR structure under their name or NAME "
                        "(default: Set5 and Set14 from ../shared/datasets/benchmark; give --bench alone for none)")
    p.add_argument("--out", type=Path, required=True, help="pack folder to create (e.g. .pack, ignored by git)")
    p.add_argument("--budget-mib", type=float, default=60.0, help="fail if the pack exceeds this (default 60 MiB)")
    p.add_argument("--fit", action="store_true",
                   help="instead of failing over --budget-mib, leave out training images from the end (the last "
                        "folder's last names first) until the pack fits; manifest.json lists them")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--jobs", type=int, default=1, help="processes encoding images (default 1)")
    args = p.parse_args(argv)
    train = args.train or list(DEFAULT_TRAIN)
    bench = [named_folder(f) for f in DEFAULT_BENCH] if args.bench is None else args.bench
    try:
        manifest = pack(train, bench, args.out, args.budget_mib, args.force, args.jobs, args.fit)
    except PackError as exc:
        print(f"pack_data: error: {exc}", file=sys.stderr)
        return 2
    print(summary(manifest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
