"""`surge eval`: PSNR-Y / SSIM-Y of a model on benchmark sets (the papers' MATLAB protocol), optionally NIQE and VIF.

Exit status: 0 when every image of every set was measured; 1 when any image was skipped
(the table then flags each mean as "N/M*" and lists the skipped files); 2 on an error
(unknown model, missing set folder...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import surge
from surge.cli.messages import printable, printable_lines
from surge import PRECISIONS
from surge.cli.untrained import add_allow_untrained, refuse_untrained
from surge.atomic import check_writable
from surge.errors import DatasetError, ImageWriteError
from surge.evaluation.metrics import Y_CONVENTIONS

DEFAULT_DATA = Path("..") / "shared" / "datasets" / "benchmark"
METRICS = ("psnr", "ssim", "niqe", "vif")


def add_parser(p: argparse.ArgumentParser) -> None:
    from surge.evaluation.runner import DEFAULT_SETS

    p.add_argument("--model", default="default", help="model name (`surge models`) or .safetensors file (default: best bundled, else bicubic)")
    p.add_argument("--data", type=Path, default=None,
                   help=f"benchmark root holding one folder per set (default: {DEFAULT_DATA} if it exists)")
    p.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), metavar="SET", help="set folders to evaluate (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write scores (means and per image) to this JSON file")
    p.add_argument("--save-sr", type=Path, metavar="DIR", help="save SR images as DIR/<set>/<name>.png")
    add_allow_untrained(p)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="compute precision (default fp32, so that scores do not depend on the machine)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--rgb", action="store_true", help="also report PSNR over RGB")
    p.add_argument("--metrics", nargs="+", choices=METRICS, default=["psnr", "ssim"], metavar="METRIC",
                   help="metrics to report, of %(choices)s (default: psnr ssim, always measured); niqe: no-reference "
                        "NIQE of the SR image (lower is better), vif: pixel-domain VIF against HR (higher is better)")
    p.add_argument("--y-convention", choices=Y_CONVENTIONS, default="matlab",
                   help="matlab: Y rounded as MATLAB's rgb2ycbcr on uint8 (reproduces the published tables, default); "
                        "float: unrounded Y (BasicSR)")
    p.add_argument("--crop", type=int, default=None, help="border pixels removed before measuring (default: the scale, 4)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average over the 8 flips/rotations of each input (8x slower; reported as '<model> +x8')")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def resolve_data(data: Path | None) -> Path:
    """``--data``, or ``../shared/datasets/benchmark`` relative to the working directory."""
    if data is not None:
        if not data.is_dir():
            raise DatasetError(f"{data}: benchmark folder not found")
        return data
    if DEFAULT_DATA.is_dir():
        return DEFAULT_DATA
    raise DatasetError(f"no --data given and {DEFAULT_DATA} (relative to {Path.cwd()}) does not exist; "
                       "pass --data DIR with one folder per set (e.g. DIR/Set5/HR, DIR/Set5/LR_bicubic_X4)")


def protocol_line(y_convention: str, crop: int, perceptual: tuple[str, ...] = ()) -> str:
    y = "BT.601 Y rounded like MATLAB rgb2ycbcr(uint8)" if y_convention == "matlab" else "BT.601 Y in float (unrounded)"
    line = f"PSNR/SSIM on {y}, {crop} px border crop, SSIM 11x11 Gaussian sigma 1.5"
    if "niqe" in perceptual:
        line += "; NIQE (MATLAB release, pristine model) on the SR's rounded Y, 96x96 blocks"
    if "vif" in perceptual:
        line += "; VIF-p (4 scales, noise variance 2) on Y"
    return line


def run(args: argparse.Namespace) -> int:
    from surge.evaluation.report import format_eval_table, format_skipped
    from surge.evaluation.runner import (
        Predictor, all_complete, evaluate, refuse_output_over_inputs, resolve_sets, results_to_dict, write_json,
    )

    data = resolve_data(args.data)
    if args.crop is not None and args.crop < 0:
        raise DatasetError(f"--crop must be >= 0, got {args.crop}")
    predictor = Predictor(surge.load_model(args.model, device=args.device), args.precision,
                          self_ensemble=args.self_ensemble)
    crop = predictor.scale if args.crop is None else args.crop
    refuse_untrained(predictor.model, args.allow_untrained)
    if args.json is not None:  # before any work: the scores must not replace an image or the model
        refuse_output_over_inputs(args.json, resolve_sets(data, args.sets, predictor.scale), [Path(args.model)])
        check_writable(args.json, ImageWriteError)
    print(printable(f"model {predictor.describe()} on {data}"), flush=True)
    perceptual = tuple(m for m in METRICS if m in args.metrics and m not in ("psnr", "ssim"))
    print(f"protocol: {protocol_line(args.y_convention, crop, perceptual)}", flush=True)
    results = evaluate(
        predictor, data, args.sets, save_sr=args.save_sr, crop=crop, y_convention=args.y_convention,
        rgb=args.rgb, perceptual_metrics=perceptual, progress=not args.quiet,
    )
    print(printable_lines(format_eval_table(results, rgb=args.rgb)))
    skipped = format_skipped(results)
    if skipped:
        print(printable_lines(skipped), file=sys.stderr)
    if args.json is not None:
        write_json(results_to_dict(results), args.json)
        print(printable(f"wrote {args.json}"))
    if args.save_sr is not None:
        print(printable(f"saved SR images under {args.save_sr}"))
    every_metric = not any(r.unmeasured for r in results.values())
    return 0 if all_complete(results.values()) and every_metric else 1
