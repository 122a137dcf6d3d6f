"""A tiny data set for the device scripts: photo-like sources and scripts/pack_data.py run on them."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from surge.imaging.bicubic import imresize

REPO = Path(__file__).resolve().parents[1]


def photo(rng, h: int, w: int) -> np.ndarray:
    """A smooth random image (noise upsampled), so bicubic LR/HR behave like photos."""
    small = (rng.random((h // 4 + 1, w // 4 + 1, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def tiny_sources(root: Path, odd_files: bool = False) -> Path:
    """root/train/A (four 72x80 PNGs: room for 64 px crops and the degradation kernels) and
    root/bench/Set5, root/bench/Set14 (two HR 32x40 + LR_bicubic_X4 each); returns ``root``.

    ``odd_files`` adds what packing must get right: a BMP and a dot in a stem in train/A, and a
    grayscale pair in Set14 (as Set14's bridge: must stay mode L).
    """
    rng = np.random.default_rng(0)
    train = root / "train" / "A"
    train.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(photo(rng, 72, 80)).save(train / f"{i}.png")
    if odd_files:
        Image.fromarray(photo(rng, 36, 36)).save(train / "bmp.bmp")
        Image.fromarray(photo(rng, 36, 40)).save(train / "a.b.png")
    for name in ("Set5", "Set14"):
        (root / "bench" / name / "HR").mkdir(parents=True)
        (root / "bench" / name / "LR_bicubic_X4").mkdir()
        for i in range(2):
            hr = photo(rng, 32, 40)
            if odd_files and name == "Set14" and i == 1:
                hr = hr[..., 0]
            Image.fromarray(hr).save(root / "bench" / name / "HR" / f"img{i}.png")
            Image.fromarray(imresize(hr, 0.25)).save(root / "bench" / name / "LR_bicubic_X4" / f"img{i}x4.png")
    return root


def pack(sources: Path, out: Path, *extra: str, bench: tuple[str, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess:
    """Pack train/A, Set5 and Set14 of :func:`tiny_sources` (plus ``bench``: more ``[NAME=]DIR`` sets) into ``out``."""
    cmd = [sys.executable, str(REPO / "scripts" / "pack_data.py"), str(sources / "train" / "A"),
           "--bench", str(sources / "bench" / "Set5"), str(sources / "bench" / "Set14"), *bench, "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
