"""Real-world degradations: HR -> LR by blur, resize, noise and JPEG, applied twice.

Bicubic LR is a clean, noise-free input that no phone or web photo resembles; a network
trained only on it sharpens JPEG blocks and noise. Real-ESRGAN's answer (Wang et al., 2021,
"Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data",
arXiv 2107.10833, section 3) is a *second-order* degradation model, reproduced here:

1. first order: blur with a random kernel (isotropic/anisotropic Gaussian, generalized
   Gaussian, plateau, or a sinc low-pass) -> random resize (up/down/keep; area, bilinear
   or bicubic) -> Gaussian or Poisson noise (colour or gray) -> JPEG at a random quality;
2. second order: the same again (blur with probability ``second.blur_prob``, milder ranges),
   its resize relative to the LR size;
3. final: in random order, [resize to the LR size + a sinc filter] and [JPEG].

Differences from Real-ESRGAN: JPEG is Pillow's (integer quality, 4:2:0 chroma), not a
differentiable JPEG; the degradation runs per sample in the data loader (numpy/torch/Pillow on
the CPU) instead of batched on the GPU; the HR target is not USM-sharpened; bilinear/bicubic
resizes can be antialiased (``antialias_prob``, default 0 = Real-ESRGAN's plain resize).

Determinism: :func:`degrade` draws every random choice from the ``numpy.random.Generator`` it
is given, in a fixed order, so with the data pipeline's per-sample generator the LR of sample
``k`` is a pure function of (seed, k) like the rest of a training pair.

:func:`bench_v1` is a separate, fixed recipe for *evaluation* (``surge degrade``); it is
deliberately not the training model, so a model is not scored on its own training recipe.
"""

from __future__ import annotations

import io
import math
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from surge.errors import ConfigError
from surge.imaging.bicubic import imresize
from surge.models.config import dataclass_from_dict

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


# ---------------------------------------------------------------------------------------
# Configuration


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _probability(name: str, value) -> None:
    if not (_is_number(value) and 0 <= value <= 1):
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")


def _pair(cfg, name: str) -> tuple:
    value = getattr(cfg, name)
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_number, value))):
        raise ConfigError(f"{name} must be [low, high], got {value!r}")
    return tuple(value)


def _check_probs(name: str, probs, n: int) -> None:
    if not isinstance(probs, (tuple, list)) or not all(map(_is_number, probs)):
        raise ConfigError(f"{name} must be a list of {n} probabilities, got {probs!r}")
    if len(probs) != n or any(p < 0 for p in probs) or abs(sum(probs) - 1) > 1e-6:
        raise ConfigError(f"{name} must be {n} non-negative probabilities summing to 1, got {probs!r}")


@dataclass(frozen=True)
class OrderConfig:
    """Parameter ranges of one order (blur -> resize -> noise -> JPEG). Defaults: Real-ESRGAN's first order."""

    blur_prob: float = 1.0
    kernel_size: tuple[int, int] = (7, 21)  # odd sizes drawn uniformly in this range
    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1  # a sinc low-pass instead of one of kernel_types
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian shape
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau shape
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5  # else Poisson noise
    noise_range: tuple[float, float] = (1.0, 30.0)  # Gaussian sigma in 8-bit levels
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        for name in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
            _probability(name, getattr(self, name))
        for name in ("kernel_size", "blur_sigma", "betag_range", "betap_range", "resize_range",
                     "noise_range", "poisson_scale_range", "jpeg_range"):
            lo, hi = _pair(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"{name} must be [low, high] with 0 <= low <= high, got {getattr(self, name)!r}")
        lo, hi = self.kernel_size
        if not all(isinstance(v, int) for v in (lo, hi)) or lo % 2 == 0 or hi % 2 == 0 or lo < 3:
            raise ConfigError(f"kernel_size must be odd sizes >= 3, got {self.kernel_size!r}")
        if min(self.blur_sigma) <= 0 or min(self.resize_range) <= 0:
            raise ConfigError("blur_sigma and resize_range must be positive")
        if not (all(isinstance(v, int) for v in self.jpeg_range) and 1 <= self.jpeg_range[0] and self.jpeg_range[1] <= 100):
            raise ConfigError(f"jpeg_range must be integer qualities in [1, 100], got {self.jpeg_range!r}")
        unknown = sorted(set(self.kernel_types) - set(KERNEL_TYPES))
        if unknown:
            raise ConfigError(f"kernel_types: unknown {', '.join(unknown)} (known: {', '.join(KERNEL_TYPES)})")
        _check_probs("kernel_probs", self.kernel_probs, len(self.kernel_types))
        _check_probs("resize_probs", self.resize_probs, 3)


# Real-ESRGAN's second order: milder blur, resize relative to the LR size, less noise.
SECOND_ORDER = OrderConfig(
    blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_probs=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
    noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5),
)


@dataclass(frozen=True)
class DegradationConfig:
    """The ``[data.degradation]`` table of an experiment config (sub-tables ``first``, ``second``).

    ``second.jpeg_range`` is the final JPEG's quality range. ``clean_prob``: share of samples that
    keep the clean MATLAB-bicubic LR instead, so a model for real photos stays faithful on clean
    input too (a model trained on degraded LR only over-sharpens clean LR).

    ``antialias_prob``: chance that a bilinear/bicubic resize is antialiased (torch's
    ``antialias=True``: the kernel widened by the downscale factor, as MATLAB, Pillow, browsers
    and camera pipelines resample). Real-ESRGAN never antialiases (0, the default), so its
    4x downscales point-sample the image: the LR keeps aliased detail that photos downscaled by
    any common software, or integrated by a sensor, do not have. ``area`` is a box average and
    always antialiased. At 0 no random number is drawn for it, so older recipes give the same LR.
    """

    first: OrderConfig = field(default_factory=OrderConfig)
    second: OrderConfig = SECOND_ORDER
    final_sinc_prob: float = 0.8
    resize_modes: tuple[str, ...] = RESIZE_MODES
    clean_prob: float = 0.0
    antialias_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("first", "second"):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, _order_from_dict(value, f"data.degradation.{name}"))
            elif not isinstance(value, OrderConfig):
                raise ConfigError(f"data.degradation.{name} must be a table, got {type(value).__name__}")
        _probability("data.degradation.final_sinc_prob", self.final_sinc_prob)
        _probability("data.degradation.clean_prob", self.clean_prob)
        _probability("data.degradation.antialias_prob", self.antialias_prob)
        unknown = sorted(set(self.resize_modes) - set(RESIZE_MODES)) or ([] if self.resize_modes else ["(none)"])
        if unknown:
            raise ConfigError(f"data.degradation.resize_modes: unknown {', '.join(unknown)} (known: {', '.join(RESIZE_MODES)})")

    @classmethod
    def from_dict(cls, data: dict, where: str = "data.degradation") -> "DegradationConfig":
        return dataclass_from_dict(cls, data, where)


def _order_from_dict(data: dict, where: str) -> OrderConfig:
    # Keys left out of a [second] table keep the second order's defaults, not the first's.
    defaults = dataclasses.asdict(SECOND_ORDER if where.endswith("second") else OrderConfig())
    try:
        return dataclass_from_dict(OrderConfig, {**defaults, **data}, where)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None


# ---------------------------------------------------------------------------------------
# Kernels (all normalised to sum 1, odd size, centred)


def _grid(size: int) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(ax, ax)  # xx varies along columns (x), yy along rows (y)
    return np.stack([xx, yy], axis=-1)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """x^T Sigma^-1 x on the kernel grid; Sigma = R diag(sx^2, sy^2) R^T, R a rotation by theta."""
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv = np.linalg.inv(rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T)
    grid = _grid(size)
    return np.einsum("...i,ij,...j->...", grid, inv, grid)


def _normalise(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Bivariate Gaussian; isotropic when ``sigma_y`` is None."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalise(np.exp(-0.5 * q))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """``exp(-0.5 q^beta)`` (Real-ESRGAN): beta < 1 peaked with heavy tails, beta > 1 flatter; beta = 1 is the Gaussian."""
    return _normalise(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta) ** beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """1 / (1 + q^beta): a flat top with heavy tails (Real-ESRGAN's plateau-shaped kernel)."""
    return _normalise(1.0 / (_quadratic_form(size, sigma_x, sigma_y, theta) ** beta + 1))


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """2-D circular low-pass (jinc) with cutoff ``cutoff`` rad/pixel: ringing and overshoot like real resamplers."""
    r = np.linalg.norm(_grid(size), axis=-1)
    j1 = torch.special.bessel_j1(torch.from_numpy(cutoff * r)).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        k = cutoff * j1 / (2 * np.pi * r)
    k[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    return _normalise(k)


def random_kernel(rng: np.random.Generator, cfg: OrderConfig) -> np.ndarray:
    """One blur kernel drawn as Real-ESRGAN does (kernel type, size, sigmas, rotation, shape)."""
    size = int(rng.choice(np.arange(cfg.kernel_size[0], cfg.kernel_size[1] + 1, 2)))
    if rng.random() < cfg.sinc_prob:
        low = np.pi / 3 if size < 13 else np.pi / 5  # small kernels cannot hold a low cutoff
        return sinc_kernel(size, rng.uniform(low, np.pi))
    kind = cfg.kernel_types[int(rng.choice(len(cfg.kernel_types), p=np.asarray(cfg.kernel_probs)))]
    sx = rng.uniform(*cfg.blur_sigma)
    if not kind.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = rng.uniform(*cfg.blur_sigma), rng.uniform(-np.pi, np.pi)
    if kind.startswith("generalized"):
        lo, hi = cfg.betag_range
        beta = rng.uniform(lo, 1) if rng.random() < 0.5 else rng.uniform(1, hi)
        return generalized_gaussian_kernel(size, sx, sy, theta, beta)
    if kind.startswith("plateau"):
        return plateau_kernel(size, sx, sy, theta, rng.uniform(*cfg.betap_range))
    return gaussian_kernel(size, sx, sy, theta)


# ---------------------------------------------------------------------------------------
# Operators on float32 HxWxC images in [0, 1] (values may leave [0, 1] between operators)


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with ``kernel``, reflect-padded (no dark borders), same size and dtype."""
    p = kernel.shape[0] // 2
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="reflect")  # numpy reflects again where p >= size
    x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]
    c = img.shape[2]
    w = torch.from_numpy(np.ascontiguousarray(kernel[::-1, ::-1], dtype=img.dtype))[None, None].expand(c, 1, -1, -1)
    return F.conv2d(x, w, groups=c)[0].numpy().transpose(1, 2, 0)


def resize(img: np.ndarray, size: tuple[int, int], mode: str, antialias: bool = False) -> np.ndarray:
    """torch's area/bilinear/bicubic resize to (h, w); bilinear/bicubic antialiased only if asked (Real-ESRGAN never is)."""
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    kwargs = {} if mode == "area" else {"align_corners": False, "antialias": antialias}
    y = F.interpolate(x, size=(max(1, size[0]), max(1, size[1])), mode=mode, **kwargs)
    return y[0].numpy().transpose(1, 2, 0)


def add_gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float, gray: bool = False) -> np.ndarray:
    """Add N(0, sigma^2) noise (sigma in [0, 1] units); ``gray``: one noise plane for all channels. Clipped."""
    shape = img.shape[:2] + (1,) if gray else img.shape
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(img + noise, 0, 1)


def add_poisson_noise(img: np.ndarray, rng: np.random.Generator, scale: float, gray: bool = False) -> np.ndarray:
    """Shot noise: Poisson photon counts at the image's number of grey levels, scaled. Clipped."""
    base = img @ np.float32([[0.299], [0.587], [0.114]]) if gray else img
    base = np.clip(np.round(base * 255), 0, 255) / 255
    # Real-ESRGAN's photon count per unit intensity: the number of distinct levels, rounded up to 2^n.
    vals = 2 ** math.ceil(math.log2(max(len(np.unique(base)), 2)))
    noise = rng.poisson(base * vals) / vals - base
    return np.clip(img + (noise * scale).astype(np.float32), 0, 1)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode/decode in memory with Pillow (4:2:0 chroma like phone cameras); input clipped and rounded to 8 bits."""
    return from_uint8(jpeg_uint8(to_uint8(img), quality))


def jpeg_uint8(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def from_uint8(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255


# ---------------------------------------------------------------------------------------
# The training degradation


def degrade(hr: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, scale: int = 4) -> np.ndarray:
    """HR uint8 HxWx3 -> LR uint8 (H/scale)x(W/scale)x3 by the second-order model (module docstring)."""
    if hr.ndim != 3 or hr.dtype != np.uint8 or hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"expected uint8 HxWxC with sides divisible by {scale}, got {hr.dtype} {hr.shape}")
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    x = from_uint8(hr)
    x = _order(x, rng, cfg.first, cfg, base=hr.shape[:2])
    x = _order(x, rng, cfg.second, cfg, base=(h, w), jpeg_last=False)
    final_kernel = None
    if rng.random() < cfg.final_sinc_prob:
        size = int(rng.choice(np.arange(cfg.first.kernel_size[0], cfg.first.kernel_size[1] + 1, 2)))
        final_kernel = sinc_kernel(size, rng.uniform(np.pi / 3, np.pi))
    mode = cfg.resize_modes[int(rng.integers(len(cfg.resize_modes)))]
    antialias = _draw_antialias(rng, cfg)
    quality = int(rng.integers(cfg.second.jpeg_range[0], cfg.second.jpeg_range[1] + 1))
    if rng.random() < 0.5:
        x = jpeg(_resize_and_filter(x, (h, w), mode, final_kernel, antialias), quality)
    else:
        x = _resize_and_filter(jpeg(x, quality), (h, w), mode, final_kernel, antialias)
    return to_uint8(x)


def _draw_antialias(rng: np.random.Generator, cfg: DegradationConfig) -> bool:
    return cfg.antialias_prob > 0 and bool(rng.random() < cfg.antialias_prob)


def _resize_and_filter(x: np.ndarray, size: tuple[int, int], mode: str, kernel: np.ndarray | None,
                       antialias: bool = False) -> np.ndarray:
    x = resize(x, size, mode, antialias)
    return filter2d(x, kernel) if kernel is not None else x


def _order(x, rng, cfg: OrderConfig, top: DegradationConfig, base: tuple[int, int], jpeg_last: bool = True) -> np.ndarray:
    """One order. The resize factor is relative to ``base`` (the current size for the first order, the LR size for the second)."""
    if rng.random() < cfg.blur_prob:
        x = filter2d(x, random_kernel(rng, cfg))
    direction = int(rng.choice(3, p=np.asarray(cfg.resize_probs)))
    factor = (rng.uniform(1, cfg.resize_range[1]), rng.uniform(cfg.resize_range[0], 1), 1.0)[direction]
    mode = top.resize_modes[int(rng.integers(len(top.resize_modes)))]
    x = resize(x, (int(base[0] * factor), int(base[1] * factor)), mode, _draw_antialias(rng, top))
    gray = rng.random() < cfg.gray_noise_prob
    if rng.random() < cfg.gaussian_noise_prob:
        x = add_gaussian_noise(x, rng, rng.uniform(*cfg.noise_range) / 255, gray)
    else:
        x = add_poisson_noise(x, rng, rng.uniform(*cfg.poisson_scale_range), gray)
    if jpeg_last:
        x = jpeg(x, int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1)))
    return x


# ---------------------------------------------------------------------------------------
# bench-v1: the fixed evaluation recipe of `surge degrade` (not used in training)

BENCH_V1 = {
    "name": "bench-v1",
    "steps": [
        "HR cropped to a multiple of 4, as float in [0, 1]",
        "isotropic Gaussian blur, sigma ~ U[0.8, 1.6] HR px, kernel 2*ceil(3 sigma)+1, reflect padding",
        "MATLAB bicubic x1/4 (surge.imaging.bicubic.imresize, antialiased, float)",
        "colour Gaussian noise, sigma ~ U[2, 8] / 255, clipped to [0, 1], rounded to 8 bits",
        "JPEG (Pillow, 4:2:0), quality ~ integer U{30..70}, decoded",
    ],
    "parameters": "per image: rng = numpy.random.default_rng([seed, int.from_bytes(sha256(b'<Set>/<image stem>'), 'little')]); "
                  "blur_sigma, noise_sigma_8bit, jpeg_quality, noise_seed drawn from rng in that order; "
                  "noise = numpy.random.default_rng(noise_seed).standard_normal",
    "ranges": {"blur_sigma": [0.8, 1.6], "noise_sigma_8bit": [2, 8], "jpeg_quality": [30, 70]},
}


def bench_v1_params(seed: int, key: str) -> dict:
    """The per-image parameters of bench-v1; ``key`` is ``"<Set>/<image stem>"``."""
    import hashlib

    digest = int.from_bytes(hashlib.sha256(key.encode()).digest(), "little")
    rng = np.random.default_rng([seed, digest])
    return {
        "blur_sigma": float(rng.uniform(0.8, 1.6)),
        "noise_sigma_8bit": float(rng.uniform(2, 8)),
        "jpeg_quality": int(rng.integers(30, 71)),
        "noise_seed": int(rng.integers(2**63)),
    }


def bench_v1(hr: np.ndarray, params: dict, scale: int = 4, noise: bool = True, jpeg: bool = True) -> np.ndarray:
    """HR uint8 (HxW or HxWx3, sides multiples of ``scale``) -> degraded LR uint8 by bench-v1.

    ``noise=False`` / ``jpeg=False`` leave that step out (same parameters otherwise), for tracing
    a model's loss to a step (``scripts/bench_components.py``); the benchmark itself uses both.
    """
    gray = hr.ndim == 2
    x = from_uint8(hr[..., None] if gray else hr).astype(np.float64)
    sigma = params["blur_sigma"]
    x = filter2d(x, gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma))
    x = imresize(x, 1 / scale)
    if noise:
        rng = np.random.default_rng(params["noise_seed"])
        x = x + rng.standard_normal(x.shape) * (params["noise_sigma_8bit"] / 255)
    lr = to_uint8(x)
    lr = lr[..., 0] if gray else lr
    return jpeg_uint8(lr, params["jpeg_quality"]) if jpeg else lr
