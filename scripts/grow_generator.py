"""Write a grown copy of a generator file: more residual blocks, same output (surge.models.growth).

    python scripts/grow_generator.py runs/cpu-real-psnr-aa/last.safetensors --blocks0 18 \\
        -o runs/grown/start.safetensors

The written file keeps the source's provenance (so the training lineage and step count carry
over) and records the growth; train from it with ``train.init_from`` and a ``[generator]`` table
giving the new block counts. The script checks that the grown network's output equals the
source's on a random input before writing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from surge.errors import SurgeError
from surge.models.files import load_model_file, save_model
from surge.models.generator import SuRGeGenerator
from surge.models.growth import grow_generator


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--blocks0", type=int, help="residual blocks at the LR size (default: unchanged)")
    p.add_argument("--blocks1", type=int, help="residual blocks at twice the LR size (default: unchanged)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if args.output.exists():  # early, before any work; save_model(replace=False) guards the write
            raise SurgeError(f"{args.output}: exists; choose a new file (the source is never overwritten)")
        net, provenance = load_model_file(args.source)
        if not isinstance(net, SuRGeGenerator):
            raise SurgeError(f"{args.source}: not a SuRGe generator")
        cfg = net.config
        grown = grow_generator(net, args.blocks0 or cfg.blocks0, args.blocks1 or cfg.blocks1, args.seed)
        x = torch.rand(1, cfg.in_channels, 24, 24, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            err = (grown(x) - net.eval()(x)).abs().max().item()
        if err > 1e-5:
            raise SurgeError(f"grown network differs from {args.source} by {err:.2e}")
        provenance = dict(provenance or {})
        provenance["growth"] = {"from_blocks": [cfg.blocks0, cfg.blocks1],
                                "to_blocks": [grown.config.blocks0, grown.config.blocks1],
                                "source": args.source.name, "seed": args.seed}
        save_model(grown, args.output, provenance, replace=False)  # nor one created meanwhile
    except SurgeError as exc:
        print(f"grow_generator: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: blocks {cfg.blocks0}/{cfg.blocks1} -> {grown.config.blocks0}/{grown.config.blocks1}, "
          f"max output difference {err:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
