"""A model-selection set that is not a reported benchmark: natural photos, x4 bicubic LR.

    python scripts/make_val_photos.py --out runs/val-photos
    surge eval --model M --data runs/val-photos --sets select25 --metrics psnr ssim niqe

Choices made on Set5/Set14/BSD100 would be tuned to the sets we report, so knobs that are not
trained (the GAN snapshot, the interpolation alpha of `surge interpolate`) are chosen on this set
instead. It holds 25 natural photos, NIQE's domain (its pristine model was fitted on natural
scenes): astronaut, chelsea, coffee, rocket and camera (gray, stored as RGB with R = G = B) from
``skimage.data`` (bundled with scikit-image, no download; see its documentation for each image's
licence), and every 10th image of the BSD200 training folder (sorted by name). Those 20 were seen
in training, which flatters every candidate alike; no test image is used. Texture images
(``skimage.data`` grass, gravel, brick) were tried first and dropped: NIQE is out of its domain
there (gravel moved from 10.5 to 17.0 between two neighbouring GAN checkpoints).

Only ``<out>/select25/HR/<name>.png`` is written (RGB, as decoded): `surge eval` crops an HR-only
set to a multiple of 4 and makes its LR with the MATLAB-exact bicubic, as for the benchmarks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
SET = "select25"


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]


def images(train_dir: Path, every: int) -> dict[str, np.ndarray]:
    out = {name: _rgb(getattr(data, name)()) for name in PHOTOS}
    files = sorted(p for p in train_dir.iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg"))
    if not files:
        raise SystemExit(f"{train_dir}: no training images found")
    for path in files[::every]:
        with Image.open(path) as im:
            out[f"train-{path.stem}"] = np.asarray(im.convert("RGB"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/val-photos", help="root folder; the set is written to OUT/select25")
    p.add_argument("--train-dir", default="../shared/datasets/train/BSD200")
    p.add_argument("--every", type=int, default=10, help="take every N-th training image")
    args = p.parse_args(argv)
    root = Path(args.out) / SET / "HR"
    root.mkdir(parents=True, exist_ok=True)
    chosen = images(Path(args.train_dir), args.every)
    for name, hr in chosen.items():
        Image.fromarray(hr).save(root / f"{name}.png")
    print(f"wrote {len(chosen)} HR images to {root} (surge eval makes their x4 LR)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
