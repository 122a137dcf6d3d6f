"""LR statistics of the batched torch degradation (device pipeline) against the CPU reference.

On the same HR crops (64 px crops of scikit-image's astronaut, chelsea, coffee and rocket), the
reference (``surge.data.degradations.degrade``, per sample, as the loader runs it) and the torch
``BatchDegrader`` (batches of ``--batch``) each make LR; the statistic is each LR's PSNR to the
MATLAB-bicubic LR of its HR (how far the degradation moved it; capped at 50 dB). The clean share
is left out (``clean_prob = 0``): it is exact bicubic in both. Prints, per recipe and seed, the
mean, median and spread of both and their differences: what tests/test_device_data.py bounds.

    python benchmarks/device_lr_stats.py [--seeds 0 1 2 3] [--crops 160]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from surge.data.degradations import DegradationConfig, degrade  # noqa: E402
from surge.data.torch_degradations import BatchDegrader  # noqa: E402
from surge.imaging.bicubic import imresize  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def natural_crops(count: int = 160, size: int = 64) -> list[np.ndarray]:
    from skimage import data

    photos = [np.ascontiguousarray(getattr(data, n)()) for n in ("astronaut", "chelsea", "coffee", "rocket")]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(count):
        im = photos[i % len(photos)]
        t, l = rng.integers(0, im.shape[0] - size), rng.integers(0, im.shape[1] - size)
        crops.append(np.ascontiguousarray(im[t : t + size, l : l + size]))
    return crops


def psnr_to_bicubic(lr: np.ndarray, bic: np.ndarray) -> float:
    mse = np.mean((lr.astype(np.float64) - bic.astype(np.float64)) ** 2) / 255**2
    return min(50.0, 10 * np.log10(1 / max(mse, 1e-12)))


def lr_statistics(crops, cfg: DegradationConfig, seed: int, batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """PSNR(LR, bicubic of HR) per crop: (reference, torch). One torch thread (small ops)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bic = [imresize(c, 1 / 4) for c in crops]
        ref = []
        for k, c in enumerate(crops):
            rng = np.random.default_rng([seed, k])
            clean = cfg.clean_prob > 0 and rng.random() < cfg.clean_prob  # as PairDataset draws it
            ref.append(psnr_to_bicubic(bic[k] if clean else degrade(c, rng, cfg), bic[k]))
        degrader, dev = BatchDegrader(cfg), []
        hr = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
        for j in range(0, len(crops), batch):
            lr = degrader(hr[j : j + batch], np.random.default_rng([seed, 1, j]), torch.Generator().manual_seed(seed + j))
            lr8 = (lr * 255).round().permute(0, 2, 3, 1).numpy()
            dev += [psnr_to_bicubic(lr8[i], bic[j + i]) for i in range(lr8.shape[0])]
        return np.array(ref), np.array(dev)
    finally:
        torch.set_num_threads(threads)


def recipes() -> dict[str, DegradationConfig]:
    from surge.training.config import load_config

    gpu = load_config(CONFIGS / "gpu-real-psnr.toml").data.degradation
    return {"gpu-real-psnr (clean_prob 0)": dataclasses.replace(gpu, clean_prob=0.0),
            "Real-ESRGAN defaults": DegradationConfig()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--crops", type=int, default=160)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args(argv)
    crops = natural_crops(args.crops)
    print("| recipe | seed | reference mean / median / sd (dB) | torch mean / median / sd (dB) | "
          "mean diff | median diff | sd ratio |\n|---|---|---|---|---|---|---|")
    for name, cfg in recipes().items():
        for seed in args.seeds:
            r, d = lr_statistics(crops, cfg, seed, args.batch)
            print(f"| {name} | {seed} | {r.mean():.2f} / {np.median(r):.2f} / {r.std():.2f} | "
                  f"{d.mean():.2f} / {np.median(d):.2f} / {d.std():.2f} | {d.mean() - r.mean():+.2f} | "
                  f"{np.median(d) - np.median(r):+.2f} | {d.std() / r.std():.2f} |", flush=True)


if __name__ == "__main__":
    main()
