"""`surge compare`: models side by side with published rows, plus a zoomed-crop figure.

Writes ``OUT/comparison.md`` (markdown table), ``OUT/crops.png`` (HR, bicubic and each
model on the chosen crops) and ``OUT/results.json`` (every measured score, reusable with
``--results`` so that expensive evaluations are not redone). Exit status as `surge eval`:
1 when any image was skipped, 2 on errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import surge
from surge.cli.messages import printable, printable_lines
from surge import PRECISIONS
from surge.errors import DatasetError, SurgeError

DEFAULT_OUT = Path("docs") / "results" / "compare"
DEFAULT_CROP_SIZE = 64
MAX_DEFAULT_CROPS = 3


def add_parser(p: argparse.ArgumentParser) -> None:
    from surge.evaluation.runner import DEFAULT_SETS

    p.add_argument("--models", nargs="+", default=[], metavar="MODEL",
                   help="model names (`surge models`) or .safetensors files to evaluate, e.g. bicubic my.safetensors")
    p.add_argument("--results", nargs="+", default=[], type=Path, metavar="JSON",
                   help="scores saved by `surge eval --json` or a previous compare's results.json; a model listed in "
                        "--models whose scores are here is not re-evaluated (it is still run on the crops)")
    p.add_argument("--data", type=Path, default=None, help="benchmark root (default: ../shared/datasets/benchmark if it exists)")
    p.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), metavar="SET")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    p.add_argument("--crops", nargs="+", default=[], metavar="SET/IMAGE[:X,Y,SIZE]",
                   help="crops for the figure, HR pixel coordinates of the top-left corner and the side; without "
                        "X,Y,SIZE the most detailed window is used (default: the first image of each of the first 3 sets)")
    p.add_argument("--crop-size", type=int, default=DEFAULT_CROP_SIZE, help="side of automatic crops in HR pixels (default: %(default)s)")
    p.add_argument("--no-reference", action="store_true", help="leave out the published rows")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="compute precision (default fp32, so that scores do not depend on the machine)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from surge.cli.eval_cmd import protocol_line, resolve_data
    from surge.evaluation.reference import REFERENCES, canonical_set
    from surge.evaluation.report import (
        CropSpec, ModelEntry, format_eval_table, format_skipped, load_results_json, markdown_report, write_text,
    )
    from surge.evaluation.runner import Predictor, evaluate, write_json

    if not args.models and not args.results:
        raise SurgeError("give --models and/or --results")
    if args.crop_size < 4:
        raise SurgeError(f"--crop-size must be at least 4, got {args.crop_size}")
    crops = [CropSpec.parse(c) for c in args.crops]  # fail on a typo before any work
    data = resolve_data(args.data)

    saved: list[ModelEntry] = []
    for path in args.results:
        saved.extend(load_results_json(path))
    saved_by_name = {e.name: e for e in saved}

    entries: list[ModelEntry] = []
    predictors: dict[str, Predictor] = {}
    for spec in args.models:
        predictor = Predictor(surge.load_model(spec, device=args.device), args.precision)
        name = predictor.name if predictor.name not in predictors else str(spec)
        predictors[name] = predictor
        entry = saved_by_name.pop(name, None) or ModelEntry(name, params=predictor.params)
        missing = [s for s in args.sets if entry.result(s) is None]
        if missing:
            print(printable(f"evaluating {name} on {', '.join(missing)}"), flush=True)
            fresh = evaluate(predictor, data, missing, progress=not args.quiet)
            entry.results.update(fresh)
            entry.origin = "measured" if entry.origin == "measured" else f"measured + {entry.origin}"
        entry.params = entry.params if entry.params is not None else predictor.params
        entries.append(entry)
    entries.extend(saved_by_name.values())  # JSON-only: table rows, not in the figure

    for e in entries:
        shown = {s: e.result(s) for s in args.sets if e.result(s) is not None}
        print(printable_lines(f"\n{e.name} ({e.origin})"))
        print(printable_lines(format_eval_table(shown)))
        skipped = format_skipped(shown)
        if skipped:
            print(printable_lines(skipped), file=sys.stderr)

    out: Path = args.out
    figure = _crop_figure(entries, predictors, data, args, crops, out / "crops.png")
    crop_values = {e.result(s).crop for e in entries for s in args.sets if e.result(s) is not None}
    conventions = {e.result(s).y_convention for e in entries for s in args.sets if e.result(s) is not None}
    protocol = "; ".join(protocol_line(c, k) for c in sorted(conventions) for k in sorted(crop_values))
    references = () if args.no_reference else REFERENCES
    sets = [canonical_set(s) for s in args.sets]
    md = markdown_report(entries, sets, figure=figure.name if figure else None, references=references, protocol=protocol)
    write_text(md, out / "comparison.md")
    write_json({e.name: {s: r.to_dict() for s, r in e.results.items()} for e in entries}, out / "results.json")
    print(printable_lines(f"\nwrote {out / 'comparison.md'}, {out / 'results.json'}" + (f", {figure}" if figure else "")))
    complete = all(r.complete for e in entries for s in args.sets if (r := e.result(s)) is not None)
    return 0 if complete else 1


def _crop_figure(entries, predictors, data: Path, args, crops, path: Path) -> Path | None:
    """Build the crop figure: HR, bicubic, then each model that can be run."""
    from surge.evaluation.datasets import discover_set, load_pair
    from surge.evaluation.metrics import psnr_ssim_y
    from surge.evaluation.report import CropPanel, CropSpec, most_detailed_window, save_crop_figure
    from surge.evaluation.datasets import find_set
    from surge.evaluation.runner import Predictor

    if not predictors:
        return None
    scale = next(iter(predictors.values())).scale
    if not crops:
        # Default: per set (first 3), the image the first model scores worst on (where
        # models differ most: Set5 -> butterfly for bicubic), most detailed window.
        for s in args.sets[:MAX_DEFAULT_CROPS]:
            bench = discover_set(find_set(data, s), scale)
            result = entries[0].result(s) if entries else None
            if result is not None and result.per_image:
                crops.append(CropSpec(bench.name, min(result.per_image, key=lambda n: result.per_image[n].psnr_y)))
            elif bench.pairs:
                crops.append(CropSpec(bench.name, bench.pairs[0].name))
    columns = dict(predictors)
    if "bicubic" not in columns:
        columns = {"bicubic": Predictor(surge.load_model("bicubic", device="cpu"), "fp32"), **columns}
    by_name = {e.name: e for e in entries}
    rows = []
    for crop in crops:
        bench = discover_set(find_set(data, crop.set_name), scale)
        pair = next((p for p in bench.pairs if p.name == crop.image), None)
        if pair is None:
            names = ", ".join(p.name for p in bench.pairs[:20])
            raise DatasetError(f"--crops {crop}: no image {crop.image!r} in {bench.root} (has: {names})")
        lr, hr = load_pair(pair, scale)
        size = crop.size or min(args.crop_size, hr.shape[0], hr.shape[1])
        x, y = (crop.x, crop.y) if crop.size is not None else most_detailed_window(hr, size)
        if x + size > hr.shape[1] or y + size > hr.shape[0]:
            raise DatasetError(f"--crops {crop}: window exceeds the {hr.shape[1]}x{hr.shape[0]} HR image")
        box = (slice(y, y + size), slice(x, x + size))
        panels = [CropPanel("HR", hr[box])]
        for name, predictor in columns.items():
            sr = predictor(lr)
            saved = by_name.get(name)
            result = saved.result(bench.name) if saved else None
            img = result.per_image.get(pair.name) if result else None
            psnr, ssim = (img.psnr_y, img.ssim_y) if img else psnr_ssim_y(sr, hr, scale)
            panels.append(CropPanel(f"{name}\n{psnr:.2f} dB / {ssim:.4f}", sr[box]))
        rows.append((f"{bench.name}/{pair.name}\n({x},{y}) {size}px", panels))
    return save_crop_figure(rows, path)
