"""Training precision: what ``train.precision = "auto"`` means on this machine, and its name.

bf16 autocast halves a training step on CPUs with native bf16 (AVX512-BF16/AMX, arm64 bf16)
but is emulated, and several times slower than fp32, on the others (e.g. AVX2-only x86), so
"auto" takes bf16 only where it is native, reusing the inference engine's detection.
"""

from __future__ import annotations

import datetime
import logging
import platform

import torch

from surge.inference.optimize import cpu_flags, cpu_has_native_bf16, cpuinfo

log = logging.getLogger("surge.train")


def resolve_precision(requested: str, device: torch.device, warn: bool = True) -> str:
    """The autocast precision a run uses: "fp32", "bf16" or "amp" (fp16 with a grad scaler)."""
    native = _native_bf16(device)
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native and warn:
        log.warning("train.precision = bf16 on %s, which has no native bf16: emulated, several times slower "
                    "than fp32 (use \"auto\")", device_name(device))
    return requested


def _native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    info = cpuinfo()
    for key in ("model name", "Model", "Hardware"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine() or "unknown CPU"


# Flags that decide CPU training speed; virtual machines often report only "AMD EPYC" as the
# name, so these and the family/model numbers tell the generation apart.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "sve", "bf16")


def cpu_id() -> dict:
    """The CPU's family/model numbers (x86) and its speed-relevant feature flags."""
    info = cpuinfo()
    fields = {key: info[key] for key in ("cpu family", "model", "CPU part") if key in info}
    return {**fields, "flags": sorted(cpu_flags() & set(SPEED_FLAGS))}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def runtime_record(requested: str, precision: str, device: torch.device, step: int, world_size: int) -> dict:
    """What a run (or a resumed part of it) ran on: every timing in its log belongs to this machine."""
    return {
        "start_step": step,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision,
        "precision_requested": requested,
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_name(),
        "cpu_id": cpu_id(),
        "native_bf16": _native_bf16(device),
        "torch_threads": torch.get_num_threads(),
        "world_size": world_size,
        "torch": torch.__version__,
    }
