"""Cost of the real-world degradation model per training sample (surge.data.degradations.degrade).

Times :func:`degrade` on HR crops of natural-image statistics (the first images of a training
folder, or synthetic ones with ``--synthetic``) in one thread, as a data-loader worker runs it,
next to the bicubic LR it replaces. Prints a markdown table: milliseconds per sample (median
over ``--samples`` samples, each a different seed and therefore a different random recipe).

    OMP_NUM_THREADS=1 python benchmarks/degradation.py                    # HR 96, 128, 256
    OMP_NUM_THREADS=1 python benchmarks/degradation.py --synthetic --sizes 96
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from surge.data.degradations import DegradationConfig, degrade
from surge.data.pairs import list_images
from surge.imaging.bicubic import imresize


def crops(size: int, n: int, folder: Path | None) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    if folder is None:
        return [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(n)]
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in list_images(folder)[:20]]
    images = [im for im in images if min(im.shape[:2]) >= size]
    out = []
    for i in range(n):
        im = images[i % len(images)]
        top, left = rng.integers(0, im.shape[0] - size + 1), rng.integers(0, im.shape[1] - size + 1)
        out.append(np.ascontiguousarray(im[top : top + size, left : left + size]))
    return out


def median_ms(fn, items) -> float:
    times = []
    for i, item in enumerate(items):
        t = time.perf_counter()
        fn(i, item)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 256])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--data", type=Path, default=Path("../shared/datasets/train/BSD200"))
    p.add_argument("--synthetic", action="store_true", help="random pixels instead of --data crops")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = DegradationConfig()
    folder = None if args.synthetic or not args.data.is_dir() else args.data
    print(f"crops from {folder or 'synthetic noise'}, 1 thread, median of {args.samples} samples\n")
    print("| HR crop | bicubic LR (ms) | degraded LR (ms) | per batch of 16 (ms) |")
    print("|---|---|---|---|")
    for size in args.sizes:
        items = crops(size, args.samples, folder)
        bicubic = median_ms(lambda i, hr: imresize(hr, 0.25), items)
        real = median_ms(lambda i, hr: degrade(hr, np.random.default_rng([0, 4, i]), cfg), items)
        print(f"| {size}x{size} | {bicubic:.2f} | {real:.1f} | {16 * real:.0f} |")


if __name__ == "__main__":
    main()
