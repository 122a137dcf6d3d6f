"""PSNR and SSIM on the luma channel, as super-resolution papers compute them.

The protocol (``../shared/docs/surge-method.md``) in one place:

* **Y channel** of ITU-R BT.601 YCbCr, MATLAB's ``rgb2ycbcr``:
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with RGB in [0, 1], Y on the 0-255 scale.
  A single-channel image is its own Y (no 16-235 range compression), as in the
  SelfExSR/VDSR MATLAB scripts (``if size(im,3) > 1, im = rgb2ycbcr(im)``).
* **Rounding of Y** (``y_convention``). MATLAB's ``rgb2ycbcr`` on a uint8 image returns a
  uint8 Y, i.e. Y rounded to an integer; on a double image it does not round. BasicSR and
  most Python reproductions compute Y in float and never round. The two differ by about
  0.01 dB and 0.001 SSIM, which is the size of the tolerance the benchmark tables are
  checked with, so the choice matters. Measured on the SelfExSR benchmark files with
  MATLAB-exact bicubic x4 (see tests/test_eval.py):

  ===========  ==========================  ==========================
  convention   Set5 / Set14 / BSD100 PSNR  SSIM
  ===========  ==========================  ==========================
  ``matlab``   28.42 / 25.99 / 25.96       0.8101 / 0.7023 / 0.6672
  ``float``    28.43 / 26.00 / 25.96       0.8111 / 0.7029 / 0.6681
  ===========  ==========================  ==========================

  ``matlab`` (rounded, the default) reproduces, to every printed digit, the table that the
  authors of these very files published with their MATLAB code (SelfExSR README:
  28.42/0.8101, 25.99/0.7023, 25.96/0.6672) and is within 0.01 dB / 0.001 of the widely
  quoted VDSR-table figures (28.42/0.8104, 26.00/0.7027, 25.96/0.6675); ``float`` misses
  the Set5 PSNR of both by more than 0.01 dB.
* **Border crop**: ``crop`` pixels (the scale, 4) removed from every side before measuring.
* **SSIM** of Wang et al. (their ``ssim_index.m``): 11x11 Gaussian window with sigma 1.5,
  K1 = 0.01, K2 = 0.03, L = 255, population (not sample) covariances, mean over the
  "valid" region. scikit-image's ``structural_similarity`` with
  ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255`` is that
  exactly (its Gaussian is truncated at radius 5 = 11 taps and it averages over the
  interior that a 'valid' filter leaves).

Inputs are uint8 arrays (HxW or HxWx3, values 0-255) or float arrays in [0, 1] (the
library's convention). SR outputs are quantised to uint8 before they are measured: SR
papers measure saved 8-bit images.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from skimage.metrics import structural_similarity

YConvention = Literal["matlab", "float"]
Y_CONVENTIONS: tuple[str, ...] = ("matlab", "float")

# BT.601 "studio swing" coefficients for RGB in [0, 1] -> Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_OFFSET = 16.0
# SSIM needs an 11x11 window inside the measured region.
SSIM_WINDOW = 11


def _to_255(img: np.ndarray) -> np.ndarray:
    """float64 copy on the 0-255 scale: uint8 as is, float taken to be in [0, 1]."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float64) * 255.0
    raise TypeError(f"expected a uint8 or float image, got dtype {img.dtype}")


def _check_image(img: np.ndarray, what: str) -> None:
    if img.ndim == 3 and img.shape[2] in (1, 3):
        return
    if img.ndim == 2:
        return
    raise ValueError(f"{what}: expected HxW or HxWx3 image, got shape {img.shape}")


def rgb_to_y(img: np.ndarray, rounded: bool = False) -> np.ndarray:
    """BT.601 luma of an RGB image on the 0-255 scale, as float64 (MATLAB ``rgb2ycbcr``).

    ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1]; uint8 input is
    divided by 255, float input is taken to be in [0, 1]. A single-channel image (HxW or
    HxWx1) is returned as its own Y on the 0-255 scale, unchanged.

    ``rounded=True`` rounds Y half away from zero to an integer, which is what MATLAB's
    ``rgb2ycbcr`` returns for uint8 input (and what the published tables used); the result
    is still float64 so that it can be subtracted without wrap-around.
    """
    img = np.asarray(img)
    _check_image(img, "rgb_to_y")
    x = _to_255(img)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim == 2:
        return x
    y = _Y_OFFSET + x @ (_Y_WEIGHTS / 255.0)
    if rounded:
        # Y >= 16 > 0, so floor(y + 0.5) is MATLAB's round-half-away-from-zero.
        y = np.floor(y + 0.5)
    return y


def to_y(img: np.ndarray, y_convention: YConvention = "matlab") -> np.ndarray:
    """The Y channel under a named convention (see the module docstring)."""
    if y_convention not in Y_CONVENTIONS:
        raise ValueError(f"unknown y_convention {y_convention!r} (use one of {', '.join(Y_CONVENTIONS)})")
    return rgb_to_y(img, rounded=y_convention == "matlab")


def shave(img: np.ndarray, crop: int) -> np.ndarray:
    """Remove ``crop`` pixels from every border (the first two axes)."""
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    if crop == 0:
        return img
    if img.shape[0] <= 2 * crop or img.shape[1] <= 2 * crop:
        raise ValueError(f"image of {img.shape[1]}x{img.shape[0]} px is too small for a {crop} px border crop")
    return img[crop:-crop, crop:-crop]


def _pair(sr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sr, hr = np.asarray(sr), np.asarray(hr)
    _check_image(sr, "sr")
    _check_image(hr, "hr")
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"SR is {sr.shape[1]}x{sr.shape[0]} but HR is {hr.shape[1]}x{hr.shape[0]}")
    return sr, hr


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """``10 log10(peak^2 / mse)``; identical images (mse = 0) give ``math.inf``."""
    if mse <= 0:
        return math.inf
    return float(10.0 * math.log10(peak * peak / mse))


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop: int = 4, y_convention: YConvention = "matlab") -> float:
    """PSNR (dB) of the Y channels after a ``crop`` px border crop; peak 255.

    Returns ``math.inf`` for identical Y channels.
    """
    sr, hr = _pair(sr, hr)
    a = shave(to_y(sr, y_convention), crop)
    b = shave(to_y(hr, y_convention), crop)
    return psnr_from_mse(float(np.mean((a - b) ** 2)))


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, crop: int = 4) -> float:
    """PSNR (dB) over all channels of the 0-255 images after a ``crop`` px border crop.

    Both images must have the same number of channels. Not the papers' headline metric
    (they use Y); offered because some works (and users) report it.
    """
    sr, hr = _pair(sr, hr)
    a, b = shave(_to_255(sr), crop), shave(_to_255(hr), crop)
    if a.shape != b.shape:
        raise ValueError(f"SR has shape {sr.shape} but HR has shape {hr.shape}")
    return psnr_from_mse(float(np.mean((a - b) ** 2)))


def ssim_of_y(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) of two single-channel float images on the 0-255 scale."""
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"image of {a.shape[1]}x{a.shape[0]} px is smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window")
    return float(
        structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0,
            K1=0.01, K2=0.03,
        )
    )


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop: int = 4, y_convention: YConvention = "matlab") -> float:
    """SSIM of the Y channels after a ``crop`` px border crop (Wang's ``ssim_index``)."""
    sr, hr = _pair(sr, hr)
    return ssim_of_y(shave(to_y(sr, y_convention), crop), shave(to_y(hr, y_convention), crop))


def psnr_ssim_y(
    sr: np.ndarray, hr: np.ndarray, crop: int = 4, y_convention: YConvention = "matlab"
) -> tuple[float, float]:
    """``(psnr_y, ssim_y)`` computing each Y channel once (the runner's per-image call)."""
    sr, hr = _pair(sr, hr)
    a = shave(to_y(sr, y_convention), crop)
    b = shave(to_y(hr, y_convention), crop)
    return psnr_from_mse(float(np.mean((a - b) ** 2))), ssim_of_y(a, b)


def min_measurable_size(crop: int) -> int:
    """Smallest HR side (px) that leaves an SSIM window after the border crop."""
    return 2 * crop + SSIM_WINDOW
