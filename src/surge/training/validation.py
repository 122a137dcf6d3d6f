"""Validation PSNR-Y during training, through the same evaluator as `surge eval`."""

from __future__ import annotations

from pathlib import Path

import torch

from surge.models.registry import SRModel


def validate_psnr(network: torch.nn.Module, set_dir: Path, max_images: int = 0, device=None) -> float:
    """Mean PSNR-Y (MATLAB protocol, border crop 4) of ``network`` on one benchmark set folder."""
    from surge.evaluation.runner import evaluate_set

    model = SRModel(name="validation", network=network, scale=4, source="training", precisions=("fp32",))
    result = evaluate_set(model, Path(set_dir), max_images=max_images or None, device=device, progress=False)
    return float(result.psnr_y)
