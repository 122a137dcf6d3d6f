"""ONNX export with dynamic image size, and the ONNX Runtime session the Engine runs.

The exported graph takes ``lr`` (N, C, H, W) float32 in [0, 1] and returns ``sr``
(N, C, 4H, 4W); N, H and W are dynamic axes. Upsampling in the generator is written with
``scale_factor`` (never a size), so every ``Resize`` node carries *scales*;
:func:`check_dynamic_resize` verifies that on the written file, because one fixed-size
Resize would make the model silently wrong at any other input size.

``onnx`` and ``onnxruntime`` are optional dependencies (``pip install surge-sr[onnx]``);
importing this module does not need them, using it does.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from surge.atomic import atomic_output
from surge.errors import SurgeError

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "lr", "sr"


class OnnxError(SurgeError):
    """ONNX export or ONNX Runtime failure (missing package, bad file, unsupported op)."""


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise OnnxError(f"the '{module}' package is needed for ONNX (pip install 'surge-sr[onnx]')") from None


def export_onnx(
    network: nn.Module,
    path: str | os.PathLike,
    *,
    in_channels: int = 3,
    opset: int = DEFAULT_OPSET,
    sample_size: int = 16,
) -> Path:
    """Export an fp32 network to ``path`` with dynamic N/H/W, atomically (temp file + rename).

    The network should already be the inference copy (:func:`surge.inference.optimize.
    optimize_for_inference`): folded BatchNorm and sub-pixel convs make the ONNX graph as
    cheap as the PyTorch one.
    """
    onnx = _require("onnx")
    path = Path(path)
    if path.is_dir():
        raise OnnxError(f"{path}: is a folder, expected an output .onnx file path")
    if not path.parent.is_dir():
        raise OnnxError(f"{path}: folder {path.parent} does not exist")
    if opset < 11:
        raise OnnxError(f"{path}: opset {opset} is too old (need >= 11 for Resize with scales)")
    if any(p.dtype != torch.float32 for p in network.parameters()):
        network = copy.deepcopy(network).float()
    sample = torch.rand(1, in_channels, sample_size, sample_size, device=_device_of(network))
    try:
        with atomic_output(path, OnnxError) as tmp:
            with warnings.catch_warnings():
                # The TorchScript exporter is deprecated in favour of the torch.export one, which
                # needs the extra 'onnxscript' package; this one is stable for plain conv nets.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    network,
                    (sample,),
                    tmp,
                    dynamo=False,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                  OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}},
                    opset_version=opset,
                    do_constant_folding=True,
                )
            model = onnx.load(tmp)
            onnx.checker.check_model(model)
            check_dynamic_resize(model, path)
    except OnnxError:
        raise
    except Exception as exc:
        raise OnnxError(f"{path}: ONNX export failed ({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})") from None
    return path


def check_dynamic_resize(model, where: str | os.PathLike = "model") -> None:
    """Raise if any Resize/Upsample node uses a fixed output size instead of scales."""
    for node in model.graph.node:
        if node.op_type == "Upsample":
            continue  # opset < 10 form: always scale-based
        if node.op_type == "Resize":
            # inputs: X, roi, scales, sizes (sizes only from opset 11); a non-empty 4th = fixed size
            if len(node.input) >= 4 and node.input[3]:
                raise OnnxError(f"{where}: Resize node {node.name!r} has a fixed output size; the export would not be size-independent")
            if len(node.input) < 3 or not node.input[2]:
                raise OnnxError(f"{where}: Resize node {node.name!r} has no scales input")


def _device_of(network: nn.Module) -> torch.device:
    return next((p.device for p in network.parameters()), torch.device("cpu"))


class OnnxSession:
    """An ONNX Runtime session with the Engine's call contract (fp32 NCHW in and out).

    ``device`` cuda uses the CUDA execution provider where the installed onnxruntime has it.
    Threads default to torch's intra-op count so the two backends compete on equal terms;
    ``flush_denormals`` treats denormal floats as zero (x86 DAZ/FTZ).
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        device: torch.device | str = "cpu",
        threads: int | None = None,
        flush_denormals: bool = False,
    ):
        ort = _require("onnxruntime")
        device = torch.device(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        if flush_denormals:  # what torch.set_flush_denormal(True) does, for a fair comparison
            options.add_session_config_entry("session.set_denormal_as_zero", "1")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise OnnxError("device cuda requested but this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:
            where = "in-memory model" if isinstance(model, bytes) else str(model)
            raise OnnxError(f"{where}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0][:200]})") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (out,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(out)


def export_to_bytes(network: nn.Module, *, in_channels: int = 3, opset: int = DEFAULT_OPSET) -> bytes:
    """Export to a temporary file and return the bytes (the Engine's in-memory session)."""
    with tempfile.TemporaryDirectory(prefix="surge-onnx-") as folder:
        path = export_onnx(network, Path(folder) / "model.onnx", in_channels=in_channels, opset=opset)
        return path.read_bytes()
