"""Model names -> ready-to-run models: built-ins, bundled weights, presets and files.

Resolution order of a name: the built-in ``bicubic``; a bundled model (weights shipped in
``surge/weights``); an architecture preset (random init, for `surge info` and tests); a
path to a ``.safetensors`` file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from surge.errors import ModelFileError, SurgeError
from surge.models.bicubic import BicubicUpscaler
from surge.models.config import GENERATOR_PRESETS
from surge.models.files import load_model_file
from surge.models.generator import SuRGeGenerator

# Bundled models, best first: the default model of every command is the first one whose
# weights ship with the installed package, falling back to bicubic.
BUNDLED: dict[str, str] = {
    "surge-x4": "SuRGe adversarial stage (WGAN-GP + JS + GW + L1, invariant dynamic weights), 0.8 blend with surge-x4-psnr: sharper texture; trained on the 291 images",
    "surge-x4-psnr": "SuRGe PSNR-oriented stage (L1), trained on the 291 images",
    "surge-x4-real": "for real photos (JPEG, noise, blur): surge-x4-psnr fine-tuned on real-world degradations (L1, then SuRGe adversarial)",
    "surge-x4-real-psnr": "for real photos, most faithful: 4.6M-parameter generator (paper widths, no BatchNorm) trained from random weights on a GPU, L1 on real-world degradations (no adversarial stage)",
    "surge-x4-gpu": "paper configuration trained on a GPU",
}
BUILTIN = {"bicubic": "MATLAB-compatible bicubic x4 (no weights)"}
# Each bundled model trained on clean bicubic LR, and its side trained on real-world degradations
# (the same kind of output: natural texture, or most faithful). `surge upscale --real-for-jpeg`.
REAL_WORLD_COUNTERPART = {"surge-x4": "surge-x4-real", "surge-x4-psnr": "surge-x4-real-psnr"}


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
        from surge.inference._engine import resolve_device

        self._device = resolve_device(device)
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
        import copy

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
        from surge.inference._engine import BACKENDS, Engine, resolve_device, resolve_precision

        if backend not in BACKENDS:
            raise SurgeError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
        dev = self.device if device is None else resolve_device(device)
        concrete = resolve_precision(self, self.precision if precision is None else precision, dev, backend)
        key = (concrete, str(dev), backend)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = Engine(self, concrete, dev, backend)
        return engine


def bundled_path(name: str) -> Path | None:
    """The installed weights file of a bundled model, or None if it does not ship yet."""
    ref = resources.files("surge") / "weights" / f"{name}.safetensors"
    path = Path(str(ref))
    return path if path.is_file() else None


def weights_file(name: str | Path) -> Path:
    """The weights file behind a model name: a bundled model's installed file, or a path to one.

    For commands that read weights rather than run a model (`surge interpolate`, scripts). Raises
    :class:`ModelFileError` for names without weights (built-in bicubic, untrained presets).
    """
    name = str(name)
    if name == "default":
        name = default_model_name()
    if name in BUILTIN or name in GENERATOR_PRESETS:
        raise ModelFileError(f"{name}: has no weights file (a built-in model or an untrained preset)")
    if name in BUNDLED:
        path = bundled_path(name)
        if path is None:
            raise ModelFileError(f"{name}: bundled model's weights are not in this installation (see `surge models`)")
        return path
    path = Path(name)
    if not path.is_file():
        raise ModelFileError(f"{name}: no such model file or bundled model")
    return path


def available_models() -> list[dict]:
    """Every model name `surge` accepts, with its kind and whether it can run now."""
    rows = [{"name": n, "kind": "built-in", "available": True, "description": d} for n, d in BUILTIN.items()]
    for name, desc in BUNDLED.items():
        rows.append({"name": name, "kind": "bundled", "available": bundled_path(name) is not None, "description": desc})
    for name, cfg in GENERATOR_PRESETS.items():
        rows.append({"name": name, "kind": "preset (untrained)", "available": True, "description": _preset_description(cfg)})
    return rows


def default_model_name() -> str:
    for name in BUNDLED:
        if bundled_path(name) is not None:
            return name
    return "bicubic"


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
    from surge.inference._engine import PRECISIONS

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
            description=_preset_description(cfg), trained=False,
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
        description=description or provenance.get("description") or f"SuRGe generator ({_preset_description(cfg)})",
    )


def _preset_description(cfg) -> str:
    extras = []
    extras.append("BatchNorm" if cfg.norm == "batch" else "no norm")
    extras.append("tanh output" if cfg.output_activation == "tanh" else "linear output")
    if cfg.global_residual:
        extras.append("bicubic global residual")
    return (
        f"c{cfg.width0}/c{cfg.width1}, {cfg.blocks0}+{cfg.blocks1} blocks, k{cfg.head_kernel}, "
        + ", ".join(extras)
    )
