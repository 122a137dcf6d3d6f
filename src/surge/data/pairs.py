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

from surge.data.degradations import DegradationConfig, degrade
from surge.errors import DatasetError
from surge.imaging.bicubic import imresize

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
# Seed tag of the degradation draws, (seed, tag, k): apart from the epoch order (1), the crops (2)
# and the trainer's own streams, so turning degradation on changes no other random choice.
DEGRADATION_STREAM = 4


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


def _read_rgb(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # a corrupt file must not stop a long run
        log.warning("skipping unreadable training image %s: %s", path, exc)
        return None


def _find_lr(hr_path: Path, lr_folder: Path, hr_folder: Path, scale: int) -> Path | None:
    # Accept the common namings: same relative name, or "<stem>x4" (DIV2K, SelfExSR), any suffix.
    rel = hr_path.relative_to(hr_folder).with_suffix("")
    for stem in (rel.name, f"{rel.name}x{scale}"):
        for cand in sorted((lr_folder / rel.parent).glob(f"{stem}.*")):
            if cand.suffix.lower() in IMAGE_SUFFIXES:
                return cand
    return None


def load_training_pairs(
    hr_folders: list[str | Path], lr_folders: list[str | Path] | None, min_size: int, scale: int = 4
) -> tuple[list[np.ndarray], list[np.ndarray] | None, LoadReport]:
    """Decode every training image once (the 291-image set is ~70 MB of pixels), RGB uint8.

    With ``lr_folders`` (one per HR folder) the LR images are read instead of made: an HR image
    whose LR is missing, unreadable or not exactly 1/scale of the HR (after cropping HR to a
    multiple of ``scale``) is skipped and counted as unreadable.
    """
    if lr_folders and len(lr_folders) != len(hr_folders):
        raise DatasetError(f"{len(lr_folders)} LR folders given for {len(hr_folders)} HR folders: give one per HR folder")
    images, lrs, unreadable, small = [], [], [], []
    for i, folder in enumerate(map(Path, hr_folders)):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: training folder not found")
        lr_folder = Path(lr_folders[i]) if lr_folders else None
        if lr_folder is not None and not lr_folder.is_dir():
            raise DatasetError(f"{lr_folder}: LR training folder not found")
        for path in list_images(folder):
            arr = _read_rgb(path)
            if arr is None:
                unreadable.append(str(path))
                continue
            if min(arr.shape[:2]) < min_size:
                small.append(str(path))
                continue
            if lr_folder is not None:
                lr_path = _find_lr(path, lr_folder, folder, scale)
                lr = _read_rgb(lr_path) if lr_path is not None else None
                h, w = lr.shape[:2] if lr is not None else (0, 0)
                if lr is None or (h * scale, w * scale) != (arr.shape[0] // scale * scale, arr.shape[1] // scale * scale):
                    log.warning("skipping %s: no matching x%d LR image in %s", path, scale, lr_folder)
                    unreadable.append(str(path))
                    continue
                lrs.append(lr)
            images.append(arr)
    if not images:
        raise DatasetError(f"no usable training images (>= {min_size}px) in {', '.join(map(str, hr_folders))}")
    return images, (lrs if lr_folders else None), LoadReport(len(images), unreadable, small)



class PairDataset(torch.utils.data.Dataset):
    """Map-style dataset over *global sample indices*; item k -> (lr, hr) float CHW in [0, 1].

    ``lr_quantize``: round LR to 8 bits, as benchmark LR files are 8-bit PNGs, so the
    network trains on the input distribution it is evaluated on.

    ``degradation``: make LR from the HR crop by the real-world model of
    :mod:`surge.data.degradations` instead of bicubic. It draws from its own stream
    ``(seed, DEGRADATION_STREAM, k)``, so the HR crops and augmentations are those of a bicubic run.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        hr_size: int,
        scale: int = 4,
        seed: int = 0,
        augment: bool = True,
        lr_quantize: bool = True,
        lr_images: list[np.ndarray] | None = None,
        degradation: DegradationConfig | None = None,
    ):
        if hr_size % scale:
            raise DatasetError(f"HR crop size {hr_size} is not a multiple of the scale {scale}")
        if degradation is not None and lr_images is not None:
            raise DatasetError("LR images and a degradation model were both given: the degradation makes the LR")
        self.images, self.hr_size, self.scale = images, hr_size, scale
        self.seed, self.augment, self.lr_quantize = seed, augment, lr_quantize
        self.lr_images, self.degradation = lr_images, degradation

    def __len__(self) -> int:  # effectively infinite; the sampler decides which k are used
        return 2**62

    def image_index(self, k: int) -> int:
        n = len(self.images)
        epoch, pos = divmod(k, n)
        return int(epoch_order(self.seed, n, epoch)[pos])

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.image_index(k)
        rng = sample_rng(self.seed, k)
        if self.lr_images is not None:
            lr, hr = self._crop_given_lr(index, rng)
        else:
            img, s = self.images[index], self.hr_size
            top, left = draw_crop(rng, img.shape[:2], s)
            hr, lr = img[top : top + s, left : left + s], None
        if self.augment:
            ops = _draw_augmentation(rng)
            hr = _augment(hr, ops)
            lr = _augment(lr, ops) if lr is not None else None
        hr = np.ascontiguousarray(hr)
        if self.degradation is not None:
            deg_rng = np.random.default_rng([self.seed, DEGRADATION_STREAM, k])
            # Drawn only when clean_prob > 0, so clean_prob = 0 reproduces the samples of earlier runs.
            clean = self.degradation.clean_prob > 0 and deg_rng.random() < self.degradation.clean_prob
            if not clean:
                lr = degrade(hr, deg_rng, self.degradation, self.scale)
        if lr is None:
            lr = imresize(hr, scale=1 / self.scale)  # uint8 in -> uint8 out: quantised like benchmark LR
            if not self.lr_quantize:
                lr = np.clip(imresize(hr.astype(np.float64) / 255, scale=1 / self.scale), 0, 1) * 255
        return _to_tensor(lr), _to_tensor(hr)

    def _crop_given_lr(self, index: int, rng) -> tuple[np.ndarray, np.ndarray]:
        lr_img, hr_img, s = self.lr_images[index], self.images[index], self.hr_size // self.scale
        top = int(rng.integers(0, lr_img.shape[0] - s + 1))
        left = int(rng.integers(0, lr_img.shape[1] - s + 1))
        r = self.scale
        return lr_img[top : top + s, left : left + s], hr_img[r * top : r * (top + s), r * left : r * (left + s)]


# The sampling law of sample k, shared with surge.data.device_pairs (which must cut the same crops).
def epoch_order(seed: int, n: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` images in ``epoch``: every image once per epoch, seeded."""
    return np.random.default_rng([seed, 1, epoch]).permutation(n)


def sample_rng(seed: int, k: int) -> np.random.Generator:
    """Sample k's crop and augmentation draws (in that order)."""
    return np.random.default_rng([seed, 2, k])


def draw_crop(rng: np.random.Generator, shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(top, left) of a ``size`` crop of an image of ``shape`` (h, w)."""
    return int(rng.integers(0, shape[0] - size + 1)), int(rng.integers(0, shape[1] - size + 1))


def _draw_augmentation(rng) -> tuple[bool, bool, int]:
    """(horizontal flip, vertical flip, quarter turns), drawn once per sample."""
    return rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(0, 4))


def _augment(img: np.ndarray, ops: tuple[bool, bool, int]) -> np.ndarray:
    hflip, vflip, turns = ops
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1, :]
    return np.rot90(img, k=turns)


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
