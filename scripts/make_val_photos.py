"""A small model-selection set that is not a benchmark: eight scikit-image photos, x4 bicubic LR.

    python scripts/make_val_photos.py --out runs/val-photos
    surge eval --model M --data runs/val-photos --sets skimage8 --metrics psnr ssim niqe

Choices made on Set5/Set14/BSD100 would be tuned to the sets we report, so knobs that are not
trained (the GAN snapshot, the interpolation alpha of `surge interpolate`) are chosen on these
instead: astronaut, chelsea, coffee, rocket (colour photos), camera (gray), grass, gravel, brick
(textures, where a GAN stage matters most), from ``skimage.data`` (bundled with scikit-image, no
download; see its documentation for each image's licence). Gray images are stored as RGB with
R = G = B. Layout as ``../shared/datasets/benchmark``: ``HR/<name>.png`` cropped to a multiple of
4, ``LR_bicubic_X4/<name>x4.png`` by the MATLAB-exact bicubic (``surge.imaging.imresize``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from surge.imaging.bicubic import imresize

NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "grass", "gravel", "brick")
SET = "skimage8"


def photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    h, w = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
    return np.ascontiguousarray(image[:h, :w, :3])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/val-photos", help="root folder; the set is written to OUT/skimage8")
    args = p.parse_args(argv)
    root = Path(args.out) / SET
    (root / "HR").mkdir(parents=True, exist_ok=True)
    (root / "LR_bicubic_X4").mkdir(exist_ok=True)
    for name in NAMES:
        hr = photo(name)
        lr = imresize(hr, 0.25)
        Image.fromarray(hr).save(root / "HR" / f"{name}.png")
        Image.fromarray(lr).save(root / "LR_bicubic_X4" / f"{name}x4.png")
    print(f"wrote {len(NAMES)} HR/LR pairs to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
