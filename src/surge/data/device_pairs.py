"""Training batches made on the training device (``data.pipeline = "device"``).

The HR images are decoded once and kept on the device as uint8 tensors; each step's batch is cut,
flipped/rotated and degraded there by batched torch ops, so no data-loader process feeds the
accelerator and no pixels cross the bus after start-up.

Determinism: batch ``step`` is a pure function of (seed, step) (and the rank's slice):

* which image, where to crop and which flip/rotation: exactly those of :class:`~surge.data.pairs.PairDataset`
  for the same global sample indices k = step * batch + i (the same numpy streams), so the HR
  crops are bit-identical to the loader pipeline's on every device;
* the LR: bicubic LR is MATLAB bicubic in float (``imresize_torch``), rounded to 8 bits (the loader
  rounds after each axis as MATLAB does with uint8 input: at most one level apart); real-world LR
  is :class:`~surge.data.torch_degradations.BatchDegrader`, its parameters drawn from
  ``numpy.random.default_rng([seed, 5, step, rank])`` (identical on every device) and its noise
  from a ``torch.Generator`` on the device seeded from ``[seed, 6, step, rank]``.

Same device and dtype give identical batches for the same (seed, step); CPU and CUDA give the same
HR and the same degradation parameters, but different noise samples and float rounding.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from surge.data.degradations import DegradationConfig
from surge.data.pairs import _augment, _draw_augmentation
from surge.data.torch_degradations import BatchDegrader, MatlabBicubic, noise_generator, to_levels, upload
from surge.errors import DatasetError

DEVICE_DEGRADATION_STREAM = 5
DEVICE_NOISE_STREAM = 6


class DeviceBatches:
    """(lr, hr) float32 batches in [0, 1], (B, 3, h, w), made on ``device`` from HR images kept there."""

    def __init__(self, images: list[np.ndarray], hr_size: int, device: torch.device | str = "cpu", scale: int = 4,
                 seed: int = 0, augment: bool = True, lr_quantize: bool = True,
                 degradation: DegradationConfig | None = None, rank: int = 0, world_size: int = 1):
        if hr_size % scale:
            raise DatasetError(f"HR crop size {hr_size} is not a multiple of the scale {scale}")
        small = [i for i, im in enumerate(images) if min(im.shape[:2]) < hr_size]
        if small:
            raise DatasetError(f"{len(small)} training image(s) smaller than the {hr_size}px crop")
        self.device = torch.device(device)
        self.images = [torch.tensor(im, device=self.device) for im in images]  # a copy: the arrays may be read-only
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the prefetch thread's stream must see the uploaded images
        self.n, self.hr_size, self.scale, self.seed = len(images), hr_size, scale, seed
        self.augment, self.lr_quantize = augment, lr_quantize
        self.rank, self.world_size = rank, world_size
        self.degrader = BatchDegrader(degradation, scale) if degradation is not None else None
        self._bicubic = MatlabBicubic()
        self._maps = self._dihedral_maps(hr_size).to(self.device)
        self._perm: tuple[int, np.ndarray] | None = None

    @staticmethod
    def _dihedral_maps(s: int) -> torch.Tensor:
        """For op id ``8*hflip + 4*vflip + turns``: the flat source index of every output pixel,
        made by the loader's own ``_augment`` on an index image, so both pipelines agree exactly."""
        idx = np.arange(s * s).reshape(s, s)
        maps = [_augment(idx, (bool(op & 8), bool(op & 4), op & 3)).ravel() for op in range(16)]
        return torch.from_numpy(np.stack(maps))

    def image_index(self, k: int) -> int:
        epoch, pos = divmod(k, self.n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 1, epoch]).permutation(self.n))
        return int(self._perm[1][pos])

    def hr_batch(self, indices: range) -> torch.Tensor:
        """The HR crops of global sample indices ``indices``: (B, 3, s, s) uint8 on the device."""
        s, crops, ops = self.hr_size, [], []
        for k in indices:
            img = self.images[self.image_index(k)]
            rng = np.random.default_rng([self.seed, 2, k])
            top = int(rng.integers(0, img.shape[0] - s + 1))
            left = int(rng.integers(0, img.shape[1] - s + 1))
            crops.append(img[top : top + s, left : left + s])
            hf, vf, turns = _draw_augmentation(rng) if self.augment else (False, False, 0)
            ops.append(8 * hf + 4 * vf + turns)
        hr = torch.stack(crops).view(len(crops), s * s, 3)
        if self.augment:
            index = self._maps[upload(np.asarray(ops, dtype=np.int64), self.device)]
            hr = torch.gather(hr, 1, index[..., None].expand(-1, -1, 3))
        return hr.view(-1, s, s, 3).permute(0, 3, 1, 2)

    def batch(self, step: int, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if global_batch % self.world_size:
            raise DatasetError(f"batch size {global_batch} is not divisible by {self.world_size} processes")
        local = global_batch // self.world_size
        base = step * global_batch + self.rank * local
        hr = self.hr_batch(range(base, base + local)).float().div_(255)
        size = (self.hr_size // self.scale,) * 2
        if self.degrader is not None:
            rng = np.random.default_rng([self.seed, DEVICE_DEGRADATION_STREAM, step, self.rank])
            noise_seed = np.random.default_rng([self.seed, DEVICE_NOISE_STREAM, step, self.rank]).integers(2**63)
            lr = self.degrader(hr, rng, noise_generator(self.device, noise_seed))
        else:
            lr = self._bicubic(hr, size)
            lr = to_levels(lr) if self.lr_quantize else lr.clamp(0, 1)
        return lr.contiguous(), hr.contiguous()

    def steps(self, start_step: int, total_steps: int, global_batch: int,
              prefetch: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of steps ``start_step..total_steps-1``.

        ``prefetch`` > 0: made that many steps ahead by a background thread (on CUDA on its own
        stream), so the Python and kernel-launch work of the next batch overlaps the current
        training step as a loader process's would; the batches are the same either way.
        """
        if prefetch <= 0:
            for step in range(start_step, total_steps):
                yield self.batch(step, global_batch)
            return
        yield from _Prefetcher(self, range(start_step, total_steps), global_batch, prefetch)


class _Prefetcher:
    """Runs ``DeviceBatches.batch`` for each step in a thread, ``depth`` batches ahead of the consumer."""

    def __init__(self, source: DeviceBatches, steps: range, global_batch: int, depth: int):
        self.source, self.steps, self.global_batch = source, steps, global_batch
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        cuda = source.device.type == "cuda"
        self.stream = torch.cuda.Stream(source.device) if cuda else None
        self.thread = threading.Thread(target=self._produce, name="surge-device-batches", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
                for step in self.steps:
                    lr, hr = self.source.batch(step, self.global_batch)
                    event = None
                    if self.stream is not None:
                        event = torch.cuda.Event()
                        event.record(self.stream)
                    if not self._put((lr, hr, event)):
                        return
        except BaseException as exc:  # handed to the training loop, which raises it
            self._put(exc)
            return
        self._put(None)

    def __iter__(self):
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                lr, hr, event = item
                if event is not None:
                    current = torch.cuda.current_stream(self.source.device)
                    current.wait_event(event)
                    lr.record_stream(current)  # memory made on the side stream, used on this one
                    hr.record_stream(current)
                yield lr, hr
        finally:
            self.stop.set()
            self.thread.join(timeout=10)
