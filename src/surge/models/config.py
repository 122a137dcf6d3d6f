"""Typed architecture configurations and named presets.

A config fully determines the module's parameters, so it travels inside every weights file
(see :mod:`surge.models.files`) and a file can be loaded without any other information.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from surge.errors import ConfigError

# Bounds of every size field (inclusive): far beyond any useful x4 model, yet small enough that a
# corrupt or hostile model file cannot make the loader allocate terabytes or loop for hours.
CHANNELS = (1, 4)  # gray .. RGBA
WIDTH = (1, 1024)
BLOCKS = (0, 64)
KERNEL = (1, 15)
CRITIC_STAGES = (0, 8)  # each halves the input
POOL = (1, 16)
HIDDEN = (1, 4096)

Norm = Literal["batch", "none"]
Mixing = Literal["convex", "sum"]
OutputActivation = Literal["tanh", "none"]


@dataclass(frozen=True)
class GeneratorConfig:
    """SuRGe generator. Defaults are the paper configuration (~4.04M parameters).

    ``norm``: "batch" as in the paper, or "none" (convs then get biases).
    ``mixing``: "convex" = softmax-of-logits weights (F0, F1), "sum" = plain addition
    of the skips (ablation).
    ``output_activation``: "tanh" (paper: output in [-1, 1], mapped to [0, 1]) or "none".
    ``global_residual``: add a bicubic x4 upsampling of the input to the output, so the
    network learns only the missing detail (not in the paper; trains much faster).
    """

    in_channels: int = 3
    out_channels: int = 3
    width0: int = 64  # C0, R0, I0, U0
    width1: int = 128  # C1, R1, I1, U1
    blocks0: int = 8
    blocks1: int = 8
    head_kernel: int = 9  # C0, C1 and output conv
    body_kernel: int = 3  # residual blocks, I0, I1, U0, U1
    norm: Norm = "batch"
    mixing: Mixing = "convex"
    output_activation: OutputActivation = "tanh"
    global_residual: bool = False
    mix0_init: tuple[float, float] = (0.5, 0.5)  # (mu, nu) for (I0, C0)
    mix1_init: tuple[float, float, float] = (0.33, 0.33, 0.34)  # (alpha, beta, gamma) for (I1, X, S)

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels"):
            _check_int("generator", name, getattr(self, name), *CHANNELS)
        for name in ("width0", "width1"):
            _check_int("generator", name, getattr(self, name), *WIDTH)
        for name in ("blocks0", "blocks1"):
            _check_int("generator", name, getattr(self, name), *BLOCKS)
        for name in ("head_kernel", "body_kernel"):
            _check_int("generator", name, getattr(self, name), *KERNEL)
            if getattr(self, name) % 2 == 0:
                raise ConfigError(f"generator.{name} must be odd (same padding), got {getattr(self, name)}")
        if not isinstance(self.global_residual, bool):
            raise ConfigError(f"generator.global_residual must be true or false, got {self.global_residual!r}")
        if self.norm not in ("batch", "none"):
            raise ConfigError(f"generator.norm must be 'batch' or 'none', got {self.norm!r}")
        if self.mixing not in ("convex", "sum"):
            raise ConfigError(f"generator.mixing must be 'convex' or 'sum', got {self.mixing!r}")
        if self.output_activation not in ("tanh", "none"):
            raise ConfigError(f"generator.output_activation must be 'tanh' or 'none', got {self.output_activation!r}")
        if self.output_activation == "tanh" and self.global_residual:
            raise ConfigError("generator: tanh output and global_residual exclude each other")
        _check_simplex("mix0_init", self.mix0_init, 2)
        _check_simplex("mix1_init", self.mix1_init, 3)

    @property
    def scale(self) -> int:
        return 4

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratorConfig":
        return dataclass_from_dict(cls, data, "generator config")


@dataclass(frozen=True)
class CriticConfig:
    """WGAN-GP critic: residual blocks with PixelNorm, no BatchNorm, no sigmoid.

    Each stage is a residual block followed by a stride-2 conv that doubles the width
    (capped at ``max_width``); the head is adaptive average pooling to ``pool_size`` and
    three dense layers, so any input size works.
    """

    in_channels: int = 3
    width: int = 64
    max_width: int = 256
    stages: int = 4
    pool_size: int = 4
    hidden: int = 256

    def __post_init__(self) -> None:
        _check_int("critic", "in_channels", self.in_channels, *CHANNELS)
        for name in ("width", "max_width"):
            _check_int("critic", name, getattr(self, name), *WIDTH)
        _check_int("critic", "stages", self.stages, *CRITIC_STAGES)
        _check_int("critic", "pool_size", self.pool_size, *POOL)
        _check_int("critic", "hidden", self.hidden, *HIDDEN)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CriticConfig":
        return dataclass_from_dict(cls, data, "critic config")


def _check_int(section: str, name: str, value, lo: int, hi: int) -> None:
    # bool is an int subclass: `width0 = true` must not silently mean 1.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{section}.{name} must be an integer in {lo}..{hi}, got {value!r}")


def _check_simplex(name: str, values, n: int) -> None:
    numbers = isinstance(values, (tuple, list)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )
    if not numbers or len(values) != n or any(v <= 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise ConfigError(f"generator.{name} must be {n} positive weights summing to 1, got {values!r}")


def dataclass_from_dict(cls, data: dict, where: str):
    """Build a config dataclass from a mapping (TOML, JSON), naming ``where`` in every error.

    Lists become tuples (TOML/JSON have no tuples); unknown keys are an error, not ignored.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# Named architecture presets, usable before any weights exist (`surge info surge`).
GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    # The paper's generator, exactly: BatchNorm, tanh output, no global residual.
    "surge": GeneratorConfig(),
    # Same size, no BatchNorm, bicubic global residual: trains far faster (training-notes.md).
    "surge-residual": GeneratorConfig(norm="none", output_activation="none", global_residual=True),
    # Small variants for CPU training budgets.
    "surge-small": GeneratorConfig(
        width0=48, width1=64, blocks0=6, blocks1=6, head_kernel=5,
        norm="none", output_activation="none", global_residual=True,
    ),
    "surge-tiny": GeneratorConfig(
        width0=8, width1=8, blocks0=1, blocks1=1, head_kernel=3,
        norm="none", output_activation="none", global_residual=True,
    ),
}
