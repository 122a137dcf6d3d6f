"""Regenerate the golden SR outputs of the bundled models (tests/data/golden/<model>.npz).

    python scripts/make_golden.py            # every bundled model that ships
    python scripts/make_golden.py surge-x4   # one

Input: a 128x128 crop of scikit-image's astronaut photo (its face), downscaled x4 with the
MATLAB-exact bicubic to a 32x32 uint8 LR image. Output: the model's fp32 SR on CPU as float32
HxWxC in [0, 1] (unclamped), through the public path (``surge.load_model(...)(x)``). Run it only
when a bundled model's weights change on purpose, or when a deliberate change of the numerics
(e.g. a new inference rewrite) moves outputs; `tests/test_bundled_models.py` fails otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from skimage import data

import surge
from surge.imaging.bicubic import imresize
from surge.models.registry import BUNDLED, bundled_path

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden"
CROP = (slice(40, 168), slice(176, 304))  # rows, cols of the astronaut's face


def golden_lr() -> np.ndarray:
    return imresize(np.ascontiguousarray(data.astronaut()[CROP]), 0.25)


def golden_sr(model_name: str, lr: np.ndarray) -> np.ndarray:
    model = surge.load_model(model_name, device="cpu", precision="fp32")
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255)
    with torch.inference_mode():
        return model(x)[0].permute(1, 2, 0).numpy().astype(np.float32)


def main(names: list[str]) -> int:
    names = names or [n for n in BUNDLED if bundled_path(n) is not None]
    lr = golden_lr()
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        sr = golden_sr(name, lr)
        path = GOLDEN_DIR / f"{name}.npz"
        np.savez_compressed(path, lr=lr, sr=sr)
        print(f"wrote {path} (LR {lr.shape[1]}x{lr.shape[0]} -> SR {sr.shape[1]}x{sr.shape[0]}, {path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
