"""Growing a trained generator: more residual blocks, the same function at the start.

A new ``ResidualBlock`` computes ``h + conv2(PReLU(conv1(h)))``; with ``conv2`` zeroed it is the
identity, so blocks appended to ``R0``/``R1`` leave the network's output unchanged and training
continues from the trained function with more capacity (function-preserving growth, as in
Net2Net, Chen et al. 2016, arXiv 1511.05641). ``conv1`` keeps its random initialisation so the
zeroed ``conv2`` receives gradient from the first step.

Only networks without normalisation layers grow: a BatchNorm after ``conv2`` would need its own
identity initialisation, and the CPU presets have none.
"""

from __future__ import annotations

import dataclasses

import torch

from surge.errors import SurgeError
from surge.models.generator import SuRGeGenerator


def grow_generator(net: SuRGeGenerator, blocks0: int, blocks1: int, seed: int = 0) -> SuRGeGenerator:
    """A copy of ``net`` with ``blocks0``/``blocks1`` residual blocks, computing the same function."""
    cfg = net.config
    if cfg.norm != "none":
        raise SurgeError(f"only generators without normalisation can grow (this one has norm={cfg.norm!r})")
    if blocks0 < cfg.blocks0 or blocks1 < cfg.blocks1:
        raise SurgeError(f"a generator grows, never shrinks: it has {cfg.blocks0}/{cfg.blocks1} blocks, "
                         f"asked for {blocks0}/{blocks1}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the new blocks' conv1 initialisation is reproducible
        grown = SuRGeGenerator(dataclasses.replace(cfg, blocks0=blocks0, blocks1=blocks1))
    missing, unexpected = grown.load_state_dict(net.state_dict(), strict=False)
    new_blocks = [("R0", i) for i in range(cfg.blocks0, blocks0)] + [("R1", i) for i in range(cfg.blocks1, blocks1)]
    prefixes = tuple(f"{stage}.{i}." for stage, i in new_blocks)
    if unexpected or not all(k.startswith(prefixes) for k in missing):  # only the new blocks start fresh
        raise SurgeError(f"cannot grow this network: unexpected {unexpected}, missing {missing}")
    with torch.no_grad():
        for stage, index in new_blocks:
            conv2 = getattr(grown, stage)[index].conv2
            conv2.weight.zero_()
            if conv2.bias is not None:
                conv2.bias.zero_()
    return grown.eval()
