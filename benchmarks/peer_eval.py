"""Score a peer's released weights with the project's own metrics (side-by-side comparison only).

    python benchmarks/peer_eval.py ../shared/peers/realesr-general-x4v3/realesr-general-x4v3-fp32.safetensors \
        --data ../shared/datasets/benchmark --sets Set5 Set14 BSD100 --metrics niqe vif --json peer.json

Real-ESRGAN's ``realesr-general-x4v3`` is an :class:`SRVGGNetCompact` (``benchmarks/peers.py``);
its weights load with ``strict=True`` into that module, which the evaluation runner then measures
exactly like a surge model (uint8 output, MATLAB-rounded Y, 4 px crop, same NIQE/VIF code), so
the rows are comparable with ``surge eval --json``. ``--photo IN --photo-out OUT.png`` also
upscales one image (e.g. the real JPEG of ``scripts/real_photo_figure.py``) for a figure. The
peer is never part of the surge package or its registry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import SRVGGNetCompact  # noqa: E402

from surge.atomic import atomic_output  # noqa: E402
from surge.evaluation.runner import Predictor, evaluate, results_to_dict, write_json  # noqa: E402


def load_peer(path: Path) -> SRVGGNetCompact:
    """realesr-general-x4v3 from its safetensors file (the release's ``params`` keys, ``body.N``)."""
    net = SRVGGNetCompact()
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", type=Path)
    p.add_argument("--name", default="realesr-general-x4v3")
    p.add_argument("--data", type=Path, help="benchmark root (one folder per set)")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    p.add_argument("--metrics", nargs="*", default=[], help="perceptual metrics: niqe, vif")
    p.add_argument("--json", type=Path)
    p.add_argument("--photo", type=Path, help="also upscale this image")
    p.add_argument("--photo-out", type=Path)
    args = p.parse_args(argv)
    predictor = Predictor(load_peer(args.weights))
    predictor.name = args.name
    if args.data is not None:
        results = evaluate(predictor, args.data, args.sets, perceptual_metrics=args.metrics)
        for name, r in results.items():
            extra = "".join(f", {m.upper()} {getattr(r, m):.4f}" for m in args.metrics)
            print(f"{args.name} {name}: PSNR-Y {r.psnr_y:.2f}, SSIM-Y {r.ssim_y:.4f}{extra} ({r.images} images)")
        if args.json is not None:
            write_json(results_to_dict(results), args.json)
    if args.photo is not None:
        with Image.open(args.photo) as im:
            lr = np.asarray(im.convert("RGB"))
        with atomic_output(args.photo_out) as tmp:
            Image.fromarray(predictor(lr)).save(tmp, format="PNG")
        print(f"wrote {args.photo_out}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
