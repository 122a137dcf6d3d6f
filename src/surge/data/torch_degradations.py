"""The real-world degradation model of :mod:`surge.data.degradations`, batched in torch on any device.

Same recipe and parameter ranges as the CPU reference (``degrade``), run on a whole batch of HR
crops at once on the training device: per-sample blur kernels (the CPU module's own
``random_kernel``/``sinc_kernel``, so every kernel type and its parameter law are the reference's)
applied by one grouped convolution per kernel size with numpy-style reflect padding;
area/bilinear/bicubic resizes (``F.interpolate``, antialiased per sample with
``antialias_prob``); Gaussian and Poisson noise (colour or gray) drawn on the device; JPEG by
:mod:`surge.data.torch_jpeg` with a per-sample quality.

Differences from the CPU reference, all deliberate:

* the first- and second-order resize *factor* (hence the intermediate size) is drawn once per
  batch, as in Real-ESRGAN's own GPU pipeline, because a batch is one tensor; every other choice
  (kernel, resize mode, antialias, noise kind/level/colour, JPEG quality, order of the final
  steps, clean sample) is per sample. Each sample's LR therefore follows the reference's law;
  samples of one batch share the intermediate size;
* JPEG is the torch simulation (within ~44-47 dB of Pillow's decode, same blockiness);
* the random draws differ: parameters come from a ``numpy.random.Generator`` (identical on every
  device), noise from a ``torch.Generator`` on the batch's device (CPU and CUDA streams differ).

The clean share (``clean_prob``) gets MATLAB bicubic LR (``imresize_torch``, float, no
intermediate rounding), rounded to 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from surge.data import torch_jpeg
from surge.data.degradations import DegradationConfig, OrderConfig, random_kernel, sinc_kernel
from surge.imaging.bicubic import resize_matrix

_GRAY = (0.299, 0.587, 0.114)


@lru_cache(maxsize=8)
def _gray_weights(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(_GRAY, dtype=dtype, device=device).view(1, 3, 1, 1)


def upload(arr: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A numpy array on ``device``; to CUDA through pinned memory without a stream sync (the
    prefetch thread would otherwise wait for all its queued work at every parameter copy)."""
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t.to(dtype) if dtype is not None else t
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats rounded to the 8-bit grid as the CPU pipeline's ``to_uint8`` (half up), still in [0, 1]."""
    return torch.floor(x.clamp(0, 1) * 255 + 0.5) / 255


def reflect_index(n: int, pad: int, device) -> torch.Tensor:
    """Indices of ``numpy.pad(mode="reflect")`` along an axis of length ``n``, reflecting again where pad >= n."""
    i = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.abs() % period
    return torch.where(i >= n, period - i, i)


def _reflect_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if p < min(h, w):
        return F.pad(x, (p, p, p, p), mode="reflect")
    return x[:, :, reflect_index(h, p, x.device)][:, :, :, reflect_index(w, p, x.device)]


class _Rows:
    """Samples ``idx`` of a batch of ``n``: taken from, then put back into, batch tensors.

    The index is uploaded once, through ``upload``'s pinned buffer: indexing a CUDA tensor with a
    Python list copies the list from pageable memory and waits for the stream. All ``n`` samples
    need no index at all.
    """

    def __init__(self, idx: list[int], n: int, device: torch.device):
        self.index = None if len(idx) == n else upload(np.asarray(idx, dtype=np.int64), device)

    def take(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.index is None else x[self.index]

    def put(self, out: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return value
        out[self.index] = value
        return out


def filter_batch(x: torch.Tensor, kernels: list[np.ndarray | None]) -> torch.Tensor:
    """Convolve sample i of ``x`` (B, C, H, W) with ``kernels[i]`` (None: unchanged), reflect-padded.

    One grouped convolution per kernel size, so a sample costs what its own kernel costs.
    """
    sizes = sorted({k.shape[0] for k in kernels if k is not None})
    out = x.clone() if sum(k is not None for k in kernels) < len(kernels) or len(sizes) > 1 else x
    c, h, w = x.shape[1:]
    for size in sizes:
        idx = [i for i, k in enumerate(kernels) if k is not None and k.shape[0] == size]
        p, rows = size // 2, _Rows(idx, x.shape[0], x.device)
        sub = _reflect_pad(rows.take(x), p)
        weight = upload(np.stack([kernels[i][::-1, ::-1] for i in idx]), x.device, x.dtype)
        weight = weight.repeat_interleave(c, 0)[:, None]  # (n*C, 1, k, k)
        y = F.conv2d(sub.reshape(1, len(idx) * c, h + 2 * p, w + 2 * p), weight, groups=len(idx) * c)
        out = rows.put(out, y.view(len(idx), c, h, w))
    return out


def resize_batch(x: torch.Tensor, size: tuple[int, int], modes: list[str], antialias: np.ndarray) -> torch.Tensor:
    """Resize every sample to ``size`` (h, w), sample i by ``modes[i]`` (antialiased where ``antialias[i]``)."""
    size = (max(1, size[0]), max(1, size[1]))
    if tuple(x.shape[-2:]) == size and all(m == "area" for m in modes):
        return x  # area at the same size is the identity
    out = x.new_empty(x.shape[0], x.shape[1], *size)
    for key in sorted(set(zip(modes, (bool(a) for a in antialias)))):
        idx = [i for i, k in enumerate(zip(modes, antialias)) if (k[0], bool(k[1])) == key]
        mode, aa = key
        kwargs = {} if mode == "area" else {"align_corners": False, "antialias": aa}
        rows = _Rows(idx, x.shape[0], x.device)
        out = rows.put(out, F.interpolate(rows.take(x), size=size, mode=mode, **kwargs))
    return out


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """N(0, sigma_i^2) per sample (sigma in [0, 1] units); gray samples get one plane for all channels. Clipped."""
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    noise = torch.where(gray.view(-1, 1, 1, 1), noise[:, :1].expand_as(noise), noise)
    return (x + noise * sigma.to(x.dtype).view(-1, 1, 1, 1)).clamp_(0, 1)


def poisson_noise(x: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shot noise as the CPU pipeline's ``add_poisson_noise``, per sample: photon count = the image's
    number of distinct 8-bit levels rounded up to a power of two. Clipped."""
    luma = F.conv2d(x, _gray_weights(x.device, x.dtype))
    base = torch.where(gray.view(-1, 1, 1, 1), luma.expand_as(x), x)
    base = torch.round(base.clamp(0, 1) * 255) / 255
    levels = torch.round(base * 255).long().flatten(1)
    # A gray sample's three channels are the same plane, so counting over them is counting the plane.
    present = torch.zeros(x.shape[0], 256, device=x.device).scatter_(1, levels, 1.0)
    count = present.sum(1).clamp(min=2)
    vals = torch.exp2(torch.ceil(torch.log2(count))).view(-1, 1, 1, 1).to(x.dtype)
    noise = torch.poisson(base * vals, generator=gen) / vals - base
    noise = torch.where(gray.view(-1, 1, 1, 1), noise[:, :1].expand_as(noise), noise)
    return (x + noise * scale.to(x.dtype).view(-1, 1, 1, 1)).clamp_(0, 1)


def _jpeg(x: torch.Tensor, quality: np.ndarray) -> torch.Tensor:
    return torch_jpeg.jpeg(x, upload(np.asarray(quality, dtype=np.int64), x.device))


class MatlabBicubic:
    """MATLAB bicubic resize of a batch (``imresize_torch``'s matrices), kept per size and device."""

    def __init__(self):
        self._matrices: dict = {}

    def __call__(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        key = (x.shape[-2], x.shape[-1], size, x.device, x.dtype)
        if key not in self._matrices:
            (h, w), (oh, ow) = x.shape[-2:], size
            self._matrices[key] = tuple(torch.tensor(resize_matrix(n, o, o / n), dtype=x.dtype, device=x.device)
                                        for n, o in ((h, oh), (w, ow)))
        wh, ww = self._matrices[key]
        return wh @ x @ ww.T


@dataclass
class OrderPlan:
    """The random choices of one order for the batch's degraded samples (numpy only: picklable)."""

    kernels: list[np.ndarray | None]
    factor: float  # of the order's base size, once per batch
    modes: list[str]
    antialias: np.ndarray
    gray: np.ndarray
    gauss: np.ndarray  # else Poisson
    sigma: np.ndarray  # Gaussian, in [0, 1] units
    pscale: np.ndarray
    quality: np.ndarray | None  # JPEG at the end of the order, or None


@dataclass
class DegradationPlan:
    """Every random choice :class:`BatchDegrader` makes for one batch, drawn from its numpy
    generator; only the noise samples are left to the device's generator. A pure function of the
    generator's state, made without the pixels, so it can be drawn in another process."""

    clean: np.ndarray  # per sample: bicubic LR, not degraded
    first: OrderPlan | None = None  # None: every sample is clean
    second: OrderPlan | None = None
    final_kernels: list[np.ndarray | None] = field(default_factory=list)
    final_modes: list[str] = field(default_factory=list)
    final_antialias: np.ndarray | None = None
    quality: np.ndarray | None = None
    jpeg_first: np.ndarray | None = None


def plan_degradation(cfg: DegradationConfig, b: int, rng: np.random.Generator) -> DegradationPlan:
    """The choices for a batch of ``b`` samples, drawn in the order the recipe uses them."""
    clean = rng.random(b) < cfg.clean_prob if cfg.clean_prob > 0 else np.zeros(b, bool)
    n = int((~clean).sum())
    if not n:
        return DegradationPlan(clean)
    first = _plan_order(cfg, cfg.first, n, rng, jpeg_last=True)
    second = _plan_order(cfg, cfg.second, n, rng, jpeg_last=False)
    lo, hi = cfg.first.kernel_size
    sinc = rng.random(n) < cfg.final_sinc_prob
    kernels = [sinc_kernel(int(rng.choice(np.arange(lo, hi + 1, 2))), rng.uniform(np.pi / 3, np.pi)) if s else None
               for s in sinc]
    modes, antialias = _plan_modes(cfg, rng, n)
    quality = rng.integers(cfg.second.jpeg_range[0], cfg.second.jpeg_range[1] + 1, size=n)
    jpeg_first = rng.random(n) >= 0.5  # the CPU pipeline's `rng.random() < 0.5` is resize first
    return DegradationPlan(clean, first, second, kernels, modes, antialias, quality, jpeg_first)


def _plan_modes(cfg: DegradationConfig, rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray]:
    names = cfg.resize_modes
    modes = [names[i] for i in rng.integers(len(names), size=n)]
    p = cfg.antialias_prob
    return modes, (rng.random(n) < p if p > 0 else np.zeros(n, bool))


def _plan_order(cfg: DegradationConfig, o: OrderConfig, b: int, rng: np.random.Generator, jpeg_last: bool) -> OrderPlan:
    blur = rng.random(b) < o.blur_prob
    kernels = [random_kernel(rng, o) if k else None for k in blur]
    direction = int(rng.choice(3, p=np.asarray(o.resize_probs)))  # once per batch: one tensor, one size
    factor = (rng.uniform(1, o.resize_range[1]), rng.uniform(o.resize_range[0], 1), 1.0)[direction]
    modes, antialias = _plan_modes(cfg, rng, b)
    gray = rng.random(b) < o.gray_noise_prob
    gauss = rng.random(b) < o.gaussian_noise_prob
    sigma = rng.uniform(*o.noise_range, size=b) / 255
    pscale = rng.uniform(*o.poisson_scale_range, size=b)
    quality = rng.integers(o.jpeg_range[0], o.jpeg_range[1] + 1, size=b) if jpeg_last else None
    return OrderPlan(kernels, factor, modes, antialias, gray, gauss, sigma, pscale, quality)


class BatchDegrader:
    """HR batch (B, 3, H, W) float in [0, 1] -> LR batch (B, 3, H/scale, W/scale) on the 8-bit grid.

    ``degrader(hr, rng, gen)`` is ``degrader.apply(hr, plan_degradation(cfg, B, rng), gen)``: the
    plan (every numpy draw) and the torch work on the device are separable.
    """

    def __init__(self, cfg: DegradationConfig, scale: int = 4):
        self.cfg, self.scale = cfg, scale
        self.bicubic = MatlabBicubic()

    def __call__(self, hr: torch.Tensor, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        return self.apply(hr, plan_degradation(self.cfg, hr.shape[0], rng), gen)

    def apply(self, hr: torch.Tensor, plan: DegradationPlan, gen: torch.Generator) -> torch.Tensor:
        b, _, H, W = hr.shape
        if H % self.scale or W % self.scale:
            raise ValueError(f"HR sides {H}x{W} are not multiples of the scale {self.scale}")
        if len(plan.clean) != b:
            raise ValueError(f"a plan for {len(plan.clean)} samples given a batch of {b}")
        size = (H // self.scale, W // self.scale)
        out = hr.new_empty(b, 3, *size)
        keep = np.flatnonzero(plan.clean).tolist()
        if keep:
            rows = _Rows(keep, b, hr.device)
            out = rows.put(out, to_levels(self.bicubic(rows.take(hr), size)))
        rest = np.flatnonzero(~plan.clean).tolist()
        if rest:
            rows = _Rows(rest, b, hr.device)
            out = rows.put(out, self._degrade(rows.take(hr), plan, gen, size))
        return out

    def _degrade(self, x, plan: DegradationPlan, gen, size):
        b = x.shape[0]
        x = self._order(x, gen, plan.first, base=tuple(x.shape[-2:]))
        x = self._order(x, gen, plan.second, base=size)
        first = np.flatnonzero(plan.jpeg_first).tolist()
        if first:
            rows = _Rows(first, b, x.device)
            x = rows.put(x.clone() if len(first) < b else x, _jpeg(rows.take(x), plan.quality[first]))
        x = filter_batch(resize_batch(x, size, plan.final_modes, plan.final_antialias), plan.final_kernels)
        last = np.flatnonzero(~plan.jpeg_first).tolist()
        if last:
            rows = _Rows(last, b, x.device)
            x = rows.put(x, _jpeg(rows.take(x), plan.quality[last]))
        return to_levels(x)

    def _order(self, x, gen, o: OrderPlan, base):
        x = filter_batch(x, o.kernels)
        x = resize_batch(x, (int(base[0] * o.factor), int(base[1] * o.factor)), o.modes, o.antialias)
        gray, sigma, pscale = (upload(a, x.device) for a in (o.gray, o.sigma, o.pscale))
        g, p = np.flatnonzero(o.gauss).tolist(), np.flatnonzero(~o.gauss).tolist()
        out = torch.empty_like(x)
        if g:
            rows = _Rows(g, x.shape[0], x.device)
            out = rows.put(out, gaussian_noise(rows.take(x), rows.take(sigma), rows.take(gray), gen))
        if p:
            rows = _Rows(p, x.shape[0], x.device)
            out = rows.put(out, poisson_noise(rows.take(x), rows.take(pscale), rows.take(gray), gen))
        if o.quality is not None:
            out = _jpeg(out, o.quality)
        return out


def noise_generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch generator on ``device`` (noise is drawn where the batch is) seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed) % (2**63))


__all__ = ["BatchDegrader", "DegradationPlan", "OrderPlan", "plan_degradation", "MatlabBicubic", "filter_batch", "resize_batch", "gaussian_noise", "poisson_noise", "to_levels",
           "reflect_index", "noise_generator"]
