"""Atomic training checkpoints: everything needed to continue a run exactly.

A checkpoint holds the generator, critic, optimisers, schedulers, EMA, step, RNG states
and the experiment config. Writes go to a temp file in the run folder, then
``os.replace``: a crash or SIGKILL mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from surge.atomic import atomic_output
from surge.errors import SurgeError


def atomic_torch_save(obj, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise SurgeError(f"{path}: no checkpoint to resume from")
    try:
        # Our own files: they hold numpy RNG state and plain Python objects.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise SurgeError(f"{path}: unreadable checkpoint ({str(exc).splitlines()[0][:200]})") from None
