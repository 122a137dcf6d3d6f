"""Internal: the inference copy of a model that runs one float batch at a precision/device.

Users never build one: :class:`surge.inference.runtime.SRModel` builds it on first use, once
per (precision, device, backend), and caches it (``SRModel._engine``). Tiling
(``surge.inference.tiling``) keeps tiles on the host and hands them one at a time to an
Engine, so the whole image never has to sit on the compute device.

At construction the Engine makes its own inference copy of the network
(:func:`surge.inference.optimize.optimize_for_inference`: BatchNorm folded into the convs,
the architecture's upsample->conv pairs rewritten as sub-pixel convs, checked against the
original), so a model that a trainer is still using is never modified. It then casts that
copy to the compute precision and lays it out channels-last, or exports it to ONNX for
``backend="onnxruntime"``.

``precision="auto"`` is decided per device (:func:`surge.inference.optimize.auto_precision`):
bf16 on a CPU with native bf16 (AVX512-BF16/AMX; detected, not assumed), fp16 on CUDA,
fp32 otherwise; always within the model's ``precisions`` and its provenance's
``auto_precision`` veto.

Every batch's output is checked for NaN/inf before it leaves the Engine. In a reduced precision
that means an overflow (fp16 ends at 65504; Real-ESRGAN's black tiles): the batch is recomputed
by the model's fp32 engine, with one :class:`~surge.errors.PrecisionFallbackWarning` per engine.
In fp32 it means broken weights: :class:`~surge.errors.NonFiniteOutputError`, since quantising
NaN gives a black image.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

from surge import BACKENDS, PRECISIONS
from surge.errors import NonFiniteOutputError, PrecisionFallbackWarning, SurgeError
from surge.inference.optimize import REDUCED_DTYPES, auto_precision, optimize_for_inference, to_compute_dtype

if TYPE_CHECKING:
    from surge.inference.runtime import SRModel


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


def resolve_precision(model: SRModel, precision: str, device: torch.device, backend: str = "torch") -> str:
    """The concrete precision ("fp32", "bf16", "fp16") a model runs at on ``device``."""
    if precision not in PRECISIONS:
        raise SurgeError(f"unknown precision {precision!r} (use one of {', '.join(PRECISIONS)})")
    if backend == "onnxruntime":
        # The exported graph is fp32; ONNX Runtime's CPU kernels have no bf16 convolution.
        if precision not in ("auto", "fp32"):
            raise SurgeError(f"backend onnxruntime runs fp32 only, not {precision}")
        return "fp32"
    if precision == "auto":
        return auto_precision(tuple(model.precisions), device, model.provenance)
    if precision not in model.precisions:
        raise SurgeError(f"model {model.name} does not support precision {precision} (supports {', '.join(model.precisions)})")
    return precision


class Engine:
    """Callable: float32 host tensor (B, C, h, w) in [0, 1] -> float32 host tensor (B, C, 4h, 4w).

    ``precision`` and ``device`` are concrete (resolved by the caller, see
    :func:`resolve_precision`). ``backend``: ``"torch"`` or ``"onnxruntime"`` (the inference
    copy is exported to ONNX in memory; fp32). ``optimize=False`` runs the network as loaded
    (no folding or rewrites), for benchmarks.
    """

    def __init__(self, model: SRModel, precision: str, device: torch.device, backend: str = "torch", optimize: bool = True):
        if backend not in BACKENDS:
            raise SurgeError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
        self.model = model
        self.device = resolve_device(device)
        self.backend = backend
        self.precision = resolve_precision(model, precision, self.device, backend)
        self._warned = False
        source = model.network
        if optimize:
            try:
                network, self.optimizations = optimize_for_inference(source)
            except NonFiniteOutputError as exc:
                raise NonFiniteOutputError(f"{model.name} ({model.source}): {exc}") from None
        else:
            import copy

            network, self.optimizations = copy.deepcopy(source).eval(), {}
        self._session = None
        if backend == "onnxruntime":
            from surge.inference.onnx_backend import OnnxSession, export_to_bytes

            from surge.inference.onnx_backend import check_size_independent

            self._session = OnnxSession(export_to_bytes(network.cpu(), in_channels=model.in_channels), self.device)
            check_size_independent(self._session, network, model.in_channels, model.name)
            self.network = network
            return
        network = network.to(self.device)
        dtype = REDUCED_DTYPES.get(self.precision)
        if dtype is not None:
            network = to_compute_dtype(network, dtype)
        # Channels-last is oneDNN's and cuDNN's fast layout for convs (1.4x on CPU fp32 here).
        self.network = network.to(memory_format=torch.channels_last).eval()

    @property
    def scale(self) -> int:
        return self.model.scale

    def describe(self) -> str:
        """One line for logs: backend, device, precision and applied rewrites."""
        done = ", ".join(f"{k}={v}" for k, v in self.optimizations.items() if v) or "none"
        return f"{self.model.name}: backend {self.backend}, {self.device}, {self.precision}, rewrites: {done}"

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._session is not None:
            y = self._session(x)
        else:
            y = self.network(x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last))
        if bool(torch.isfinite(y).all()):
            return y.float().cpu()
        if self.precision == "fp32":
            raise NonFiniteOutputError(non_finite_message(self.model, self.device))
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.model.name}: {self.precision} overflowed on {self.device} (NaN/inf in the output); "
                "those batches are recomputed in fp32 (precision fp32 avoids the retry)",
                PrecisionFallbackWarning, stacklevel=3,
            )
        return self.model._engine("fp32", self.device, self.backend)(x)


def non_finite_message(model, device: torch.device) -> str:
    return (f"{model.name} ({model.source}): the network's output holds NaN or inf in fp32 on {device} "
            "(broken weights?); nothing written, since it would quantise to black")
