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

from surge.errors import ModelFileError
from surge.models.bicubic import BicubicUpscaler
from surge.models.config import GENERATOR_PRESETS
from surge.models.files import load_model_file
from surge.models.generator import SuRGeGenerator

# Bundled models, best first: the default model of every command is the first one whose
# weights ship with the installed package, falling back to bicubic.
BUNDLED: dict[str, str] = {
    "surge-x4": "SuRGe adversarial stage (WGAN-GP + JS + GW + L1), trained on the 291 images",
    "surge-x4-psnr": "SuRGe PSNR-oriented stage (L1), trained on the 291 images",
    "surge-x4-gpu": "paper configuration trained on a GPU",
}
BUILTIN = {"bicubic": "MATLAB-compatible bicubic x4 (no weights)"}


@dataclass
class SRModel:
    """A loaded super-resolution model and what a caller needs to know to run it.

    ``network`` maps a float batch (B, C, h, w) in [0, 1] to (B, C, scale*h, scale*w).
    """

    name: str
    network: nn.Module
    scale: int
    source: str
    precisions: tuple[str, ...] = ("fp32",)
    provenance: dict = field(default_factory=dict)
    in_channels: int = 3

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context each side that influence an output pixel (tile overlap)."""
        return self.network.receptive_radius()

    @property
    def config(self):
        return getattr(self.network, "config", None)

    @property
    def device(self) -> torch.device:
        for p in self.network.parameters():
            return p.device
        return torch.device("cpu")

    def to(self, device) -> "SRModel":
        self.network.to(device)
        return self


def bundled_path(name: str) -> Path | None:
    """The installed weights file of a bundled model, or None if it does not ship yet."""
    ref = resources.files("surge") / "weights" / f"{name}.safetensors"
    path = Path(str(ref))
    return path if path.is_file() else None


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


def load_model(name_or_path: str | Path | SRModel | None = None, device: str | torch.device = "cpu") -> SRModel:
    """Load a model by name (``bicubic``, a bundled name, a preset) or from a file path.

    ``None`` or ``"default"`` picks the best bundled model.
    """
    if isinstance(name_or_path, SRModel):
        return name_or_path.to(device)
    name = str(name_or_path) if name_or_path is not None else "default"
    if name == "default":
        name = default_model_name()
    if name in BUILTIN:
        return SRModel(name=name, network=BicubicUpscaler(4).eval(), scale=4, source="built-in", precisions=("fp32",)).to(device)
    if name in BUNDLED:
        path = bundled_path(name)
        if path is None:
            raise ModelFileError(f"{name}: bundled model's weights are not in this installation (see `surge models`)")
        return _from_file(path, name, f"bundled ({path.name})", device)
    if name in GENERATOR_PRESETS:
        net = SuRGeGenerator(GENERATOR_PRESETS[name]).eval()
        return SRModel(
            name=name, network=net, scale=4, source="architecture preset, random init (untrained)",
            precisions=("fp32", "bf16", "fp16"),
        ).to(device)
    path = Path(name)
    if path.suffix == ".safetensors" or path.exists() or "/" in name or "\\" in name:
        return _from_file(path, path.stem, str(path), device)
    known = ", ".join([*BUILTIN, *BUNDLED, *GENERATOR_PRESETS])
    raise ModelFileError(f"{name}: unknown model (not a file, and not one of: {known})")


def _from_file(path: Path, name: str, source: str, device) -> SRModel:
    module, provenance = load_model_file(path)
    if not isinstance(module, SuRGeGenerator):
        raise ModelFileError(f"{path}: holds a {type(module).__name__}, not a generator; it cannot upscale")
    return SRModel(
        name=name, network=module, scale=module.scale, source=source,
        precisions=("fp32", "bf16", "fp16"), provenance=provenance,
    ).to(device)


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
