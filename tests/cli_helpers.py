"""Small images and one `surge upscale` call, shared by the CLI test files."""

from pathlib import Path

import numpy as np
from PIL import Image

from surge.cli.main import main


def save_noise(path: Path, h: int, w: int, seed: int = 0, **save_args) -> np.ndarray:
    """A seeded random RGB image of h x w saved at ``path`` (folders made); returns its pixels."""
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **save_args)
    return arr


def upscale(*args, model="bicubic") -> int:
    """`surge upscale ARGS --model MODEL --device cpu --quiet` in this process; its exit status."""
    return main(["upscale", *map(str, args), "--model", str(model), "--device", "cpu", "--quiet"])
