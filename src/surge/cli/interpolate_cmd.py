"""``surge interpolate A B --alpha 0.6 -o OUT.safetensors``: network interpolation of two models.

``(1 - alpha) * A + alpha * B``, weight by weight (:mod:`surge.models.interpolation`): with A a
PSNR-stage model and B its GAN fine-tune, alpha sets how much of the GAN stage's texture to keep.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from surge.cli.messages import printable
from surge.errors import SurgeError


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="first model: bundled name (see `surge models`) or .safetensors file (alpha 0)")
    p.add_argument("b", metavar="B", help="second model, the same network trained further (alpha 1)")
    p.add_argument("--alpha", type=float, required=True, help="weight of B, in [0, 1]")
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors", help="model file to write")
    p.add_argument("--fp16", action="store_true", help="store the weights in fp16 (half the file; cast back on load)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    import torch

    from surge.models.interpolation import save_interpolation
    from surge.models.registry import weights_file

    out = Path(args.output)
    if out.suffix.lower() != ".safetensors":
        raise SurgeError(f"{out}: output file must end in .safetensors")
    a, b = weights_file(args.a), weights_file(args.b)
    if out.exists() and not args.overwrite:
        raise SurgeError(f"{out}: exists; use --overwrite to replace it")
    save_interpolation(a, b, args.alpha, out, dtype=torch.float16 if args.fp16 else None, replace=args.overwrite)
    print(printable(f"wrote {out}: (1 - {args.alpha:g}) * {args.a} + {args.alpha:g} * {args.b}"))
    return 0
