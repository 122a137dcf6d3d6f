"""The public model object: :class:`SRModel`, from :func:`load_model` (= ``surge.load_model``).

It lives with inference because running is what it adds to a network: ``models/`` holds the
pure ``nn.Module``s, their configs, files and the catalogue of names
(:mod:`surge.models.registry`), and this module turns a name or file into a network plus what it
needs and can do, with its cached inference copies (:class:`surge.inference._engine.Engine`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from surge import PRECISIONS
from surge.errors import ModelFileError, SurgeError
from surge.inference._engine import BACKENDS, Engine, resolve_device, resolve_precision
from surge.models.bicubic import BicubicUpscaler
from surge.models.config import GENERATOR_PRESETS
from surge.models.files import load_model_file
from surge.models.generator import SuRGeGenerator
from surge.models.registry import BUILTIN, BUNDLED, default_model_name, preset_description, weights_file


@dataclass(eq=False)
class SRModel:
    """One loaded super-resolution model: what it needs, what it can do, and how to run it.

    The public model object (returned by :func:`surge.load_model`), in the manner of
    spandrel's model descriptors. Calling it runs the network on one float batch::

        model = surge.load_model("default", device="cpu", precision="fp32")
        sr = model(lr)          # (B, in_channels, h, w) in [0, 1] -> (B, out_channels, scale*h, scale*w)

    The inference copy that does the work (precision cast, BatchNorm folded, sub-pixel
    convs, or an ONNX Runtime session) is built on first use, once per (precision, device,
    backend), and kept on this object: ``surge.upscale(img, model=model)`` in a loop builds
    it once. ``network`` is the model as loaded and is never modified by inference; after
    changing its weights, call :meth:`to` (or :meth:`clear_cache`) so the next call rebuilds.
    """

    name: str
    network: nn.Module = field(repr=False)
    scale: int
    source: str
    precisions: tuple[str, ...] = ("fp32",)
    provenance: dict = field(default_factory=dict)
    in_channels: int = 3
    out_channels: int = 3
    description: str = ""
    # False only for architecture presets: random weights that cannot upscale meaningfully.
    trained: bool = True
    # Input sides must be multiples of this and at least ``min_size`` LR pixels (every
    # convolutional model here accepts any size; the fields are part of the contract).
    size_multiple: int = 1
    min_size: int = 1
    # Defaults for ``model(x)`` and ``surge.upscale``; "auto" = best native precision.
    precision: str = "auto"
    _device: torch.device | None = field(default=None, init=False, repr=False)
    # Whether ``_device`` came from "auto" (the onnxruntime backend may then pick the CPU).
    _auto_device: bool = field(default=False, init=False, repr=False)
    _engines: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self._device is None:
            self._device = next((p.device for p in self.network.parameters()), torch.device("cpu"))

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context each side that influence an output pixel (tile overlap)."""
        return self.network.receptive_radius()

    @property
    def config(self):
        return getattr(self.network, "config", None)

    @property
    def device(self) -> torch.device:
        """Where the model runs (and where ``network`` lives)."""
        return self._device

    def to(self, device) -> "SRModel":
        """Move to ``device`` ("auto" = CUDA when available); drops built inference copies."""
        self._device = resolve_device(device)
        self._auto_device = device is None or str(device) == "auto"
        self.network.to(self._device)
        self.clear_cache()
        return self

    def clear_cache(self) -> None:
        """Forget the inference copies, e.g. after ``network``'s weights changed."""
        self._engines.clear()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Float batch (B, in_channels, h, w) in [0, 1] -> float32 (B, out_channels, scale*h, scale*w)
        on ``x``'s device, unclamped, at this model's ``precision`` on its ``device``."""
        self.check_input(tuple(x.shape))
        return self._engine()(x).to(x.device)

    def prepare(self, precision: str | None = None, device=None, backend: str = "torch") -> "SRModel":
        """Build the inference copy for these settings now (it is otherwise built on first
        use), so that a bad precision/backend/device fails before any work; returns self."""
        self._engine(precision, device, backend)
        return self

    def export_onnx(self, path: str | Path, opset: int | None = None, optimize: bool = True) -> Path:
        """Write the fp32 graph that ``backend="onnxruntime"`` runs (BatchNorm folded, sub-pixel
        convs; as loaded with ``optimize=False``) to ``path``, atomically, with dynamic
        batch/height/width: input ``lr`` (N, in_channels, H, W), output ``sr``, not clamped."""
        from surge.inference.onnx_backend import DEFAULT_OPSET, export_onnx
        from surge.inference.optimize import optimize_for_inference

        if not isinstance(self.network, SuRGeGenerator):
            raise SurgeError(f"{self.name}: only SuRGe generators can be exported (this is {type(self.network).__name__})")
        network = optimize_for_inference(self.network)[0] if optimize else copy.deepcopy(self.network).eval()
        return export_onnx(network, path, in_channels=self.in_channels, opset=DEFAULT_OPSET if opset is None else opset)

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise ValueError (one line) if a batch of ``shape`` does not meet the requirements."""
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"model {self.name}: expected a (B, {self.in_channels}, H, W) batch, got shape {shape}")
        h, w = shape[2:]
        if min(h, w) < self.min_size or h % self.size_multiple or w % self.size_multiple:
            raise ValueError(
                f"model {self.name}: input {w}x{h} px does not meet its size requirement "
                f"(at least {self.min_size} px, multiples of {self.size_multiple})"
            )

    def _engine(self, precision: str | None = None, device=None, backend: str = "torch"):
        """The cached inference copy for (precision, device, backend); built on first use.

        Internal to surge (``surge.upscale``, the evaluation runner); users call the model.
        """
        if backend not in BACKENDS:
            raise SurgeError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
        automatic = self._auto_device if device is None else str(device) == "auto"
        dev = self.device if device is None else resolve_device(device)
        if backend == "onnxruntime":
            from surge.inference.onnx_backend import onnx_device

            dev = onnx_device(dev, automatic)
        concrete = resolve_precision(self, self.precision if precision is None else precision, dev, backend)
        key = (concrete, str(dev), backend)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = Engine(self, concrete, dev, backend)
        return engine


def load_model(
    name_or_path: str | Path | SRModel | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> SRModel:
    """Load a model by name (``bicubic``, a bundled name, a preset) or from a file path.

    ``None`` or ``"default"`` picks the best bundled model. ``device`` ("auto" = CUDA when
    available) is where it runs; ``precision`` ("auto", "fp32", "bf16", "fp16") is what
    calling it and ``surge.upscale`` use unless told otherwise. An SRModel is returned
    itself, moved and set to ``device``/``precision`` when they are not "auto".
    """
    if precision not in PRECISIONS:
        raise SurgeError(f"unknown precision {precision!r} (use one of {', '.join(PRECISIONS)})")
    given = isinstance(name_or_path, SRModel)
    model = name_or_path if given else _load(name_or_path)
    if precision != "auto":
        if precision not in model.precisions:
            raise SurgeError(f"model {model.name} does not support precision {precision} (supports {', '.join(model.precisions)})")
        model.precision = precision
    return model.to(device) if not given or device != "auto" else model


def _load(name_or_path: str | Path | None) -> SRModel:
    name = str(name_or_path) if name_or_path is not None else "default"
    if name == "default":
        name = default_model_name()
    if name in BUILTIN:
        return SRModel(
            name=name, network=BicubicUpscaler(4).eval(), scale=4, source="built-in", precisions=("fp32",),
            description=BUILTIN[name],
        )
    if name in BUNDLED:
        path = weights_file(name)
        return _from_file(path, name, f"bundled ({path.name})", BUNDLED[name])
    if name in GENERATOR_PRESETS:
        cfg = GENERATOR_PRESETS[name]
        return SRModel(
            name=name, network=SuRGeGenerator(cfg).eval(), scale=4, source="architecture preset, random init (untrained)",
            precisions=("fp32", "bf16", "fp16"), in_channels=cfg.in_channels, out_channels=cfg.out_channels,
            description=preset_description(cfg), trained=False,
        )
    path = Path(name)
    if path.suffix == ".safetensors" or path.exists() or "/" in name or "\\" in name:
        return _from_file(path, path.stem, str(path))
    known = ", ".join([*BUILTIN, *BUNDLED, *GENERATOR_PRESETS])
    raise ModelFileError(f"{name}: unknown model (not a file, and not one of: {known})")


def _from_file(path: Path, name: str, source: str, description: str = "") -> SRModel:
    module, provenance = load_model_file(path)
    if not isinstance(module, SuRGeGenerator):
        raise ModelFileError(f"{path}: holds a {type(module).__name__}, not a generator; it cannot upscale")
    cfg = module.config
    return SRModel(
        name=name, network=module, scale=module.scale, source=source,
        precisions=("fp32", "bf16", "fp16"), provenance=provenance,
        in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        description=description or provenance.get("description") or f"SuRGe generator ({preset_description(cfg)})",
    )
