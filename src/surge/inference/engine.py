"""The compute engine: runs a model's network on one float batch at a chosen precision/device.

Tiling (``surge.inference.tiling``) keeps tiles on the host and hands them one at a time
to an Engine, so the whole image never has to sit on the compute device.
"""

from __future__ import annotations

import contextlib

import torch

from surge.errors import SurgeError
from surge.models.registry import SRModel, load_model

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SurgeError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SurgeError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_precision(model: SRModel, precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise SurgeError(f"unknown precision {precision!r} (use one of {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "fp32"
    if precision not in model.precisions:
        raise SurgeError(f"model {model.name} does not support precision {precision} (supports {', '.join(model.precisions)})")
    return precision


class Engine:
    """Callable: float32 host tensor (B, C, h, w) in [0, 1] -> float32 host tensor (B, C, 4h, 4w)."""

    def __init__(self, model: SRModel | str, precision: str = "auto", device: str | torch.device | None = "auto"):
        self.model = load_model(model) if not isinstance(model, SRModel) else model
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.model, precision, self.device)
        self.network = self.model.network.to(self.device).eval()
        if self.device.type == "cpu" or self.precision != "fp32":
            self.network = self.network.to(memory_format=torch.channels_last)

    @property
    def scale(self) -> int:
        return self.model.scale

    def _autocast(self):
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            y = self.network(x)
        return y.float().cpu()
