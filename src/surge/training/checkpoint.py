"""Atomic training checkpoints: everything needed to continue a run exactly.

A checkpoint holds the generator, critic, optimisers, schedulers, EMA, step, RNG states
and the experiment config. Writes go to a temp file in the run folder, then
``os.replace``: a crash or SIGKILL mid-write leaves the previous checkpoint intact.

Checkpoints hold only tensors, numbers, strings, None, lists, tuples and dicts, and are read
with ``torch.load(weights_only=True)``: a run folder may come from someone else, and a full
unpickle of a crafted ``last.pt`` would run its code.
"""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from surge.atomic import atomic_output
from surge.errors import SurgeError


def atomic_torch_save(obj, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict:
    """The RNG states as tensors and plain values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


REQUIRED_KEYS = ("step", "config", "generator", "opt_g", "sched_g", "rng")


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise SurgeError(f"{path}: no checkpoint to resume from")
    try:
        with warnings.catch_warnings():  # torch warns (multi-line) about foreign pickle protocols
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # The safe unpickler met a class or function: a foreign or crafted file, or one written
        # before checkpoints were weights-only (they pickled numpy's RNG state). Never fall
        # back to a full unpickle.
        raise SurgeError(
            f"{path}: refused: the checkpoint holds Python objects other than tensors, numbers, strings, "
            "lists and dicts (crafted, foreign, or written by an older surge)"
        ) from None
    except Exception as exc:
        raise SurgeError(f"{path}: unreadable checkpoint ({_first_line(exc)})") from None
    missing = [k for k in REQUIRED_KEYS if k not in state] if isinstance(state, dict) else list(REQUIRED_KEYS)
    if missing:
        raise SurgeError(f"{path}: not a surge training checkpoint (missing {', '.join(missing)})")
    return state


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
