"""Perceptual quality metrics beside PSNR/SSIM: NIQE (no reference) and VIF (full reference).

PSNR and SSIM reward the blurry mean of the plausible HR images; an adversarial stage trades
some of both for texture. These two numbers show that trade offline, with no downloaded network.

**NIQE** (Mittal, Soundararajan and Bovik, "Making a 'Completely Blind' Image Quality Analyzer",
IEEE SPL 2013): the distance between a multivariate Gaussian fitted to natural-scene statistics
of the image's 96x96 blocks and one fitted to pristine images. Lower is better. Follows the
authors' MATLAB release (``computequality.m``) step by step:

* the image's luma on the 0-255 scale, rounded to integers. We take BT.601 Y (MATLAB
  ``rgb2ycbcr``, :func:`surge.evaluation.metrics.rgb_to_y`), as BasicSR's ``calculate_niqe``
  does by default (``convert_to='y'``) and as SR papers report it; the MATLAB release itself uses
  ``rgb2gray``. A single-channel image is its own luma;
* a ``crop`` px border removed (SR papers use the scale), then cropped to whole 96x96 blocks;
* two scales: the image, then MATLAB ``imresize(im, 0.5)`` (bicubic, antialiased, unrounded;
  :func:`surge.imaging.bicubic.imresize`), with 96x96 and 48x48 blocks;
* MSCN coefficients ``(I - mu) / (sigma + 1)`` with a 7x7 Gaussian window (sigma 7/6),
  replicate padding (``imfilter(..., 'replicate')``);
* per block, 18 features: an AGGD fit of the coefficients (shape, mean of the two scales) and of
  their products with the 4 neighbours (horizontal, vertical, two diagonals; circular within the
  block as ``circshift`` does): shape, mean, left and right scale. The shape comes from the
  release's lookup over ``0.2:0.001:10`` of ``Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))``;
* ``sqrt((mu_p - mu_d) pinv((S_p + S_d) / 2) (mu_p - mu_d)')`` with the pristine model
  (``data/niqe_pris_params.npz``, see ``data/README.md``) and the NaN-tolerant mean and
  covariance of the image's block features (``nanmean``; ``nancov`` drops blocks with a NaN
  feature and, like MATLAB's ``cov``, gives 0 for a single block).

Measured against BasicSR 1.4.2's implementation and the MATLAB value BasicSR publishes for
Set14 ``baboon.png`` (5.72957338): see ``tests/test_perceptual.py``.

**VIF** (pixel-domain VIF of Sheikh and Bovik, "Image information and visual quality", IEEE TIP
2006; MATLAB ``vifp_mgn.m``): the share of the reference's visual information that the
distorted image keeps, over 4 scales, noise variance 2 on the 0-255 scale. 1 for an identical
image, lower for a loss of detail, above 1 for a contrast gain. We use torchmetrics'
``visual_information_fidelity`` on the Y channels, with the same border crop and Y convention as
PSNR/SSIM.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources

import numpy as np
from scipy.ndimage import correlate
from scipy.special import gamma

from surge.errors import SurgeError
from surge.evaluation.metrics import YConvention, rgb_to_y, shave, to_y
from surge.imaging.bicubic import imresize

NIQE_BLOCK = 96
VIF_MIN_SIZE = 41  # the largest of VIF's Gaussian windows (17 px) at 4 dyadic scales
PERCEPTUAL_METRICS: tuple[str, ...] = ("niqe", "vif")
_PRISTINE_FILE = "niqe_pris_params.npz"
# The release's lookup of the generalised Gaussian shape: 0.2:0.001:10.
_SHAPES = np.round(np.arange(0.2, 10.0005, 0.001), 3)
# Neighbour offsets of the pairwise products (circshift offsets of the release; the set of
# products of a block is the same for an offset and its negation).
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


class NiqeModelError(SurgeError):
    """The pristine NIQE parameters shipped with surge are missing or unreadable."""


def gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: a normalised 2-D Gaussian."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    g[g < np.finfo(np.float64).eps * g.max()] = 0  # as fspecial does
    return g / g.sum()


@cache
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """``(mu (36,), cov (36, 36))`` of the NIQE release's pristine image model."""
    path = resources.files("surge.evaluation").joinpath("data", _PRISTINE_FILE)
    try:
        with path.open("rb") as f, np.load(f) as data:
            mu = np.asarray(data["mu_pris_param"], dtype=np.float64).reshape(-1)
            cov = np.asarray(data["cov_pris_param"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise NiqeModelError(f"{path}: NIQE pristine model unreadable ({exc}); reinstall surge") from None
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise NiqeModelError(f"{path}: NIQE pristine model has shapes {mu.shape}, {cov.shape}, expected (36,), (36, 36)")
    return mu, cov


@cache
def _shape_ratios() -> np.ndarray:
    a = _SHAPES
    ratios = gamma(2 / a) ** 2 / (gamma(1 / a) * gamma(3 / a))
    # Strictly increasing, so the release's argmin of the squared difference is a nearest-value
    # search: O(log n) per block instead of a 9801-wide row.
    assert np.all(np.diff(ratios) > 0)
    return ratios


def _nearest_shape(rhat: np.ndarray) -> np.ndarray:
    """Shape parameter whose ratio is nearest to each ``rhat`` (first of a tie, as ``min``)."""
    ratios = _shape_ratios()
    hi = np.clip(np.searchsorted(ratios, rhat), 1, len(ratios) - 1)
    lo = hi - 1
    pick_hi = (ratios[hi] - rhat) ** 2 < (ratios[lo] - rhat) ** 2
    idx = np.where(pick_hi, hi, lo)
    # MATLAB's min over an all-NaN vector returns index 1: shape 0.2 (the row is NaN anyway
    # through its scales, but the shape column still enters nanmean).
    return _SHAPES[np.where(np.isnan(rhat), 0, idx)]


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit of each row of ``x``: ``(shape, left scale, right scale)``.

    The moment-matching estimator of the release (``estimateaggdparam.m``). A row without
    negative (or positive) values has a NaN left (right) scale, as MATLAB's mean of nothing.
    """
    neg, pos = x < 0, x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(np.sum(np.where(neg, x * x, 0), axis=1) / np.sum(neg, axis=1))
        right = np.sqrt(np.sum(np.where(pos, x * x, 0), axis=1) / np.sum(pos, axis=1))
        ratio = left / right
        rhat = np.mean(np.abs(x), axis=1) ** 2 / np.mean(x * x, axis=1)
        rhat_norm = rhat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    shape = _nearest_shape(rhat_norm)
    spread = np.sqrt(gamma(1 / shape) / gamma(3 / shape))
    return shape, left * spread, right * spread


def mscn(img: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients ``(I - mu) / (sigma + 1)``."""
    w = gaussian_window()
    mu = correlate(img, w, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(img * img, w, mode="nearest") - mu * mu))
    return (img - mu) / (sigma + 1)


def _blocks(img: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows * cols, bh, bw) blocks in a fixed order (the same at both scales)."""
    bh, bw = img.shape[0] // rows, img.shape[1] // cols
    return img.reshape(rows, bh, cols, bw).swapaxes(1, 2).reshape(rows * cols, bh, bw)


def block_features(coeffs: np.ndarray) -> np.ndarray:
    """The release's 18 features of each (n, h, w) block of MSCN coefficients: (n, 18)."""
    n = coeffs.shape[0]
    shape, left, right = aggd_fit(coeffs.reshape(n, -1))
    feats = [shape, (left + right) / 2]
    for shift in _SHIFTS:
        pairs = coeffs * np.roll(coeffs, shift, axis=(1, 2))
        shape, left, right = aggd_fit(pairs.reshape(n, -1))
        mean = (right - left) * gamma(2 / shape) / gamma(1 / shape)
        feats += [shape, mean, left, right]
    return np.stack(feats, axis=1)


def niqe_of_luma(luma: np.ndarray) -> float:
    """NIQE of a single-channel float image on the 0-255 scale, used as given (no crop, no rounding).

    Needs at least one whole 96x96 block; the part beyond whole blocks is ignored, as in the
    release. Raises ``ValueError`` for a smaller image or one with no block that has both
    negative and positive coefficients (e.g. flat).
    """
    luma = np.asarray(luma, dtype=np.float64)
    if luma.ndim != 2:
        raise ValueError(f"niqe: expected a single-channel image, got shape {luma.shape}")
    rows, cols = luma.shape[0] // NIQE_BLOCK, luma.shape[1] // NIQE_BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(
            f"niqe: a {luma.shape[1]}x{luma.shape[0]} px image has no whole {NIQE_BLOCK}x{NIQE_BLOCK} block"
        )
    img = luma[: rows * NIQE_BLOCK, : cols * NIQE_BLOCK]
    fine = block_features(_blocks(mscn(img), rows, cols))
    coarse = block_features(_blocks(mscn(imresize(img, scale=0.5)), rows, cols))
    feats = np.concatenate([fine, coarse], axis=1)
    complete = feats[~np.isnan(feats).any(axis=1)]
    if len(complete) == 0:
        raise ValueError("niqe: no block of the image has both darker and brighter detail (flat image?)")
    mu_p, cov_p = pristine_model()
    mu_d = np.nanmean(feats, axis=0)
    # MATLAB's cov normalises a single observation by 1 (giving 0), numpy's ddof=1 by 0.
    cov_d = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros((36, 36))
    diff = mu_p - mu_d
    return float(math.sqrt(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff))


def niqe(img: np.ndarray, crop: int = 0) -> float:
    """NIQE of a uint8 (0-255) or float ([0, 1]) HxW / HxWx3 image: rounded BT.601 luma, ``crop`` px border removed.

    Lower is better. The image must keep at least 96x96 px after the crop.
    """
    luma = np.floor(rgb_to_y(img) + 0.5)  # MATLAB works on the uint8 luma; round half up
    return niqe_of_luma(shave(luma, crop))


def niqe_min_size(crop: int) -> int:
    """Smallest side (px) that leaves one NIQE block after a ``crop`` px border crop."""
    return 2 * crop + NIQE_BLOCK


def vif(sr: np.ndarray, hr: np.ndarray, crop: int = 4, y_convention: YConvention = "matlab") -> float:
    """Pixel-domain VIF of ``sr`` against the reference ``hr`` on the Y channels (0-255 scale).

    Same inputs, Y convention and border crop as :func:`surge.evaluation.metrics.psnr_y`.
    The measured region must be at least 41x41 px.
    """
    import torch
    from torchmetrics.functional.image.vif import visual_information_fidelity

    a = shave(to_y(np.asarray(sr), y_convention), crop)
    b = shave(to_y(np.asarray(hr), y_convention), crop)
    if a.shape != b.shape:
        raise ValueError(f"vif: SR is {a.shape[1]}x{a.shape[0]} but HR is {b.shape[1]}x{b.shape[0]} after the crop")
    if min(a.shape) < VIF_MIN_SIZE:
        raise ValueError(f"vif: {a.shape[1]}x{a.shape[0]} px is smaller than VIF's {VIF_MIN_SIZE} px minimum")
    preds = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    target = torch.from_numpy(np.ascontiguousarray(b))[None, None]
    return float(visual_information_fidelity(preds, target))


def vif_min_size(crop: int) -> int:
    return 2 * crop + VIF_MIN_SIZE


def check_metric_names(names) -> tuple[str, ...]:
    """``names`` as a tuple of known perceptual metrics, in :data:`PERCEPTUAL_METRICS` order, without repeats."""
    names = tuple(names)
    unknown = sorted(set(names) - set(PERCEPTUAL_METRICS))
    if unknown:
        raise SurgeError(f"unknown perceptual metric(s) {', '.join(unknown)}; known: {', '.join(PERCEPTUAL_METRICS)}")
    return tuple(m for m in PERCEPTUAL_METRICS if m in names)


def min_size(names, crop: int) -> int:
    """Smallest HR side (px) that every metric in ``names`` can measure after a ``crop`` px border crop."""
    sizes = {"niqe": niqe_min_size(crop), "vif": vif_min_size(crop)}
    return max((sizes[m] for m in names), default=0)


def measure(names, sr: np.ndarray, hr: np.ndarray, crop: int, y_convention: YConvention = "matlab") -> dict[str, float]:
    """``{metric: value}`` for each of ``names`` (NIQE of ``sr`` alone, VIF of ``sr`` against ``hr``)."""
    out = {}
    if "niqe" in names:
        out["niqe"] = niqe(sr, crop)
    if "vif" in names:
        out["vif"] = vif(sr, hr, crop, y_convention)
    return out
