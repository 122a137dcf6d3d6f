"""Network interpolation: a model whose weights are ``(1 - alpha) * A + alpha * B``.

ESRGAN (Wang et al. 2018, section 3.4) showed that blending the weights of a PSNR-oriented model
and its GAN fine-tune gives a better fidelity/naturalness trade-off than tuning the adversarial
loss weight, at no training cost: the GAN stage's artifacts fade faster than its sharpness. It is
only meaningful between models that share an architecture *and* a training history (a GAN stage
initialised from the other model), where the weights live in the same basin; mixing unrelated
models of the same shape gives garbage, so the provenance records both parents.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from surge.errors import ModelFileError, SurgeError
from surge.models.files import load_model_file, save_model


def interpolate_models(a: str | os.PathLike, b: str | os.PathLike, alpha: float) -> tuple[torch.nn.Module, dict]:
    """Load two model files and blend them; returns ``(module, provenance)``.

    ``alpha = 0`` gives A's weights, ``1`` gives B's, exactly. The files must describe the same
    architecture with the same config. The provenance is B's (the run that made B, its lineage),
    so ``total_steps`` counts B's training chain, plus an ``interpolation`` record naming A, B and
    ``alpha``; B's validation score and benchmark scores are dropped: they were measured on other
    weights.
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 <= alpha <= 1):
        raise SurgeError(f"interpolation alpha must be a number in [0, 1], got {alpha!r}")
    net_a, prov_a = load_model_file(a)
    net_b, prov_b = load_model_file(b)
    if type(net_a) is not type(net_b) or net_a.config != net_b.config:
        raise ModelFileError(f"{b}: a different architecture or config from {a}; only the same network can be interpolated")
    state_b = net_b.state_dict()
    with torch.no_grad():
        for name, tensor in net_a.state_dict().items():
            if tensor.is_floating_point():
                tensor.lerp_(state_b[name], float(alpha))  # in place: state_dict shares the parameters' storage
            elif alpha >= 0.5:  # integer buffers (BatchNorm's batch counter) cannot be blended: the nearer model's
                tensor.copy_(state_b[name])
    provenance = {k: v for k, v in prov_b.items() if k not in ("scores", "val_psnr_y", "interpolation")}
    provenance["val_psnr_y"] = None
    provenance["interpolation"] = {
        "alpha": float(alpha),
        "a": {"file": Path(a).name, **_summary(prov_a)},
        "b": {"file": Path(b).name, **_summary(prov_b)},
        "formula": "(1 - alpha) * a + alpha * b",
    }
    return net_a, provenance


def _summary(provenance: dict) -> dict:
    keys = ("experiment", "tag", "steps", "stage")
    return {k: provenance[k] for k in keys if k in provenance}


def save_interpolation(a, b, alpha: float, out: str | os.PathLike, dtype: torch.dtype | None = None,
                       replace: bool = True) -> Path:
    """:func:`interpolate_models` written to ``out`` (atomically); ``out`` must not be A or B."""
    out = Path(out)
    for source in (Path(a), Path(b)):
        if out.exists() and source.exists() and os.path.samefile(out, source):
            raise SurgeError(f"{out}: is an input of the interpolation; write the result to another file")
    module, provenance = interpolate_models(a, b, alpha)
    return save_model(module, out, provenance=provenance, dtype=dtype, replace=replace)
