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

Each batch is a :class:`BatchPlan` (every numpy draw: image, crop, flip/rotation, blur kernels,
resize modes, noise levels, JPEG qualities; numpy only) made into pixels by :meth:`DeviceBatches.make`.
Plans can be drawn by worker processes (``steps(..., workers=N)``), so the thread that launches
the device work spends no time in numpy or in the interpreter lock for them.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from surge.data.degradations import DegradationConfig
from surge.data.pairs import _augment, _draw_augmentation, draw_crop, epoch_order, sample_rng
from surge.data.torch_degradations import (
    BatchDegrader, DegradationPlan, MatlabBicubic, noise_generator, plan_degradation, to_levels, upload,
)
from surge.errors import DatasetError

DEVICE_DEGRADATION_STREAM = 5
DEVICE_NOISE_STREAM = 6


@dataclass
class BatchPlan:
    """What batch ``step`` will be, without its pixels: numpy only, so a worker process can draw it."""

    step: int
    images: np.ndarray  # index into the training images, per sample
    tops: np.ndarray
    lefts: np.ndarray
    ops: np.ndarray  # 8*hflip + 4*vflip + quarter turns, per sample
    degradation: DegradationPlan | None  # None: bicubic LR
    noise_seed: int


@dataclass
class BatchPlanner:
    """Draws :class:`BatchPlan` s: every random choice of a batch, a pure function of (seed, step, rank).

    Holds only the images' sizes and the recipe, so it pickles cheaply into worker processes.
    """

    shapes: list[tuple[int, int]]
    hr_size: int
    seed: int = 0
    augment: bool = True
    degradation: DegradationConfig | None = None
    rank: int = 0
    world_size: int = 1

    def __post_init__(self):
        self._perm: tuple[int, np.ndarray] | None = None

    def image_index(self, k: int) -> int:
        n = len(self.shapes)
        epoch, pos = divmod(k, n)
        if self._perm is None or self._perm[0] != epoch:  # kept: a batch's samples share an epoch
            self._perm = (epoch, epoch_order(self.seed, n, epoch))
        return int(self._perm[1][pos])

    def local_batch(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise DatasetError(f"batch size {global_batch} is not divisible by {self.world_size} processes")
        return global_batch // self.world_size

    def plan(self, step: int, global_batch: int) -> BatchPlan:
        local = self.local_batch(global_batch)
        base = step * global_batch + self.rank * local
        s, rows = self.hr_size, []
        for k in range(base, base + local):  # the loader's (PairDataset's) draws for sample k
            index = self.image_index(k)
            rng = sample_rng(self.seed, k)
            top, left = draw_crop(rng, self.shapes[index], s)
            hf, vf, turns = _draw_augmentation(rng) if self.augment else (False, False, 0)
            rows.append((index, top, left, 8 * hf + 4 * vf + turns))
        images, tops, lefts, ops = (np.asarray(c, dtype=np.int64) for c in zip(*rows))
        degradation = noise_seed = None
        if self.degradation is not None:
            rng = np.random.default_rng([self.seed, DEVICE_DEGRADATION_STREAM, step, self.rank])
            degradation = plan_degradation(self.degradation, local, rng)
            noise_seed = int(np.random.default_rng([self.seed, DEVICE_NOISE_STREAM, step, self.rank]).integers(2**63))
        return BatchPlan(step, images, tops, lefts, ops, degradation, noise_seed or 0)


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
        self.planner = BatchPlanner([tuple(im.shape[:2]) for im in images], hr_size, seed, augment, degradation,
                                    rank, world_size)
        self.hr_size, self.scale, self.augment, self.lr_quantize = hr_size, scale, augment, lr_quantize
        self.degrader = BatchDegrader(degradation, scale) if degradation is not None else None
        self._bicubic = MatlabBicubic()
        self._maps = self._dihedral_maps(hr_size).to(self.device)

    @staticmethod
    def _dihedral_maps(s: int) -> torch.Tensor:
        """For op id ``8*hflip + 4*vflip + turns``: the flat source index of every output pixel,
        made by the loader's own ``_augment`` on an index image, so both pipelines agree exactly."""
        idx = np.arange(s * s).reshape(s, s)
        maps = [_augment(idx, (bool(op & 8), bool(op & 4), op & 3)).ravel() for op in range(16)]
        return torch.from_numpy(np.stack(maps))

    def hr_batch(self, plan: BatchPlan) -> torch.Tensor:
        """The HR crops of ``plan``: (B, 3, s, s) uint8 on the device."""
        s = self.hr_size
        where = zip(plan.images.tolist(), plan.tops.tolist(), plan.lefts.tolist())
        crops = [self.images[index][top : top + s, left : left + s] for index, top, left in where]
        hr = torch.stack(crops).view(len(crops), s * s, 3)
        if self.augment:
            index = self._maps[upload(plan.ops, self.device)]
            hr = torch.gather(hr, 1, index[..., None].expand(-1, -1, 3))
        return hr.view(-1, s, s, 3).permute(0, 3, 1, 2)

    def plan(self, step: int, global_batch: int) -> BatchPlan:
        return self.planner.plan(step, global_batch)

    def make(self, plan: BatchPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch ``plan`` describes, on the device."""
        hr = self.hr_batch(plan).float().div_(255)
        if plan.degradation is not None:
            lr = self.degrader.apply(hr, plan.degradation, noise_generator(self.device, plan.noise_seed))
        else:
            lr = self._bicubic(hr, (self.hr_size // self.scale,) * 2)
            lr = to_levels(lr) if self.lr_quantize else lr.clamp(0, 1)
        return lr.contiguous(), hr.contiguous()

    def batch(self, step: int, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.make(self.plan(step, global_batch))

    def steps(self, start_step: int, total_steps: int, global_batch: int,
              prefetch: int = 1, workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of steps ``start_step..total_steps-1``.

        ``prefetch`` > 0: made that many steps ahead by a background thread (on CUDA on its own
        stream), so the Python and kernel-launch work of the next batch overlaps the current
        training step as a loader process's would. ``workers`` > 0: the plans (crop positions,
        blur kernels, every numpy draw: about a third of a real-world batch's host time) are
        drawn by that many processes, off the thread that launches the device work. The batches
        are the same either way.
        """
        self.planner.local_batch(global_batch)  # a wrong batch size fails here, not in a worker
        plans = _plans(self.planner, range(start_step, total_steps), global_batch, workers)
        if prefetch <= 0:
            for plan in plans:
                yield self.make(plan)
            return
        yield from _Prefetcher(self, plans, prefetch)


class _PlanSteps(torch.utils.data.Dataset):
    def __init__(self, planner: BatchPlanner, steps: range, global_batch: int):
        self.planner, self.steps, self.global_batch = planner, steps, global_batch

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> BatchPlan:
        return self.planner.plan(self.steps[i], self.global_batch)


def _as_is(plan: BatchPlan) -> BatchPlan:
    return plan  # the default collate would turn the plan's arrays into tensors


def _plans(planner: BatchPlanner, steps: range, global_batch: int, workers: int) -> Iterator[BatchPlan]:
    if workers <= 0 or len(steps) == 0:
        return (planner.plan(step, global_batch) for step in steps)
    loader = torch.utils.data.DataLoader(_PlanSteps(planner, steps, global_batch), batch_size=None, shuffle=False,
                                         num_workers=min(workers, len(steps)), collate_fn=_as_is, prefetch_factor=4)
    return iter(loader)


class _Prefetcher:
    """Runs ``DeviceBatches.make`` for each plan in a thread, ``depth`` batches ahead of the consumer."""

    def __init__(self, source: DeviceBatches, plans: Iterator[BatchPlan], depth: int):
        self.source, self.plans = source, plans
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
                for plan in self.plans:
                    lr, hr = self.source.make(plan)
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
