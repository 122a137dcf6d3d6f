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
complete and within ``--budget-mib`` (default 60); an existing ``--out`` is replaced only with
``--force``. Sources are never modified.
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


def pack(train: list[Path], bench: list[tuple[str, Path]], out: Path, budget_mib: float, force: bool, jobs: int = 1) -> dict:
    """Build the pack; returns the manifest. PackError on bad input or a pack over the budget."""
    if not features.check("webp"):
        raise PackError("this Pillow was built without WebP support")
    if out.exists() and not out.is_dir():
        raise PackError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PackError(f"{out}: already exists and is not empty (use --force to replace it)")
    todo = plan(train, bench, out)
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
        total = sum(p.bytes for p in packed)
        manifest = {
            "total_bytes": total,
            "train_dirs": [f"train/{f.name}" for f in train],
            "benchmark_sets": [name for name, _ in bench],
            "files": [asdict(p) | {"packed": str(Path(p.packed).relative_to(staging))} for p in packed],
        }
        if total > budget_mib * 2**20:
            raise PackError(f"{out}: the pack would be {total / 2**20:.1f} MiB, over the budget of {budget_mib:g} MiB "
                            "(pack fewer folders or raise --budget-mib)")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
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
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--jobs", type=int, default=1, help="processes encoding images (default 1)")
    args = p.parse_args(argv)
    train = args.train or list(DEFAULT_TRAIN)
    bench = [named_folder(f) for f in DEFAULT_BENCH] if args.bench is None else args.bench
    try:
        manifest = pack(train, bench, args.out, args.budget_mib, args.force, args.jobs)
    except PackError as exc:
        print(f"pack_data: error: {exc}", file=sys.stderr)
        return 2
    print(summary(manifest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
