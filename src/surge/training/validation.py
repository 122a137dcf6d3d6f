"""Validation PSNR-Y during training, through the same evaluator as `surge eval`."""

from __future__ import annotations

from pathlib import Path

import torch


def validate_psnr(network: torch.nn.Module, set_dir: Path, device=None) -> float:
    """Mean PSNR-Y (MATLAB protocol, border crop 4) of ``network`` on one benchmark set folder."""
    from surge.evaluation.runner import evaluate_set

    result = evaluate_set(network, Path(set_dir), precision="fp32", device=device or "cpu")
    return float(result.psnr_y)


def check_val_set(set_dir: Path) -> None:
    """Raise a DatasetError naming ``data.val_dir`` unless ``set_dir`` is a set with images."""
    from surge.errors import DatasetError
    from surge.evaluation.datasets import discover_set

    try:
        bench = discover_set(set_dir, 4)
    except DatasetError as exc:
        raise DatasetError(f"data.val_dir: {exc}") from None
    if not bench.pairs:
        raise DatasetError(f"data.val_dir: {set_dir}: no images to validate on")
