"""Typed experiment configuration: one TOML file per experiment under ``configs/``.

A file has sections ``[data]``, ``[generator]``, ``[critic]``, ``[optim]``, ``[loss]``,
``[train]``; any value can be overridden on the command line as ``section.key=value``
(TOML syntax for the value, e.g. ``train.steps=500`` or ``data.train_dirs=["a","b"]``;
nested tables by a longer path, ``data.degradation.first.jpeg_range=[30, 60]``).
Unknown keys and bad values fail early with a message naming the file and key.

A file may start with ``base = "other.toml"`` (a path relative to the file): it then holds
only what differs from that experiment. Tables merge key by key, at any depth; any other
value (a number, a string, an array) replaces the base's. Bases may have bases; a cycle is an
error. Runs record the merged result (``config.json``), so a run never depends on the chain;
that file is itself a config (``surge train runs/x/config.json`` repeats the run).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union, get_args, get_origin, get_type_hints

from surge.data.degradations import DegradationConfig
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
    val_dir: str | None = "../shared/datasets/benchmark/Set5"  # HR + LR_bicubic_X4 set; None or "" = no validation
    # A [data.degradation] table turns on the real-world degradation model (surge.data.degradations)
    # for the training LR; absent = MATLAB bicubic LR, as before.
    degradation: DegradationConfig | None = None
    # Where batches are made. loader: a torch DataLoader of CPU processes (data.workers), numpy/Pillow
    # (surge.data.pairs); device: decoded once onto the training device, cropped and degraded there
    # by batched torch ops (surge.data.device_pairs); there data.workers processes only draw each
    # batch's random choices (crops, blur kernels: numpy), off the thread that launches the device
    # work (1-2 are plenty). Same HR crops either way.
    pipeline: Literal["loader", "device"] = "loader"

    def __post_init__(self):
        check_field_types(self, "data")
        if isinstance(self.degradation, dict):
            object.__setattr__(self, "degradation", DegradationConfig.from_dict(self.degradation))
        if not isinstance(self.degradation, (DegradationConfig, type(None))):
            raise ConfigError(f"data.degradation must be a table, got {self.degradation!r}")
        if self.degradation is not None and self.lr_dirs:
            raise ConfigError("data.degradation makes the LR from HR: it cannot be combined with data.lr_dirs")
        if self.pipeline == "device" and self.lr_dirs:
            raise ConfigError('data.pipeline = "device" makes the LR on the device: it cannot read data.lr_dirs '
                              '(use data.pipeline = "loader")')
        if not self.train_dirs:
            raise ConfigError("data.train_dirs must list at least one folder")
        if self.hr_size % 4 or self.hr_size < 8:
            raise ConfigError(f"data.hr_size must be a multiple of 4 and >= 8, got {self.hr_size}")
        _at_least("data.batch_size", self.batch_size, 1)
        _at_least("data.workers", self.workers, 0)
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
        check_field_types(self, "optim")
        for key in ("lr_g", "lr_d"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"optim.{key} must be a positive number, got {_show(value)}")
        for i, beta in enumerate(self.betas):
            if not 0 <= beta < 1:
                raise ConfigError(f"optim.betas[{i}] must be in [0, 1), got {_show(beta)}")
        _at_least("optim.warmup_steps", self.warmup_steps, 0)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {_show(self.min_lr_ratio)}")
        _at_least("optim.grad_clip", self.grad_clip, 0)
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"optim.ema_decay must be in [0, 1), got {_show(self.ema_decay)}")
        _at_least("optim.critic_steps", self.critic_steps, 1)


@dataclass(frozen=True)
class TrainConfig:
    name: str = "experiment"
    stage: Literal["psnr", "gan"] = "psnr"
    steps: int = 1000
    seed: int = 0
    init_from: str | None = None  # generator weights (.safetensors) to start from, e.g. the PSNR stage
    # auto: bf16 autocast where the CPU/GPU has native bf16, else fp32 (surge.training.precision);
    # bf16: bf16 autocast anyway; amp: fp16 autocast with a grad scaler (CUDA only).
    precision: Literal["auto", "fp32", "bf16", "amp"] = "auto"
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    threads: int = 0  # torch CPU threads, 0 = torch's default
    # torch.compile (inductor) of the generator's training forward and backward. The first step
    # pays the compile (36 s for surge-small on a 2-core Zen 3 CPU), after which steps ran only
    # 1.04-1.07x faster there (docs/results/device-data.md); GPUs unmeasured. Needs a C++ compiler
    # on CPU, Triton on CUDA. Off by default: compiled kernels round differently, so losses differ
    # from an eager run's in the last bits (a compiled run resumed compiled is exact: tested on CPU).
    compile: bool = False
    # With compile: "reduce-overhead" also replays the compiled forward and backward as CUDA graphs
    # (one launch each instead of one per kernel: for a step whose small LR-size kernels take less
    # time than their launches). CUDA only (on CPU it is "default"); unmeasured on a GPU.
    compile_mode: Literal["default", "reduce-overhead"] = "default"
    # CUDA: let cuDNN time its algorithms for each conv shape once (training shapes never change)
    # instead of picking by heuristics; the choice may differ between runs, as CUDA's conv
    # backward sums already do. No effect on CPU. Not yet run on a GPU.
    cudnn_benchmark: bool = True
    max_minutes: float = 0.0  # wall-time budget of this process; 0 = none. Stops cleanly with a checkpoint.
    log_every: int = 1
    val_every: int = 250
    ckpt_every: int = 250
    out_dir: str = "runs"

    def __post_init__(self):
        check_field_types(self, "train")
        if not self.name or self.name in (".", "..") or "/" in self.name or "\\" in self.name:
            raise ConfigError(f"train.name must be a plain folder name, got {_show(self.name)}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {_show(self.device)}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"train.seed must be in [0, 2**63), got {self.seed}")
        _at_least("train.threads", self.threads, 0)
        if not (math.isfinite(self.max_minutes) and self.max_minutes >= 0):
            raise ConfigError(f"train.max_minutes must be >= 0 (0 = no budget), got {_show(self.max_minutes)}")
        for key in ("steps", "log_every", "val_every", "ckpt_every"):
            _at_least(f"train.{key}", getattr(self, key), 1)
        if not self.out_dir:
            raise ConfigError("train.out_dir must not be empty")


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
        # GW compares the distances within the (global) batch: one image has none, and two have one
        # distance each side, equal (1) once both matrices are divided by their max: GW = 0, no gradient.
        need = 3 if self.loss.gw_normalize else 2
        if "gw" in self.loss.active_terms() and self.data.batch_size < need:
            raise ConfigError(f"loss.gw needs data.batch_size >= {need} (the global batch over all processes), "
                              f"got {self.data.batch_size}: GW would be 0 with no gradient")

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
                section = typed_section(section_cls, section, name)
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


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                runnable_here: bool = True) -> ExperimentConfig:
    """The experiment at ``path`` with ``overrides``; ``runnable_here=False`` for reading a config
    that will run elsewhere (e.g. a CUDA config examined on a CPU machine)."""
    path = Path(path)
    data = read_config_data(path)
    apply_overrides(data, overrides, str(path))
    cfg = ExperimentConfig.from_dict(data, source=str(path))
    if runnable_here:
        check_runnable_here(cfg, str(path))
    return cfg


def read_config_data(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """The TOML of ``path`` merged onto its ``base`` chain (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.suffix.lower() == ".json":
        return _read_run_record(path)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must be the path of another config file, got {base!r}")
    chain = _chain + (path.resolve(),)
    base_path = path.parent / base
    if base_path.resolve() in chain:
        names = " -> ".join(str(p.name) for p in chain + (base_path.resolve(),))
        raise ConfigError(f"{path}: base chain is a cycle ({names})")
    if not base_path.is_file():
        raise ConfigError(f"{path}: base {base!r} not found (looked for {base_path})")
    return merge_tables(read_config_data(base_path, chain), data)


def _read_run_record(path: Path) -> dict:
    """A run's ``config.json``: already merged, so it names no base."""
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a table of sections, got {type(data).__name__}")
    if "base" in data:
        raise ConfigError(f"{path}: a JSON config is a run's merged record and cannot name a base")
    return data


def merge_tables(base: dict, child: dict) -> dict:
    """``child`` over ``base``: tables merge recursively, anything else in ``child`` replaces."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_tables(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_overrides(data: dict, overrides, source: str = "overrides") -> None:
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # bare strings need no quotes on the command line
        table = data
        for depth, part in enumerate(parts[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:depth + 1])} is a value, not a table")
        table[parts[-1]] = value


def config_from_dict(data: dict) -> ExperimentConfig:
    """Rebuild a config saved in a checkpoint (``ExperimentConfig.to_dict()``)."""
    cfg = ExperimentConfig.from_dict(data, source="checkpoint config")
    check_runnable_here(cfg, "checkpoint config")
    return cfg


def check_runnable_here(cfg: ExperimentConfig, source: str) -> None:
    """Settings that are valid in general but not on this machine (no CUDA)."""
    import torch

    t = cfg.train
    if t.device.startswith("cuda"):
        index = int(t.device.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            raise ConfigError(f'{source}: train.device = "{t.device}" but CUDA is not available here (use "auto" or "cpu")')
        if index >= torch.cuda.device_count():
            raise ConfigError(f"{source}: train.device = \"{t.device}\" but this machine has {torch.cuda.device_count()} CUDA device(s)")
    on_cuda = t.device.startswith("cuda") or (t.device == "auto" and torch.cuda.is_available())
    if t.precision == "amp" and not on_cuda:
        raise ConfigError(f'{source}: train.precision = "amp" (fp16 with a grad scaler) needs a CUDA device; '
                          'this run is on the CPU (use "auto", "fp32" or "bf16")')


# --- field types ------------------------------------------------------------------------
# TOML and JSON values checked against the dataclass annotations: a bool is not an int,
# a float is not an int, an int is accepted (and stored) as a float.
_BAD = object()


def typed_section(cls, section: dict, name: str) -> dict:
    """``section`` with each known key checked against ``cls``'s annotation (unknown keys left as they are)."""
    hints = get_type_hints(cls)
    out = dict(section)
    for key, value in section.items():
        if key in hints:
            out[key] = _typed(value, hints[key], f"{name}.{key}")
    return out


def check_field_types(obj, name: str) -> None:
    """The same check for a config dataclass built directly (``__post_init__``)."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        object.__setattr__(obj, f.name, _typed(getattr(obj, f.name), hints[f.name], f"{name}.{f.name}"))


def _typed(value, hint, key: str):
    converted = _convert(value, hint)
    if converted is _BAD:
        raise ConfigError(f"{key} must be {_describe(hint)}, got {_show(value)}")
    return converted


def _convert(value, hint):
    """``value`` as the annotation ``hint`` wants it, or ``_BAD``; unknown annotations pass."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is bool:
        return value if isinstance(value, bool) else _BAD
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if hint is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _BAD
    if hint is str:
        return value if isinstance(value, str) else _BAD
    if hint is type(None):
        return None if value is None else _BAD
    if origin is Literal:
        return value if any(type(value) is type(a) and value == a for a in args) else _BAD
    if origin in (Union, types.UnionType):
        return next((c for c in (_convert(value, arm) for arm in args) if c is not _BAD), _BAD)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _BAD
        arms = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        items = [_convert(v, a) for v, a in zip(value, arms)] if len(arms) == len(value) else [_BAD]
        return _BAD if any(i is _BAD for i in items) else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            return _BAD
        items = {k: _convert(v, args[1]) for k, v in value.items()}
        return _BAD if any(v is _BAD for v in items.values()) else items
    return value


def _describe(hint) -> str:
    origin, args = get_origin(hint), get_args(hint)
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "empty"}
    if hint in simple:
        return simple[hint]
    if origin is Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is tuple:
        return f"a list of {len(args)} " + " and ".join(sorted({_describe(a).removeprefix('a ').removeprefix('an ') + "s" for a in args}))
    if origin is dict:
        return f"a table of {_describe(args[1]).removeprefix('a ').removeprefix('an ')}s"
    return str(hint)


def _show(value) -> str:
    """A value as the user wrote it (TOML-like: true, "cuda", [0.9, 1.5])."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _at_least(key: str, value, low) -> None:
    if not value >= low:  # also false for NaN
        raise ConfigError(f"{key} must be >= {low}, got {_show(value)}")
