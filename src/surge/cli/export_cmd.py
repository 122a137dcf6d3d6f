"""``surge export MODEL --onnx OUT.onnx``: an ONNX file with dynamic batch, height and width.

The exported graph is what ``--backend onnxruntime`` runs (``SRModel.export_onnx``:
BatchNorm folded, sub-pixel convs), in fp32, input ``lr`` (N, 3, H, W) in [0, 1], output ``sr`` (N, 3, 4H, 4W), not
clamped. Written to a temp file next to OUT and renamed, so a failed export never leaves a
half-written file or destroys an existing one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import surge
from surge.cli.messages import printable
from surge.errors import SurgeError


def add_parser(p: argparse.ArgumentParser) -> None:
    from surge.inference.onnx_backend import DEFAULT_OPSET

    p.add_argument("model", metavar="MODEL", help="model name (see `surge models`), preset, or .safetensors file")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="output ONNX file")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset version (default {DEFAULT_OPSET})")
    p.add_argument("--no-optimize", action="store_true", help="export the network as loaded (no BatchNorm folding or sub-pixel rewrite)")


def run(args) -> int:
    out = Path(args.onnx)
    if out.suffix.lower() != ".onnx":
        raise SurgeError(f"{out}: output file must end in .onnx")
    model = surge.load_model(args.model, device="cpu")
    model.export_onnx(out, opset=args.opset, optimize=not args.no_optimize)
    print(printable(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {args.opset}, dynamic batch/height/width)"))
    return 0
