"""ONNX export with dynamic image size, the ONNX Runtime session the Engine runs, and
exported files run as models (``surge upscale --backend onnxruntime --model file.onnx``).

The exported graph takes ``lr`` (N, C, H, W) float32 RGB in [0, 1] and returns ``sr``
(N, C, 4H, 4W) float32, *not clamped*: whoever quantises clamps to [0, 1] first (surge
does). N, H and W are dynamic axes. The file's metadata (``surge.*`` keys) records the
scale, the receptive radius (tile overlap for exact tiling) and the activation memory per
LR pixel (automatic tile size). Upsampling in the generator is written with
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
from surge.errors import NonFiniteOutputError, SurgeError
from surge.inference._engine import non_finite_message
from surge.inference.runtime import SRModel

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
META_SCALE, META_RADIUS, META_BYTES = "surge.scale", "surge.receptive_radius", "surge.bytes_per_lr_pixel"
GRAPH_DOC = (
    "input lr: float32 (N, C, H, W), RGB in [0, 1]; output sr: float32 (N, C, scale*H, scale*W), "
    "not clamped (clamp to [0, 1] before quantising)"
)
# Automatic tiling of a foreign graph without surge metadata: a generous guess per LR pixel
# (RRDBNet-class x4 models peak near 16 KB), so tiles err on the small side.
_FOREIGN_BYTES_PER_LR_PIXEL = 64 * 1024


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
            _describe_graph(model, network, sample)
            onnx.save(model, tmp)
            onnx.checker.check_model(model)
            check_dynamic_resize(model, path)
    except OnnxError:
        raise
    except Exception as exc:
        raise OnnxError(f"{path}: ONNX export failed ({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})") from None
    return path


def _describe_graph(model, network: nn.Module, sample: torch.Tensor) -> None:
    """Record what a runner needs but cannot read off the graph: scale, receptive radius,
    activation memory per LR pixel."""
    from surge.inference.tiling import activation_bytes_per_lr_pixel

    with torch.inference_mode():
        scale = network(sample).shape[-1] // sample.shape[-1]
    meta = {META_SCALE: scale, META_BYTES: activation_bytes_per_lr_pixel(network, sample.shape[1])}
    if callable(getattr(network, "receptive_radius", None)):
        meta[META_RADIUS] = network.receptive_radius()
    model.doc_string = GRAPH_DOC
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)


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


CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"


def execution_providers(device: torch.device, available: list[str]) -> list:
    """ONNX Runtime providers for ``device``, first choice first (CPU last: ONNX Runtime runs
    there whatever the CUDA provider does not support)."""
    if device.type == "cpu":
        return [CPU_PROVIDER]
    if device.type != "cuda":
        raise OnnxError(f"ONNX Runtime runs on cpu or cuda here, not {device}")
    if CUDA_PROVIDER not in available:
        raise OnnxError(f"device {device} requested but this onnxruntime has no CUDA provider "
                        "(pip install onnxruntime-gpu, or use --device cpu)")
    return [(CUDA_PROVIDER, {"device_id": device.index or 0}), CPU_PROVIDER]


def onnx_cuda_available() -> bool:
    """Whether the installed onnxruntime has a CUDA provider (False without onnxruntime)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return CUDA_PROVIDER in onnxruntime.get_available_providers()


def onnx_device(device: torch.device, chosen_automatically: bool) -> torch.device:
    """Where the onnxruntime backend runs for a model on ``device``: an automatic choice of CUDA
    falls back to the CPU when onnxruntime has no CUDA provider (the plain ``onnxruntime``
    package); a device the user named is kept (and fails clearly if it cannot be used)."""
    if device.type == "cuda" and chosen_automatically and not onnx_cuda_available():
        return torch.device("cpu")
    return device


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
        providers = execution_providers(device, ort.get_available_providers())
        source = model if isinstance(model, bytes) else str(model)
        where = "in-memory model" if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:
            raise OnnxError(f"{where}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0][:200]})") from None
        if device.type == "cuda" and self.session.get_providers()[0] != CUDA_PROVIDER:
            # ONNX Runtime falls back to the CPU, with only a log line, when the CUDA provider's
            # libraries (CUDA, cuDNN) fail to load.
            raise OnnxError(f"{where}: ONNX Runtime could not start its CUDA provider on {device} (CUDA or cuDNN "
                            "libraries missing or mismatched?) and would run on the CPU; use --device cpu")
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (out,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(out)


def check_size_independent(session: OnnxSession, network: nn.Module, in_channels: int, name: str,
                           size: tuple[int, int] = (12, 20), tolerance: float = 1e-3) -> None:
    """Run the exported graph at a size other than the export sample's and compare it with the
    network: a graph whose shapes were fixed at export (the built-in bicubic computes its weight
    matrices from the input size in Python) fails here, once, with a message, instead of in
    ONNX Runtime's kernels on the first image."""
    x = torch.rand(1, in_channels, *size, generator=torch.Generator().manual_seed(0))
    try:
        got = session(x)
        with torch.inference_mode():
            want = network.cpu()(x).float()
        ok = got.shape == want.shape and float((got - want).abs().max()) <= tolerance
    except Exception:  # onnxruntime's own error types: the graph cannot run at this size
        ok = False
    if not ok:
        raise OnnxError(f"{name}: its ONNX graph only works at the size it was exported at (the network computes "
                        "shapes in Python); run it with --backend torch")


def export_to_bytes(network: nn.Module, *, in_channels: int = 3, opset: int = DEFAULT_OPSET) -> bytes:
    """Export to a temporary file and return the bytes (the Engine's in-memory session)."""
    with tempfile.TemporaryDirectory(prefix="surge-onnx-") as folder:
        path = export_onnx(network, Path(folder) / "model.onnx", in_channels=in_channels, opset=opset)
        return path.read_bytes()


# --- an exported file as a model ---------------------------------------------------------


class OnnxGraph(nn.Module):
    """An ONNX file as a network: ``forward`` runs it with ONNX Runtime (fp32, on the CPU).

    It has no parameters; ``receptive_radius()`` and ``bytes_per_lr_pixel`` come from the
    file's metadata, for tiling.
    """

    def __init__(self, path: Path, session: OnnxSession, scale: int, radius: int | None, bytes_per_lr_pixel: int):
        super().__init__()
        self.path, self.session, self.scale = path, session, scale
        self.radius, self.bytes_per_lr_pixel = radius, bytes_per_lr_pixel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.session(x).to(x.device)

    def receptive_radius(self) -> int:
        if self.radius is None:
            raise OnnxError(
                f"{self.path}: no {META_RADIUS} in the file (not written by `surge export`), so the tile "
                "overlap for exact tiling is unknown; pass --overlap N (LR pixels) or --tile 0"
            )
        return self.radius


def load_onnx_model(path: str | os.PathLike, device: torch.device | str = "cpu"):
    """An exported ONNX file (see the module docstring) as an :class:`SRModel` that runs
    with ONNX Runtime: pass it to :func:`surge.upscale` with ``backend="onnxruntime"``.

    Files from `surge export` carry their scale and receptive radius; for other graphs with
    the same input/output contract the scale is measured on a small input.
    """
    path = Path(path)
    if not path.is_file():
        raise OnnxError(f"{path}: no such ONNX file")
    session = OnnxSession(path, "cpu")
    meta = session.session.get_modelmeta().custom_metadata_map
    shape = session.session.get_inputs()[0].shape
    in_channels = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else 3
    try:
        scale = int(meta[META_SCALE]) if META_SCALE in meta else _measure_scale(session, in_channels)
        radius = int(meta[META_RADIUS]) if META_RADIUS in meta else None
        per_pixel = int(meta.get(META_BYTES, _FOREIGN_BYTES_PER_LR_PIXEL))
    except (ValueError, RuntimeError) as exc:
        raise OnnxError(f"{path}: not an image-to-image graph surge can run ({_first_line(exc)})") from None
    graph = OnnxGraph(path, session, scale, radius, per_pixel)
    model = OnnxFileModel(name=path.stem, network=graph, scale=scale, source=f"ONNX file {path}",
                          precisions=("fp32",), in_channels=in_channels)
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() and onnx_cuda_available() else "cpu"
    return model.to(device)


def _measure_scale(session: OnnxSession, in_channels: int, size: int = 16) -> int:
    try:
        out = session(torch.zeros(1, in_channels, size, size))
    except Exception as exc:  # onnxruntime's own error types
        raise RuntimeError(_first_line(exc)) from None
    if out.ndim != 4 or out.shape[-1] != out.shape[-2] or out.shape[-1] % size:
        raise ValueError(f"a {size}x{size} input gave an output of shape {tuple(out.shape)}")
    return out.shape[-1] // size


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class OnnxFileModel(SRModel):
    """SRModel whose inference copy is the file's ONNX Runtime session (fp32 only)."""

    def _engine(self, precision: str | None = None, device=None, backend: str = "onnxruntime"):
        graph: OnnxGraph = self.network
        if backend != "onnxruntime":
            raise OnnxError(f"{graph.path}: an ONNX file runs on backend onnxruntime, not {backend}")
        precision = precision or getattr(self, "precision", "auto")
        if precision not in ("auto", "fp32"):
            raise OnnxError(f"{graph.path}: ONNX Runtime runs this graph in fp32 only, not {precision}")
        dev = self.device if device in (None, "auto") else torch.device(device)
        engines = self.__dict__.setdefault("_onnx_engines", {})
        if str(dev) not in engines:
            session = graph.session if dev.type == "cpu" else OnnxSession(graph.path, dev)
            engines[str(dev)] = OnnxFileEngine(self, session, dev)
        return engines[str(dev)]


class OnnxFileEngine:
    """The Engine call contract (fp32 NCHW host tensors in and out) for an ONNX file."""

    precision, backend, optimizations = "fp32", "onnxruntime", {}

    def __init__(self, model, session: OnnxSession, device: torch.device):
        self.model, self.session, self.device = model, session, device

    @property
    def scale(self) -> int:
        return self.model.scale

    def describe(self) -> str:
        return f"{self.model.name}: backend onnxruntime ({self.model.network.path}), {self.device}, fp32"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session(x)
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteOutputError(non_finite_message(self.model, self.device))
        return y
