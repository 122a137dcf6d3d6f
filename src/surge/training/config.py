"""Typed experiment configuration: one TOML file per experiment under ``configs/``.

A file has sections ``[data]``, ``[generator]``, ``[critic]``, ``[optim]``, ``[loss]``,
``[train]``; any value can be overridden on the command line as ``section.key=value``
(TOML syntax for the value, e.g. ``train.steps=500`` or ``data.train_dirs=["a","b"]``).
Unknown keys and bad values fail early with a message naming the file and key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from surge.errors import ConfigError
from surge.losses.combine import LossConfig
from surge.models.config import GENERATOR_PRESETS, CriticConfig, GeneratorConfig, dataclass_from_dict


@dataclass(frozen=True)
class DataConfig:
    train_dirs: tuple[str, ...] = ("../shared/datasets/train/T91", "../shared/datasets/train/BSD200")
    # Optional LR folders, one per train_dir (file "<name>.*" or "<name>x4.*"); empty = LR made
    # on the fly with the MATLAB-compatible bicubic.
    lr_dirs: tuple[str, ...] = ()
    hr_size: int = 96
    batch_size: int = 16
    workers: int = 0
    augment: bool = True
    val_dir: str | None = "../shared/datasets/benchmark/Set5"  # HR + LR_bicubic_X4 set; None = no validation

    def __post_init__(self):
        if self.hr_size % 4 or self.hr_size < 8:
            raise ConfigError(f"data.hr_size must be a multiple of 4 and >= 8, got {self.hr_size}")
        if self.batch_size < 1:
            raise ConfigError("data.batch_size must be >= 1")
        if self.workers < 0:
            raise ConfigError("data.workers must be >= 0")
        if self.lr_dirs and len(self.lr_dirs) != len(self.train_dirs):
            raise ConfigError(f"data.lr_dirs must list one folder per data.train_dirs entry ({len(self.train_dirs)})")


@dataclass(frozen=True)
class OptimConfig:
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of the peak
    grad_clip: float = 0.0  # 0 = off
    ema_decay: float = 0.0  # 0 = off; else the shipped weights are the EMA
    critic_steps: int = 1

    def __post_init__(self):
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"optim.schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if not (self.lr_g > 0 and self.lr_d > 0):
            raise ConfigError("optim.lr_g and optim.lr_d must be positive")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError("optim.ema_decay must be in [0, 1)")
        if self.critic_steps < 1:
            raise ConfigError("optim.critic_steps must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    name: str = "experiment"
    stage: Literal["psnr", "gan"] = "psnr"
    steps: int = 1000
    seed: int = 0
    init_from: str | None = None  # generator weights (.safetensors) to start from, e.g. the PSNR stage
    precision: Literal["fp32", "bf16", "amp"] = "fp32"  # bf16 autocast (CPU/GPU) or fp16 AMP (GPU)
    device: str = "auto"
    threads: int = 0  # torch CPU threads, 0 = torch's default
    max_minutes: float = 0.0  # wall-time budget of this process; 0 = none. Stops cleanly with a checkpoint.
    log_every: int = 1
    val_every: int = 250
    ckpt_every: int = 250
    out_dir: str = "runs"

    def __post_init__(self):
        if self.stage not in ("psnr", "gan"):
            raise ConfigError(f"train.stage must be 'psnr' or 'gan', got {self.stage!r}")
        if self.precision not in ("fp32", "bf16", "amp"):
            raise ConfigError(f"train.precision must be fp32, bf16 or amp, got {self.precision!r}")
        for key in ("steps", "log_every", "val_every", "ckpt_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1")


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.train.stage == "psnr" and self.loss.needs_critic:
            raise ConfigError("the psnr stage has no critic: set loss.adversarial = false (or train.stage = 'gan')")
        if self.train.stage == "gan" and not self.loss.needs_critic:
            raise ConfigError("the gan stage needs the adversarial term: set loss.adversarial = true")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "ExperimentConfig":
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)} (known: {', '.join(sections)})")
        values = {}
        for name, f in sections.items():
            section = dict(data.get(name, {}))
            section_cls = _section_class(name)
            if name == "generator" and "preset" in section:
                preset = section.pop("preset")
                if preset not in GENERATOR_PRESETS:
                    raise ConfigError(f"{source}: unknown generator preset {preset!r} (known: {', '.join(GENERATOR_PRESETS)})")
                section = {**GENERATOR_PRESETS[preset].to_dict(), **section}
            try:
                values[name] = dataclass_from_dict(section_cls, section, f"{source}: [{name}]")
            except ConfigError as exc:
                msg = str(exc)
                raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}") from None
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def _section_class(name: str):
    return {
        "data": DataConfig, "generator": GeneratorConfig, "critic": CriticConfig,
        "optim": OptimConfig, "loss": LossConfig, "train": TrainConfig,
    }[name]


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    apply_overrides(data, overrides, str(path))
    return ExperimentConfig.from_dict(data, source=str(path))


def apply_overrides(data: dict, overrides, source: str = "overrides") -> None:
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # bare strings need no quotes on the command line
        data.setdefault(parts[0], {})[parts[1]] = value


def config_from_dict(data: dict) -> ExperimentConfig:
    """Rebuild a config saved in a checkpoint (``ExperimentConfig.to_dict()``)."""
    return ExperimentConfig.from_dict(data, source="checkpoint config")
