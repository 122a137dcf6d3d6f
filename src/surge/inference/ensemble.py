"""Geometric self-ensemble: average a model's output over the eight flips and rotations.

The eight symmetries of the square (the dihedral group D4: rotations by 0/90/180/270 degrees,
each with and without a horizontal flip) are applied to the LR input, each result is mapped
back by the inverse symmetry, and the eight SR images are averaged (Timofte et al., "Seven
ways to improve example-based single image super resolution", CVPR 2016; EDSR's "+" results).
A network trained on flipped and rotated crops gives eight slightly different estimates of
the same image; their mean has a lower error than any one of them, at 8x the compute.

The wrapper has the engine's calling convention (float32 host batch in [0, 1] -> x4 float32
host batch), so tiling, batching and every backend work unchanged: each tile is ensembled on
its own, and since the symmetries permute pixels without moving the tile's context margin
out of reach (a square receptive field stays square), tiled output still equals untiled.
"""

from __future__ import annotations

from typing import Callable

import torch

# (quarter turns, flip first): the 8 elements of D4.
SYMMETRIES: tuple[tuple[int, bool], ...] = tuple((k, flip) for flip in (False, True) for k in range(4))


def apply(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Flip the last axis (if ``flip``), then rotate by ``k`` quarter turns in the (H, W) plane."""
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def invert(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of :func:`apply` with the same arguments."""
    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return y.flip(-1) if flip else y


@torch.inference_mode()
def self_ensemble(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Mean of ``invert(run(apply(x)))`` over the eight symmetries, accumulated in float32."""
    total = None
    for k, flip in SYMMETRIES:
        y = invert(run(apply(x, k, flip).contiguous()), k, flip).float()
        total = y if total is None else total.add_(y)
    return total.div_(len(SYMMETRIES))


class SelfEnsemble:
    """An engine (see ``surge.inference._engine.Engine``) that runs its wrapped engine eight
    times per batch and averages, with the wrapped engine's attributes (scale, model,
    precision, device)."""

    factor = len(SYMMETRIES)

    def __init__(self, engine):
        self.engine = engine

    def __getattr__(self, name: str):
        if name == "engine":  # not set yet (copy, unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.engine, name)

    def describe(self) -> str:
        return f"{self.engine.describe()}, self-ensemble x{self.factor}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self_ensemble(self.engine, x)
