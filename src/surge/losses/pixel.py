"""Pixel fidelity terms.

The SuRGe release has no pixel loss; a PSNR-oriented model needs one (SRGAN/ESRGAN pre-train on
it), so the objective can add one either inside the dynamic convex combination or as a separate
weighted term (``surge.losses.combine.LossConfig``; ``loss.pixel`` picks the function).

Which one: L1's minimiser is the conditional *median* of the HR pixel given the LR input, MSE's
the conditional *mean*, and PSNR is a monotone function of MSE. When the input determines the
output (clean bicubic LR) the two nearly coincide; under heavy noise and JPEG the conditional
distribution is wide and they differ, so MSE is the objective that PSNR measures.
"""

from __future__ import annotations

import torch


def l1_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all elements (L1 is the usual SR fidelity loss: sharper than MSE)."""
    if sr.shape != hr.shape:
        raise ValueError(f"l1_loss: sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")
    return (sr - hr.to(sr.dtype)).abs().mean()


def mse_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (the quantity PSNR is a function of)."""
    if sr.shape != hr.shape:
        raise ValueError(f"mse_loss: sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")
    diff = sr - hr.to(sr.dtype)
    return (diff * diff).mean()


def charbonnier_loss(sr: torch.Tensor, hr: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((sr - hr)^2 + eps^2)``: L1 away from zero, smooth (quadratic) near zero.

    The smooth minimum avoids L1's constant-magnitude gradient around a perfect fit (LapSRN,
    EDVR). The ``eps`` offset is kept (as in BasicSR), so a perfect fit scores ``eps``.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"charbonnier_loss: sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")
    if not eps > 0:
        raise ValueError(f"charbonnier eps must be > 0, got {eps}")
    diff = sr - hr.to(sr.dtype)
    return torch.sqrt(diff * diff + eps * eps).mean()


PIXEL_LOSSES = {"l1": l1_loss, "mse": mse_loss, "charbonnier": charbonnier_loss}
