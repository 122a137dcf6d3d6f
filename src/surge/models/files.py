"""Self-describing model files: safetensors weights + architecture config + provenance.

The safetensors header metadata (string -> string) holds:

* ``surge.format``      -- file format version ("1");
* ``surge.arch``        -- architecture name ("surge-generator", "surge-critic");
* ``surge.config``      -- JSON of the architecture config dataclass;
* ``surge.provenance``  -- JSON object describing these weights, and only these: for a file
  a run wrote, ``tag`` (last/best), ``steps`` (the run's step when written), ``val_psnr_y``
  (validation score of these weights at that step, or null), ``val_set``, ``wall_seconds``,
  ``config`` (the experiment), ``init_from`` and ``lineage`` (the provenance of every file the
  run descends from, oldest first, each without its own lineage), ``total_steps`` (sum along
  the chain); bundled files add ``scores`` (benchmark results of these exact weights),
  ``machine``, ``storage``, ``note``.

Every failure to load is a :class:`ModelFileError` with one line naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from surge.atomic import atomic_output
from surge.errors import ModelFileError
from surge.models.config import CriticConfig, GeneratorConfig
from surge.models.critic import Critic
from surge.models.generator import SuRGeGenerator

FORMAT_VERSION = "1"
ARCHITECTURES = {
    "surge-generator": (GeneratorConfig, SuRGeGenerator),
    "surge-critic": (CriticConfig, Critic),
}


def arch_name(module: torch.nn.Module) -> str:
    for name, (_, cls) in ARCHITECTURES.items():
        if isinstance(module, cls):
            return name
    raise TypeError(f"cannot save a {type(module).__name__}: not a surge architecture")


def save_model(
    module: torch.nn.Module,
    path: str | os.PathLike,
    provenance: dict | None = None,
    dtype: torch.dtype | None = None,
    replace: bool = True,
) -> Path:
    """Write ``module``'s weights, config and provenance atomically (temp file + rename).

    ``dtype=torch.float16`` halves the file; floating tensors are cast back on load.
    ``replace=False``: never replace an existing file, even one created while this one was written.
    """
    path = Path(path)
    state = {}
    for key, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor.contiguous()
    metadata = {
        "surge.format": FORMAT_VERSION,
        "surge.arch": arch_name(module),
        "surge.config": json.dumps(module.config.to_dict()),
        "surge.provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    with atomic_output(path, ModelFileError, replace=replace) as tmp:
        save_file(state, tmp, metadata=metadata)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The surge metadata of a weights file, validated; raises ModelFileError."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file (0 bytes), not a model")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise ModelFileError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    if "surge.format" not in metadata:
        raise ModelFileError(f"{path}: foreign safetensors file (no surge metadata); only surge model files can be loaded")
    if metadata["surge.format"] != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model file format {metadata['surge.format']!r} is not supported (expected {FORMAT_VERSION})")
    if metadata.get("surge.arch") not in ARCHITECTURES:
        raise ModelFileError(f"{path}: unknown architecture {metadata.get('surge.arch')!r}")
    return metadata


def load_model_file(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Build the module described by a file and load its weights.

    Returns ``(module, provenance)``; the module is in eval mode, float32. The file's tensor
    names and shapes are checked against its config before anything is allocated, so a file
    whose config asks for a huge model it does not hold is refused at once.
    """
    path = Path(path)
    metadata = read_metadata(path)
    config_cls, module_cls = ARCHITECTURES[metadata["surge.arch"]]
    try:
        config = config_cls.from_dict(json.loads(metadata["surge.config"]))
    except Exception as exc:
        raise ModelFileError(f"{path}: invalid architecture config in metadata ({_first_line(exc)})") from None
    provenance = _parse_provenance(path, metadata)
    expected = _expected_tensors(module_cls, config)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            _check_shapes(path, expected, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
            state = {k: f.get_tensor(k).to(expected[k].dtype) for k in f.keys()}
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{path}: truncated or corrupt weights ({_first_line(exc)})") from None
    _check_finite(path, state)
    module = module_cls(config)
    module.load_state_dict(state)
    return module.eval().to(map_location), provenance


def _check_finite(path: Path, state: dict[str, torch.Tensor]) -> None:
    """A weight that is NaN or infinite (a diverged run, a damaged file) makes every output NaN:
    refuse the file by name, rather than let each consumer fail in its own words."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
            raise ModelFileError(f"{path}: weight {name} holds {bad} {kind} value(s); the file is damaged or from a "
                                 "diverged training run")


def read_provenance(path: str | os.PathLike) -> dict:
    """A model file's provenance without loading its weights; raises ModelFileError."""
    path = Path(path)
    return _parse_provenance(path, read_metadata(path))


def lineage_of(path: str | os.PathLike) -> list[dict]:
    """The lineage a model trained from ``path`` records: the file's own lineage, then the file's
    provenance without its lineage (oldest first, so the steps of a chain add up)."""
    provenance = read_provenance(path)
    own = {k: v for k, v in provenance.items() if k != "lineage"}
    return [*provenance.get("lineage", []), own]


def total_steps(provenance: dict) -> int | None:
    """Training steps behind a file: its own run's plus every ancestor's (None if any is unknown)."""
    runs = [provenance, *provenance.get("lineage", [])]
    if not all(isinstance(r.get("steps"), int) for r in runs):
        return None
    return sum(r["steps"] for r in runs)


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _parse_provenance(path: Path, metadata: dict[str, str]) -> dict:
    try:
        provenance = json.loads(metadata.get("surge.provenance", "{}"))
    except json.JSONDecodeError:
        raise ModelFileError(f"{path}: invalid provenance JSON in metadata") from None
    if not isinstance(provenance, dict):
        kind = _JSON_KINDS.get(type(provenance), type(provenance).__name__)
        raise ModelFileError(f"{path}: provenance metadata must be a JSON object, got a JSON {kind}")
    lineage = provenance.get("lineage", [])
    if not isinstance(lineage, list) or not all(isinstance(entry, dict) for entry in lineage):
        raise ModelFileError(f"{path}: provenance 'lineage' must be a JSON array of objects")
    return provenance


def _expected_tensors(module_cls, config) -> dict[str, torch.Tensor]:
    # On the meta device: names, shapes and dtypes without allocating a single weight.
    with torch.device("meta"), _SkipMetaInit():
        return module_cls(config).state_dict()


class _SkipMetaInit(TorchFunctionMode):
    """Weight initialisers do nothing on meta tensors (they have no values to fill).

    Run on the meta device, ``nn.init.normal_`` goes through a Python reference kernel whose
    first call imports ``torch._dynamo``: 2+ s added to every first model load. Only
    initialisers are skipped; they never change a shape.
    """

    INITIALISERS = frozenset({
        "normal_", "uniform_", "zero_", "zeros_", "ones_", "fill_", "constant_", "trunc_normal_",
        "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_",
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")
        if getattr(func, "__name__", "") in self.INITIALISERS and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


def _check_shapes(path: Path, expected: dict[str, torch.Tensor], found: dict[str, tuple]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k].shape) != found[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} with wrong shape (e.g. {k}: {found[k]} vs {tuple(expected[k].shape)})")
    raise ModelFileError(f"{path}: weights do not match the architecture in its metadata: {'; '.join(parts)} tensors")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
