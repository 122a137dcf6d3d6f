"""Deterministic training pairs from folders of HR images.

Determinism by construction: the k-th sample of a run (k = step * batch + i) is a pure
function of (seed, k) -- which image, where to crop, which flip/rotation. So a resumed run
sees exactly the samples an uninterrupted one would, with any number of loader workers or
data-parallel ranks, and the only "data position" a checkpoint needs is the step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from surge.errors import DatasetError
from surge.imaging.bicubic import imresize

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


@dataclass
class LoadReport:
    loaded: int
    skipped_unreadable: list[str]
    skipped_small: list[str]

    def summary(self) -> str:
        return (
            f"{self.loaded} training images loaded, {len(self.skipped_unreadable)} unreadable "
            f"and {len(self.skipped_small)} too small skipped"
        )


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_hr_images(folders: list[str | Path], min_size: int) -> tuple[list[np.ndarray], LoadReport]:
    """Decode every image once (the 291-image set is ~70 MB of pixels) as RGB uint8."""
    images, unreadable, small = [], [], []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: training folder not found")
        for path in list_images(folder):
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"))
            except Exception as exc:  # a corrupt file must not stop a long run
                log.warning("skipping unreadable training image %s: %s", path, exc)
                unreadable.append(str(path))
                continue
            if min(arr.shape[:2]) < min_size:
                small.append(str(path))
                continue
            images.append(arr)
    if not images:
        raise DatasetError(f"no usable training images (>= {min_size}px) in {', '.join(map(str, folders))}")
    return images, LoadReport(len(images), unreadable, small)


class PairDataset(torch.utils.data.Dataset):
    """Map-style dataset over *global sample indices*; item k -> (lr, hr) float CHW in [0, 1].

    ``lr_quantize``: round LR to 8 bits, as benchmark LR files are 8-bit PNGs, so the
    network trains on the input distribution it is evaluated on.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        hr_size: int,
        scale: int = 4,
        seed: int = 0,
        augment: bool = True,
        lr_quantize: bool = True,
    ):
        if hr_size % scale:
            raise DatasetError(f"HR crop size {hr_size} is not a multiple of the scale {scale}")
        self.images, self.hr_size, self.scale = images, hr_size, scale
        self.seed, self.augment, self.lr_quantize = seed, augment, lr_quantize

    def __len__(self) -> int:  # effectively infinite; the sampler decides which k are used
        return 2**62

    def image_index(self, k: int) -> int:
        # Epoch-wise permutation: every image once per epoch, in a seeded order.
        n = len(self.images)
        epoch, pos = divmod(k, n)
        perm = np.random.default_rng([self.seed, 1, epoch]).permutation(n)
        return int(perm[pos])

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[self.image_index(k)]
        rng = np.random.default_rng([self.seed, 2, k])
        s = self.hr_size
        top = int(rng.integers(0, img.shape[0] - s + 1))
        left = int(rng.integers(0, img.shape[1] - s + 1))
        hr = img[top : top + s, left : left + s]
        if self.augment:
            if rng.random() < 0.5:
                hr = hr[:, ::-1]
            if rng.random() < 0.5:
                hr = hr[::-1, :]
            hr = np.rot90(hr, k=int(rng.integers(0, 4)))
        hr = np.ascontiguousarray(hr)
        lr = imresize(hr, scale=1 / self.scale)  # uint8 in -> uint8 out: quantised like benchmark LR
        if not self.lr_quantize:
            lr = np.clip(imresize(hr.astype(np.float64) / 255, scale=1 / self.scale), 0, 1) * 255
        return _to_tensor(lr), _to_tensor(hr)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255)


class StepSampler(torch.utils.data.Sampler[int]):
    """Yields the global sample indices of steps ``start_step, start_step+1, ...``.

    With data parallelism each rank takes its own slice of the global batch.
    """

    def __init__(self, start_step: int, total_steps: int, global_batch: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise DatasetError(f"batch size {global_batch} is not divisible by {world_size} processes")
        self.start_step, self.total_steps = start_step, total_steps
        self.global_batch, self.rank, self.local = global_batch, rank, global_batch // world_size

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            base = step * self.global_batch + self.rank * self.local
            yield from range(base, base + self.local)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.local
