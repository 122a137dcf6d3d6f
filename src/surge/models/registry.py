"""The catalogue of model names: built-ins, bundled weights, presets, and where their files are.

Resolution order of a name (see :func:`surge.inference.runtime.load_model`, which turns one
into a ready-to-run model): the built-in ``bicubic``; a bundled model (weights shipped in
``surge/weights``); an architecture preset (random init, for `surge info` and tests); a path
to a ``.safetensors`` file. Nothing here runs a model: ``models/`` never imports
``inference/`` (tests/test_layers.py).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from surge.errors import ModelFileError, UntrainedModelError
from surge.models.config import GENERATOR_PRESETS

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
        rows.append({"name": name, "kind": "preset (untrained)", "available": True, "description": preset_description(cfg)})
    return rows


def default_model_name() -> str:
    for name in BUNDLED:
        if bundled_path(name) is not None:
            return name
    return "bicubic"


def preset_description(cfg) -> str:
    extras = []
    extras.append("BatchNorm" if cfg.norm == "batch" else "no norm")
    extras.append("tanh output" if cfg.output_activation == "tanh" else "linear output")
    if cfg.global_residual:
        extras.append("bicubic global residual")
    return (
        f"c{cfg.width0}/c{cfg.width1}, {cfg.blocks0}+{cfg.blocks1} blocks, k{cfg.head_kernel}, "
        + ", ".join(extras)
    )


def refuse_untrained(model, allowed: bool) -> None:
    """Raise UntrainedModelError unless ``model`` is trained or ``allowed`` (--allow-untrained):
    an architecture preset has random weights, so its images and scores would be noise."""
    if model is not None and not getattr(model, "trained", True) and not allowed:
        raise UntrainedModelError(
            f"{model.name}: is an untrained architecture preset (random weights: its output is noise); "
            "use a trained model (`surge models`) or pass --allow-untrained"
        )
