"""Training state that travels: a run's checkpoint as safetensors parts of bounded size.

A device call returns at most 8 files of 16 MiB (64 MiB together) and carries at most 64 MiB in,
working tree and data included; ``last.pt`` of the paper-size generator is 74 MB. A *travel
state* is the same checkpoint (``Trainer.state_dict()``) written as ``PREFIX-00.safetensors``,
``PREFIX-01.safetensors``, ... each at most ``part_bytes``, with a storage *profile* that says
which float tensors are kept, rounded or dropped:

============  =========================  ==========  ===========  =================================
profile       weights (generator/critic)  EMA         Adam moments  resuming from it
============  =========================  ==========  ===========  =================================
``exact``     float32                    float32     float32       exactly as from ``last.pt``
``compact``   float32                    float16     bfloat16      the same step, schedule, data and
                                                                   RNG; EMA and moments rounded once
``lean``      float32                    float16     dropped       warm restart: Adam's moments are
                                                                   re-estimated from zero
``minimal``   float16                    dropped     dropped       warm restart from rounded weights;
                                                                   the EMA restarts from them
============  =========================  ==========  ===========  =================================

Everything else (step counters, schedulers, RNG states, the config, loss scales) is kept exactly,
so the step counter, the learning-rate schedule's position and the data order continue whatever the
profile. Moments are bfloat16, not float16: ``exp_avg_sq`` holds squared gradients, which underflow
float16. A tensor whose rounding is not finite stays float32 (recorded per tensor).

Every part's metadata holds the whole plan (``surge.travel.state``: the checkpoint's non-tensor
values, each tensor's name, shape, stored and original dtype, and ``info``: profile, lineage of
sessions, the weights' provenance) and the SHA-256 of every part's tensor bytes, so a missing,
foreign or corrupt part is named in a one-line :class:`TravelStateError`.

``info["lineage"]`` lists the device sessions that trained the state, oldest first, each
``{run, session, start_step, end_step, steps, device, precision, started, wall_seconds, restored}``
(``restored``: the profile the session resumed from, or ``none`` for a fresh start); the steps
add up to the state's step exactly.

Command line (``python -m surge.training.travel``): ``pack RUN_DIR OUT`` (after a run),
``unpack STATE RUN_DIR`` (writes ``last.pt`` for ``surge train --resume``), ``export SOURCE
FILE --dtype float16`` (shipped weights), ``repack STATE OUT --budget-mib N`` and ``info STATE``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import math
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from surge.atomic import atomic_output
from surge.errors import SurgeError

FORMAT_VERSION = "1"
MIB = 2**20
PART_BYTES = 16 * MIB  # what one file back from a device call may hold
PROFILES: dict[str, dict[str, str | None]] = {
    "exact": {"weights": "float32", "ema": "float32", "moments": "float32"},
    "compact": {"weights": "float32", "ema": "float16", "moments": "bfloat16"},
    "lean": {"weights": "float32", "ema": "float16", "moments": None},
    "minimal": {"weights": "float16", "ema": None, "moments": None},
}
RESTORE = {
    "exact": "exact",
    "compact": "same step, schedule, data and RNG; EMA rounded to float16 and Adam moments to bfloat16 once",
    "lean": "warm restart: Adam moments dropped (re-estimated from zero); weights exact, EMA float16",
    "minimal": "warm restart: weights rounded to float16, EMA restarted from them, Adam moments dropped",
}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_HEADER_PER_TENSOR = 160  # safetensors header bytes per tensor entry, generous (names here are < 80 chars)
_MIN_PART = 4096


class TravelStateError(SurgeError):
    """A travel state is missing a part, has a corrupt or foreign one, or does not fit its budget."""


# --- flattening a checkpoint ------------------------------------------------------------------
def _flatten(obj, path: tuple, tensors: dict[tuple, torch.Tensor]):
    """``obj`` as JSON, each tensor replaced by ``{"__tensor__": index}`` and collected in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj
        return {"__tensor__": len(tensors) - 1}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not _MARKERS & set(obj):
            return {k: _flatten(v, (*path, k), tensors) for k, v in obj.items()}
        return {"__items__": [[k, _flatten(v, (*path, str(k)), tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, (*path, str(i)), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, (*path, str(i)), tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {'/'.join(path)} in a travel state")


_MARKERS = {"__tensor__", "__items__", "__tuple__"}


def _unflatten(obj, tensors: list[torch.Tensor]):
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    return obj


_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def _kind(path: tuple) -> tuple[str, bool]:
    """Which profile rule stores the tensor at ``path`` of a checkpoint, and whether it may be rounded."""
    top = path[0] if path else ""
    if top in ("generator", "critic"):
        return "weights", True
    if top == "ema":
        return "ema", True
    if top in ("opt_g", "opt_d") and len(path) > 1 and path[1] == "state":
        # Adam's per-parameter step counts go with the moments (bias correction needs both or
        # neither) but are never rounded: a bfloat16 3400 is 3392.
        return "moments", path[-1] in _MOMENTS
    return "exact", False


# --- the plan: what is stored how -------------------------------------------------------------
@dataclass
class _Entry:
    name: str
    path: tuple
    tensor: torch.Tensor  # as it will be stored (cast, contiguous, on the CPU)
    original: str  # the checkpoint's dtype, restored on load


def _plan(state: dict, profile: str) -> tuple[dict, list[_Entry], list[str]]:
    """The skeleton (JSON), the tensors to store, and the kinds dropped."""
    rules = PROFILES[profile]
    tensors: dict[tuple, torch.Tensor] = {}
    skeleton = _flatten(state, (), tensors)
    entries, specs, dropped = [], [], set()
    for index, (path, tensor) in enumerate(tensors.items()):
        kind, roundable = _kind(path)
        tensor = tensor.detach().cpu()
        original = str(tensor.dtype).removeprefix("torch.")
        rule = rules.get(kind, "keep")
        if kind != "exact" and rule is None:
            dropped.add(kind)
            specs.append({"path": list(path), "dropped": kind, "dtype": original, "shape": list(tensor.shape)})
            continue
        if roundable and tensor.is_floating_point() and rule != original:
            cast = tensor.to(_DTYPES[rule])
            if torch.isfinite(cast).all() or not torch.isfinite(tensor).all():
                tensor = cast
        name = f"t{index:05d}"
        entries.append(_Entry(name, path, tensor.contiguous(), original))
        specs.append({"path": list(path), "name": name, "dtype": original,
                      "stored": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape)})
    return {"skeleton": skeleton, "tensors": specs}, entries, sorted(dropped)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _split(entries: list[_Entry], first: int, rest: int) -> list[list[tuple[str, torch.Tensor]]]:
    """Tensors grouped into parts of at most ``first`` (part 0) and ``rest`` (the others) data+header
    bytes; a tensor too large for a part is cut into 1-D pieces ``name.0``, ``name.1``, ... (joined on load)."""
    # Part 0 may be all plan (small part limits in tests): then the tensors start in part 1.
    parts: list[list[tuple[str, torch.Tensor]]] = [[]] if first >= _MIN_PART else [[], []]
    used = 0
    for e in entries:
        flat, offset, piece, size = e.tensor.reshape(-1), 0, 0, e.tensor.element_size()
        whole = _nbytes(e.tensor) + _HEADER_PER_TENSOR
        while offset < flat.numel() or flat.numel() == 0:
            cap = first if len(parts) == 1 else rest
            if piece == 0 and whole <= cap - used:
                parts[-1].append((e.name, e.tensor))
                used += whole
                break
            fit = max(0, (cap - used - _HEADER_PER_TENSOR) // size)
            if (piece == 0 and used and whole <= rest) or fit == 0:
                if not used:
                    raise TravelStateError(f"a part of {cap} bytes cannot hold one element of a tensor")
                parts.append([])  # a tensor that fits a fresh part is never cut
                used = 0
                continue
            take = min(fit, flat.numel() - offset)
            parts[-1].append((f"{e.name}.{piece}", flat[offset:offset + take].clone()))
            used += take * size + _HEADER_PER_TENSOR
            offset, piece = offset + take, piece + 1
    return parts


def _digest(tensors: list[tuple[str, torch.Tensor]]) -> str:
    h = hashlib.sha256()
    for name, t in sorted(tensors, key=lambda x: x[0]):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def estimate_bytes(state: dict, profile: str) -> int:
    """Bytes the tensors of ``state`` take in ``profile`` (headers excluded)."""
    _, entries, _ = _plan(state, profile)
    return sum(_nbytes(e.tensor) for e in entries)


@dataclass
class _Layout:
    profile: str
    meta_json: str
    parts: list[list[tuple[str, torch.Tensor]]]
    fixed: tuple[int, int]  # metadata bytes of part 0 (the plan) and of the others (upper bounds)

    def size(self) -> int:
        """An upper bound of the files' total size."""
        return sum(sum(_nbytes(t) + _HEADER_PER_TENSOR for _, t in p) + self.fixed[i > 0] for i, p in enumerate(self.parts))


def _layout(state: dict, info: dict | None, profile: str, part_bytes: int) -> _Layout:
    if profile not in PROFILES:
        raise TravelStateError(f"unknown travel-state profile {profile!r} (known: {', '.join(PROFILES)})")
    plan, entries, dropped = _plan(state, profile)
    info = {**(info or {}), "profile": profile, "restore": RESTORE[profile], "dropped": dropped,
            "dtypes": {k: (v or "dropped") for k, v in PROFILES[profile].items()},
            "step": state.get("step"), "bytes": sum(_nbytes(e.tensor) for e in entries)}
    info.setdefault("created", _now())
    meta_json = json.dumps({"plan": plan, "info": info}, sort_keys=True)
    # Part 0 holds the plan; every part holds the id, the count and the digests of all parts (~70
    # bytes each), so whatever survives names what is missing.
    other = 1024 + 72 * (2 + sum(_nbytes(e.tensor) for e in entries) // max(1, part_bytes // 2))
    fixed = (len(json.dumps(meta_json)) + other, other)  # escaped: the header is JSON holding this string
    if part_bytes < fixed[0] or part_bytes - fixed[1] < _MIN_PART:
        raise TravelStateError(f"part limit {part_bytes} bytes leaves no room beside the {max(fixed)}-byte metadata of a part")
    return _Layout(profile, meta_json, _split(entries, part_bytes - fixed[0], part_bytes - fixed[1]), fixed)


def choose_profile(state: dict, budget_bytes: int, max_parts: int = 8, part_bytes: int = PART_BYTES,
                   candidates: list[str] | None = None, info: dict | None = None) -> str:
    """The most faithful profile whose parts fit ``budget_bytes`` in all and ``max_parts`` files."""
    for profile in candidates or list(PROFILES):
        layout = _layout(state, info, profile, part_bytes)
        if layout.size() <= budget_bytes and len(layout.parts) <= max_parts:
            return profile
    smallest = _layout(state, info, (candidates or list(PROFILES))[-1], part_bytes)
    raise TravelStateError(f"no travel-state profile fits {budget_bytes / MIB:.1f} MiB in {max_parts} file(s) of "
                           f"{part_bytes / MIB:.2f} MiB (the smallest, {smallest.profile}, needs "
                           f"{smallest.size() / MIB:.1f} MiB in {len(smallest.parts)})")


def save_travel_state(state: dict, out_dir: str | Path, info: dict | None = None, *, prefix: str = "state",
                      profile: str = "compact", part_bytes: int = PART_BYTES, max_parts: int | None = None) -> list[Path]:
    """Write ``state`` (a ``Trainer.state_dict()``) as ``out_dir/PREFIX-NN.safetensors``, each file at most
    ``part_bytes``; returns the files. Older parts of the same prefix beyond the new count are removed."""
    out_dir = Path(out_dir)
    layout = _layout(state, info, profile, part_bytes)
    parts = layout.parts
    if max_parts is not None and len(parts) > max_parts:
        raise TravelStateError(f"{out_dir}: profile {profile} needs {len(parts)} parts of <= {part_bytes / MIB:.2f} MiB, "
                               f"more than the {max_parts} allowed")
    save_id = uuid.uuid4().hex
    digests = [_digest(p) for p in parts]
    paths = []
    for i, part in enumerate(parts):
        path = out_dir / f"{prefix}-{i:02d}.safetensors"
        metadata = {"surge.travel": FORMAT_VERSION, "surge.travel.id": save_id, "surge.travel.part": str(i),
                    "surge.travel.parts": str(len(parts)), "surge.travel.sha256": json.dumps(digests)}
        if i == 0:
            metadata["surge.travel.state"] = layout.meta_json
        with atomic_output(path, TravelStateError) as tmp:
            save_file(dict(part), tmp, metadata=metadata)
        size = path.stat().st_size
        if size > part_bytes:  # the header estimate is generous; a breach is a bug, never a silent overrun
            raise TravelStateError(f"{path}: {size} bytes, over the part limit of {part_bytes} (header estimate too small)")
        paths.append(path)
    for stale in _part_files(out_dir, prefix):
        if stale not in paths:
            stale.unlink()
    return paths


def _part_files(folder: Path, prefix: str) -> list[Path]:
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)\.safetensors")
    return sorted(p for p in folder.glob(f"{prefix}-*.safetensors") if pattern.fullmatch(p.name))


def _read_meta(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise TravelStateError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    if meta.get("surge.travel") != FORMAT_VERSION:
        raise TravelStateError(f"{path}: not a surge travel-state part (format {meta.get('surge.travel')!r})")
    return meta


def load_travel_state(source: str | Path, prefix: str = "state") -> tuple[dict, dict]:
    """The checkpoint dict (loadable by ``Trainer._restore``) and the info of a travel state.

    ``source``: the folder holding ``PREFIX-NN.safetensors`` or any one of its parts. Tensors come
    back in their original dtypes; a dropped EMA is a copy of the generator, dropped moments leave
    the optimiser without per-parameter state (Adam starts them afresh).
    """
    source = Path(source)
    folder = source.parent if source.is_file() else source
    if source.is_file():
        m = re.fullmatch(r"(.+)-\d+\.safetensors", source.name)
        prefix = m.group(1) if m else prefix
    files = _part_files(folder, prefix) if folder.is_dir() else []
    if not files:
        raise TravelStateError(f"{folder}: no travel state ({prefix}-NN.safetensors) found")
    metas = {p: _read_meta(p) for p in files}
    first = metas[files[0]]  # part 00 where present: the others name the save and its size too
    save_id, count = first["surge.travel.id"], int(first["surge.travel.parts"])
    expected = [folder / f"{prefix}-{i:02d}.safetensors" for i in range(count)]
    for p, meta in metas.items():
        if meta["surge.travel.id"] != save_id:
            raise TravelStateError(f"{p}: part of another save than {files[0].name} (mixed travel states in {folder})")
    missing = [p.name for p in expected if p not in metas]
    if missing:
        raise TravelStateError(f"{folder}: travel state incomplete: missing {', '.join(missing)} of {count} part(s)")
    extra = [p.name for p in files if p not in expected]
    if extra:
        raise TravelStateError(f"{folder}: unexpected part(s) {', '.join(extra)} beside a {count}-part state")
    digests = json.loads(first["surge.travel.sha256"])
    first = metas[expected[0]]
    stored: dict[str, torch.Tensor] = {}
    for i, p in enumerate(expected):
        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                part = [(k, f.get_tensor(k)) for k in f.keys()]
        except Exception as exc:
            raise TravelStateError(f"{p}: truncated or corrupt part ({_first_line(exc)})") from None
        if _digest(part) != digests[i]:
            raise TravelStateError(f"{p}: corrupt part (its tensors do not match the checksum recorded at save)")
        stored.update(part)
    payload = json.loads(first["surge.travel.state"])
    plan, info = payload["plan"], payload["info"]
    tensors, dropped_paths = [], []
    for spec in plan["tensors"]:
        shape, dtype = spec["shape"], getattr(torch, spec["dtype"])
        if "dropped" in spec:
            tensors.append(None)
            dropped_paths.append(tuple(spec["path"]))
            continue
        if spec["name"] in stored:
            t = stored[spec["name"]]
        else:  # cut into pieces at save
            pieces, i = [], 0
            while f"{spec['name']}.{i}" in stored:
                pieces.append(stored[f"{spec['name']}.{i}"])
                i += 1
            if not pieces:
                raise TravelStateError(f"{folder}: tensor {'/'.join(spec['path'])} is in no part")
            t = torch.cat(pieces).reshape(shape)
        tensors.append(t.to(dtype).reshape(shape))
    state = _unflatten(plan["skeleton"], tensors)
    _fill_dropped(state, info.get("dropped", []))
    return state, info


def _fill_dropped(state: dict, dropped: list[str]) -> None:
    if "ema" in dropped and state.get("ema") is not None:
        state["ema"] = {k: v.clone() for k, v in state["generator"].items()}
    if "moments" in dropped:
        for key in ("opt_g", "opt_d"):
            if isinstance(state.get(key), dict):
                state[key]["state"] = {}


# --- run folders: pack, unpack, export --------------------------------------------------------
CARRY_FILE = "travel.json"  # written by unpack in the run folder: the lineage so far and where this session started


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise TravelStateError(f"{path}: unreadable ({_first_line(exc)})") from None


def run_state(run_dir: Path) -> dict:
    from surge.training.checkpoint import load_checkpoint

    return load_checkpoint(Path(run_dir) / "last.pt")


def session_lineage(run_dir: Path, state: dict) -> list[dict]:
    """The lineage of ``state`` (the run's ``last.pt``): the carried sessions, then this one's entry."""
    run_dir = Path(run_dir)
    carried = _read_json(run_dir / CARRY_FILE, {})
    lineage = list(carried.get("lineage", []))
    start = int(carried.get("start_step", 0))
    prior_end = lineage[-1]["end_step"] if lineage else 0
    if prior_end != start:
        raise TravelStateError(f"{run_dir / CARRY_FILE}: lineage ends at step {prior_end} but the session started at {start}")
    step = int(state["step"])
    if step < start:
        raise TravelStateError(f"{run_dir}: last.pt is at step {step}, before this session's start {start}")
    runtime = _read_json(run_dir / "runtime.json", [])
    record = next((r for r in reversed(runtime) if isinstance(r, dict) and r.get("start_step") == start), {})
    wall_before = float(carried.get("wall_seconds", 0.0))
    config = state.get("config", {})
    entry = {
        "run": carried.get("run") or f"{config.get('train', {}).get('name', 'run')}-{(record.get('started') or _now())[:19]}",
        "session": len(lineage),
        "start_step": start,
        "end_step": step,
        "steps": step - start,
        "device": record.get("device_name"),
        "precision": record.get("precision"),
        "torch": record.get("torch"),
        "started": record.get("started"),
        "wall_seconds": round(float(state.get("wall_seconds", 0.0)) - wall_before, 1),
        "restored": carried.get("profile", "none"),
    }
    if step > start or not lineage:
        lineage.append(entry)
    if sum(e["steps"] for e in lineage) != step:
        raise TravelStateError(f"{run_dir}: lineage steps add up to {sum(e['steps'] for e in lineage)}, not the state's {step}")
    return lineage


def pack_run(run_dir: str | Path, out_dir: str | Path, *, prefix: str = "state", profile: str = "auto",
             budget_bytes: int | None = None, part_bytes: int = PART_BYTES, max_parts: int = 8) -> tuple[list[Path], dict]:
    """A run folder's ``last.pt`` as a travel state in ``out_dir`` (lineage: the carried one + this session)."""
    run_dir = Path(run_dir)
    state = run_state(run_dir)
    lineage = session_lineage(run_dir, state)
    info = {"lineage": lineage, "run": lineage[-1]["run"], "provenance": _weights_provenance(run_dir),
            "losses": _read_json(run_dir / CARRY_FILE, {}).get("losses", [])}
    if profile == "auto":
        profile = choose_profile(state, budget_bytes if budget_bytes is not None else max_parts * part_bytes,
                                 max_parts, part_bytes, info=info)
    paths = save_travel_state(state, out_dir, info, prefix=prefix, profile=profile, part_bytes=part_bytes,
                              max_parts=max_parts)
    total = sum(p.stat().st_size for p in paths)
    if budget_bytes is not None and total > budget_bytes:
        raise TravelStateError(f"{out_dir}: travel state is {total / MIB:.2f} MiB, over the budget of {budget_bytes / MIB:.2f} MiB")
    return paths, {"profile": profile, "files": [p.name for p in paths], "bytes": total, "step": state["step"],
                   "lineage": lineage}


def _weights_provenance(run_dir: Path) -> dict:
    from surge.models.files import read_provenance

    try:
        return read_provenance(run_dir / "last.safetensors")
    except SurgeError:
        return {}


def unpack_state(source: str | Path, run_dir: str | Path) -> dict:
    """Write a travel state as ``run_dir/last.pt`` (+ ``travel.json``) for ``surge train --resume run_dir``."""
    from surge.training.checkpoint import atomic_torch_save

    state, info = load_travel_state(source)
    run_dir = Path(run_dir)
    if (run_dir / "last.pt").exists():
        raise TravelStateError(f"{run_dir}: a run already exists there (last.pt); unpack into a new folder")
    lineage = info.get("lineage", [])
    losses = list(info.get("losses", []))
    if info["profile"] != "exact":
        losses.append(f"step {state['step']}: resumed from the {info['profile']} profile ({info['restore']})")
    carried = {"run": info.get("run"), "lineage": lineage, "start_step": int(state["step"]),
               "profile": info["profile"], "wall_seconds": float(state.get("wall_seconds", 0.0)), "losses": losses,
               "provenance": info.get("provenance", {})}
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(run_dir / CARRY_FILE, TravelStateError) as tmp:
        Path(tmp).write_text(json.dumps(carried, indent=1))
    if not (run_dir / "config.json").exists():  # a resumed run does not write it; scripts read the name there
        with atomic_output(run_dir / "config.json", TravelStateError) as tmp:
            Path(tmp).write_text(json.dumps(state["config"], indent=2))
    atomic_torch_save(state, run_dir / "last.pt")
    return {"step": state["step"], "profile": info["profile"], "lineage": lineage}


def export_weights(source: str | Path, path: str | Path, dtype: str = "float16", which: str = "auto") -> Path:
    """The generator (EMA where the run keeps one) of a run folder or travel state as a model file.

    Stored as ``dtype``; surge.load_model casts it back to float32. The provenance is the run's
    ``last.safetensors`` provenance plus ``storage`` (what was rounded), ``sessions`` (the lineage)
    and ``total_steps``.
    """
    from surge.models.config import GeneratorConfig
    from surge.models.files import save_model, total_steps
    from surge.models.generator import SuRGeGenerator

    source = Path(source)
    if source.is_dir() and (source / "last.pt").is_file():
        state = run_state(source)
        lineage = session_lineage(source, state)
        provenance = _weights_provenance(source)
        origin, losses = "run folder", _read_json(source / CARRY_FILE, {}).get("losses", [])
        ema_dropped = False
    else:
        state, info = load_travel_state(source)
        lineage, provenance, origin = info.get("lineage", []), dict(info.get("provenance", {})), f"{info['profile']} travel state"
        losses = list(info.get("losses", []))
        if info["profile"] != "exact":
            losses.append(f"step {state['step']}: exported from the {info['profile']} profile ({info['restore']})")
        ema_dropped = "ema" in info.get("dropped", [])  # its "EMA" is a copy of the weights
    if dtype not in _DTYPES:
        raise TravelStateError(f"unknown dtype {dtype!r} (float32, float16 or bfloat16)")
    if which == "ema" and ema_dropped:
        raise TravelStateError(f"{source}: the EMA was dropped from this {info['profile']} state")
    use_ema = which == "ema" or (which == "auto" and state.get("ema") is not None and not ema_dropped)
    weights = state["ema"] if use_ema else state["generator"]
    if weights is None:
        raise TravelStateError(f"{source}: the state holds no EMA weights")
    module = SuRGeGenerator(GeneratorConfig.from_dict(state["config"]["generator"]))
    module.load_state_dict(weights)
    step = int(state["step"])
    provenance = {**provenance, "steps": step, "lineage": provenance.get("lineage", []), "sessions": lineage,
                  "ema": bool(use_ema),
                  "storage": f"{dtype} ({'as trained' if dtype == 'float32' else 'rounded from float32 for transport'}; "
                             f"loads as float32); from a {origin}",
                  "rounding": losses}
    provenance["total_steps"] = total_steps(provenance)
    save_model(module, path, provenance=provenance, dtype=None if dtype == "float32" else _DTYPES[dtype])
    return Path(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# --- command line -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m surge.training.travel", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="a run folder's last.pt -> travel state parts")
    pk.add_argument("run_dir", type=Path)
    pk.add_argument("out", type=Path)
    for q in (pk, sub.add_parser("repack", help="a travel state -> another profile/budget")):
        if q is not pk:
            q.add_argument("source", type=Path)
            q.add_argument("out", type=Path)
        q.add_argument("--prefix", default="state")
        q.add_argument("--profile", default="auto", choices=["auto", *PROFILES])
        q.add_argument("--budget-mib", type=float, help="all parts together at most this (auto picks the profile)")
        q.add_argument("--part-mib", type=float, default=16.0, help="each part at most this (default 16)")
        q.add_argument("--max-parts", type=int, default=8)
    up = sub.add_parser("unpack", help="travel state -> RUN_DIR/last.pt for surge train --resume")
    up.add_argument("source", type=Path)
    up.add_argument("run_dir", type=Path)
    ex = sub.add_parser("export", help="a run folder or travel state -> a model file")
    ex.add_argument("source", type=Path)
    ex.add_argument("path", type=Path)
    ex.add_argument("--dtype", default="float16", choices=list(_DTYPES))
    ex.add_argument("--which", default="auto", choices=["auto", "ema", "generator"])
    inf = sub.add_parser("info", help="print a travel state's info")
    inf.add_argument("source", type=Path)
    args = p.parse_args(argv)
    try:
        if args.cmd in ("pack", "repack"):
            budget = int(args.budget_mib * MIB) if args.budget_mib is not None else None
            part = int(args.part_mib * MIB)
            if args.cmd == "pack":
                _, result = pack_run(args.run_dir, args.out, prefix=args.prefix, profile=args.profile,
                                     budget_bytes=budget, part_bytes=part, max_parts=args.max_parts)
            else:
                result = repack(args.source, args.out, prefix=args.prefix, profile=args.profile,
                                budget_bytes=budget, part_bytes=part, max_parts=args.max_parts)
        elif args.cmd == "unpack":
            result = unpack_state(args.source, args.run_dir)
        elif args.cmd == "export":
            path = export_weights(args.source, args.path, args.dtype, args.which)
            result = {"path": str(path), "bytes": path.stat().st_size}
        else:
            result = load_travel_state(args.source)[1]
        print(json.dumps(result))
        return 0
    except SurgeError as exc:
        print(f"surge: error: {exc}", file=sys.stderr)
        return 2


def repack(source: str | Path, out_dir: str | Path, *, prefix: str = "state", profile: str = "auto",
           budget_bytes: int | None = None, part_bytes: int = PART_BYTES, max_parts: int = 8) -> dict:
    """A travel state re-saved to a smaller profile (e.g. to fit beside the data in a carry). A
    profile can only lose: what was rounded stays rounded, and ``losses`` says so."""
    state, info = load_travel_state(source)
    order = list(PROFILES)
    floor = order.index(info["profile"])
    if profile == "auto":
        budget = budget_bytes if budget_bytes is not None else max_parts * part_bytes
        profile = choose_profile(state, budget, max_parts, part_bytes, candidates=order[floor:], info=info)
    elif order.index(profile) < floor:
        raise TravelStateError(f"{source}: a {info['profile']} state cannot become {profile} (its rounding is done)")
    losses = list(info.get("losses", []))
    if profile != info["profile"]:
        losses.append(f"step {state['step']}: repacked from {info['profile']} to {profile}")
    new_info = {k: v for k, v in info.items() if k not in ("profile", "restore", "dropped", "dtypes", "bytes")}
    new_info["losses"] = losses
    paths = save_travel_state(state, out_dir, new_info, prefix=prefix, profile=profile, part_bytes=part_bytes,
                              max_parts=max_parts)
    total = sum(p.stat().st_size for p in paths)
    if budget_bytes is not None and total > budget_bytes:
        raise TravelStateError(f"{out_dir}: travel state is {total / MIB:.2f} MiB, over the budget of {budget_bytes / MIB:.2f} MiB")
    return {"profile": profile, "files": [p.name for p in paths], "bytes": total, "step": state["step"]}


if __name__ == "__main__":
    sys.exit(main())
