"""What `surge info` reports about a model: size, cost, precisions, provenance."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from surge.inference.runtime import SRModel


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops_per_lr_pixel(model: SRModel, size: int = 32) -> float:
    """Forward FLOPs (multiply-add = 2) per LR input pixel, by torch's flop counter."""
    x = torch.rand(1, model.in_channels, size, size, device=model.device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.network(x)
    return counter.get_total_flops() / (size * size)


def describe(model: SRModel) -> dict:
    net = model.network
    info = {
        "name": model.name,
        "description": model.description,
        "architecture": type(net).__name__,
        "scale": model.scale,
        "channels": f"{model.in_channels} in, {model.out_channels} out",
        "input_size": _size_requirement(model),
        "trained": model.trained,
        "parameters": count_parameters(net),
        "mflops_per_lr_pixel": round(flops_per_lr_pixel(model) / 1e6, 3),
        "receptive_radius_lr_px": model.receptive_radius,
        "precisions": list(model.precisions),
        "source": model.source,
    }
    if model.config is not None:
        info["config"] = model.config.to_dict()
    if hasattr(net, "mixing_weights"):
        info["mixing_weights"] = net.mixing_weights()
    if model.provenance:
        info["provenance"] = model.provenance
    return info


def _size_requirement(model: SRModel) -> str:
    multiple = f", multiples of {model.size_multiple}" if model.size_multiple > 1 else ""
    return f"any, at least {model.min_size} px a side{multiple}"
