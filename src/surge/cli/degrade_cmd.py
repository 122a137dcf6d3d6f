"""``surge degrade``: a fixed real-world benchmark made from benchmark sets' HR images.

For each set it writes ``<out>/<Set>/HR/<name>.png`` (the HR cropped to a multiple of 4),
``<out>/<Set>/LR_degraded_X4/<name>x4.png`` (a layout ``surge eval --data <out>`` reads) and
``<out>/<Set>/recipe.json``: the recipe's steps, the seed, each image's drawn parameters and
the SHA-256 of each image's pixels, so a rerun can be checked bit for bit.

The recipe (``bench-v1``, :data:`surge.data.degradations.BENCH_V1`) is fixed and is not the
training degradation, and each image's parameters depend only on the seed and
``<Set>/<name>``, so adding or removing images does not change the others.

A set is built in a temp folder next to its destination and renamed into place: an
interrupted run leaves the previous output or none, never half a set. Inputs are never
written: an output set folder that is, contains or lies inside its input set is refused, and
so is an existing folder that ``surge degrade`` did not write; an earlier ``surge degrade``
output is replaced only with ``--overwrite`` (as ``surge upscale`` and ``interpolate`` do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from surge.cli.messages import printable
from surge.atomic import _umask
from surge.errors import DatasetError, ImageReadError, ImageWriteError

RECIPES = ("bench-v1",)
LR_DIR = "LR_degraded_X{s}"
SCALE = 4
DEFAULT_DATA = Path("..") / "shared" / "datasets" / "benchmark"


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None,
                   help=f"benchmark root holding one folder per set (default: {DEFAULT_DATA} if it exists)")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"], metavar="SET", help="sets to degrade (default: %(default)s)")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DIR", help="output root: DIR/<Set>/HR and DIR/<Set>/LR_degraded_X4")
    p.add_argument("--recipe", choices=RECIPES, default="bench-v1", help="degradation recipe (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-image parameters (default: %(default)s, the published benchmark)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier `surge degrade` output of the same sets")


def run(args: argparse.Namespace) -> int:
    from surge.evaluation.datasets import find_set

    data = args.data if args.data is not None else DEFAULT_DATA
    if not data.is_dir():
        raise DatasetError(f"{data}: benchmark folder not found (pass --data DIR with one folder per set)")
    if args.seed < 0:
        raise DatasetError(f"--seed must be >= 0, got {args.seed}")
    sources = [find_set(data, name) for name in args.sets]  # every set checked before any writing
    plan = [(src, args.out / src.name) for src in sources]
    for src, dst in plan:
        check_target(src, dst, overwrite=args.overwrite)
    for src, dst in plan:
        n = write_set(src, dst, seed=args.seed)
        print(printable(f"{src.name}: {n} images -> {dst} ({args.recipe}, seed {args.seed})"), flush=True)
    return 0


def hr_images(set_dir: Path) -> list[Path]:
    """The HR images of a set folder, as ``surge eval`` finds them (``HR/``, ``GTmod12/`` or the folder itself)."""
    from surge.evaluation.datasets import HR_DIRS, IMAGE_SUFFIXES

    hr_dir = next((set_dir / d for d in HR_DIRS if (set_dir / d).is_dir()), set_dir)
    files = sorted(p for p in hr_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{hr_dir}: no images found")
    stems = [p.stem for p in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise DatasetError(f"{hr_dir}: several files named {twice[0]}.* (outputs are named by stem)")
    return files


def check_target(src: Path, dst: Path, overwrite: bool = False) -> None:
    """Refuse an output set folder that would write into the inputs, over foreign files, or
    (without ``overwrite``) over an earlier ``surge degrade`` output."""
    s, d = src.resolve(), dst.resolve()
    if d == s or d.is_relative_to(s) or s.is_relative_to(d):
        raise ImageWriteError(f"{dst}: output would overlap the input set {src}; choose another --out")
    if dst.exists() and not (dst / "recipe.json").is_file():
        raise ImageWriteError(f"{dst}: exists and was not written by `surge degrade` (no recipe.json); choose another --out")
    if dst.exists() and not overwrite:
        raise ImageWriteError(f"{dst}: exists (an earlier `surge degrade` output); use --overwrite to replace it, "
                              "or choose another --out")


def write_set(src: Path, dst: Path, seed: int) -> int:
    """Degrade one set into ``dst`` (replacing a previous ``surge degrade`` output); returns the image count."""
    files = hr_images(src)  # before creating anything
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    except OSError as exc:
        raise ImageWriteError(f"{dst}: cannot write ({exc.strerror or exc})") from None
    try:
        images = {p.stem: _degrade_file(p, tmp, f"{src.name}/{p.stem}", seed) for p in files}
        (tmp / "recipe.json").write_text(json.dumps(_recipe(src, seed, images), indent=2) + "\n")
        _publish(tmp, dst)
    except OSError as exc:
        raise ImageWriteError(f"{dst}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(images)


def _degrade_file(path: Path, out: Path, key: str, seed: int) -> dict:
    import numpy as np
    from PIL import Image

    from surge.data.degradations import bench_v1, bench_v1_params
    from surge.evaluation.datasets import read_image

    hr = read_image(path)
    h, w = hr.shape[0] // SCALE * SCALE, hr.shape[1] // SCALE * SCALE
    if not (h and w):
        raise ImageReadError(f"{path}: {hr.shape[1]}x{hr.shape[0]} px is smaller than the scale {SCALE}")
    hr = np.ascontiguousarray(hr[:h, :w])
    params = bench_v1_params(seed, key)
    lr = bench_v1(hr, params, SCALE)
    for folder, name, arr in (("HR", f"{path.stem}.png", hr), (LR_DIR.format(s=SCALE), f"{path.stem}x{SCALE}.png", lr)):
        (out / folder).mkdir(exist_ok=True)
        Image.fromarray(arr).save(out / folder / name)
    return {**params, "source": path.name, "hr_size": [w, h], "lr_size": [lr.shape[1], lr.shape[0]],
            "hr_pixels_sha256": _pixels_sha256(hr), "lr_pixels_sha256": _pixels_sha256(lr)}


def _pixels_sha256(arr) -> str:
    # Of the decoded pixels, not the PNG bytes: zlib versions may encode the same pixels differently.
    return hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode() + arr.tobytes()).hexdigest()


def _recipe(src: Path, seed: int, images: dict) -> dict:
    import numpy as np
    import PIL

    from surge import __version__
    from surge.data.degradations import BENCH_V1

    return {
        **BENCH_V1, "seed": seed, "scale": SCALE, "source": str(src), "lr_folder": LR_DIR.format(s=SCALE),
        "made_with": {"surge": __version__, "numpy": np.__version__, "pillow": PIL.__version__, "libjpeg": _libjpeg()},
        "images": images,
    }


def _libjpeg() -> str:
    # The JPEG codec decides the LR pixels: a rerun is bit-identical only with the same one.
    from PIL import features

    turbo = features.version_feature("libjpeg_turbo")
    return f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version_codec('jpg')}"


def _publish(tmp: Path, dst: Path) -> None:
    """Rename the finished set into place; an older ``surge degrade`` output is swapped out, then removed."""
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
    if not dst.exists():
        os.replace(tmp, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
    os.replace(dst, old / dst.name)
    try:
        os.replace(tmp, dst)
    except OSError:
        os.replace(old / dst.name, dst)  # put the previous output back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
