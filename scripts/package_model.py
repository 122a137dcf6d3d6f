"""Package a trained generator as a bundled model: fp16 weights + provenance with scores.

    python scripts/package_model.py runs/cpu-psnr/best.safetensors surge-x4-psnr \
        --scores docs/results/surge-x4-psnr.json --machine "2-core AMD Zen 5 CPU (bf16), torch 2.13"

Only the generator's weights are shipped (no optimiser or critic state). fp16 storage halves the
file; weights are cast back to fp32 on load. The written file is checked by reloading it and
comparing its outputs with the source weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from surge.models.files import load_model_file, save_model

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "src" / "surge" / "weights"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", help="trained generator .safetensors (a run's best/last)")
    p.add_argument("name", help="bundled model name, e.g. surge-x4")
    p.add_argument("--scores", help="JSON written by `surge eval --json` for these weights")
    p.add_argument("--machine", default="", help="where it was trained, for the model card")
    p.add_argument("--note", default="", help="free text for the provenance")
    args = p.parse_args(argv)

    module, provenance = load_model_file(args.weights)
    provenance = dict(provenance)
    if args.scores:
        data = json.loads(Path(args.scores).read_text())
        provenance["scores"] = {
            name: {"psnr_y": round(r["psnr_y"], 4), "ssim_y": round(r["ssim_y"], 5), "images": r["images"]}
            for name, r in data.items()
        }
    if args.machine:
        provenance["machine"] = args.machine
    if args.note:
        provenance["note"] = args.note
    provenance["storage"] = "float16"
    out = save_model(module, WEIGHTS_DIR / f"{args.name}.safetensors", provenance=provenance, dtype=torch.float16)

    reloaded, _ = load_model_file(out)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        diff = (reloaded(x) - module(x)).abs().max().item()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); max output change from fp16 storage: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
