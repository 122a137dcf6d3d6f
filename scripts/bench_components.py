"""Which part of bench-v1 costs a model its gain: the benchmark rebuilt with components left out.

bench-v1 (``surge degrade``) is blur -> MATLAB bicubic x1/4 -> Gaussian noise -> JPEG, with
per-image parameters from the seed and the image's name. This script rebuilds the LR of the
same images with the same parameters but only some of the steps, and scores models on each
variant, so a gap to a target can be traced to the blur, the noise or the compression:

    blur             blur + bicubic x1/4 (rounded to 8 bits)
    blur+noise       ... + the image's Gaussian noise
    blur+jpeg        ... + the image's JPEG quality (no noise)
    bench-v1         all steps: identical to `surge degrade` (checked against its recipe.json)

    python scripts/bench_components.py --data /tmp/degraded --models bicubic surge-x4-real \\
        runs/cpu-real-psnr-aa/last.safetensors --json components.json

``--data`` is a `surge degrade` output (its HR folders and recipe.json are read, never
written); the variants are built in ``--work`` (a temporary folder by default). Prints one
Markdown table: PSNR-Y per model, variant and set, and each model's gain over bicubic.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from surge.data.degradations import bench_v1

VARIANTS = {
    "blur": (False, False),
    "blur+noise": (True, False),
    "blur+jpeg": (False, True),
    "bench-v1": (True, True),
}
SCALE = 4


def build_variants(data: Path, sets: list[str], work: Path) -> None:
    """``work/<variant>/<Set>/{HR, LR_degraded_X4}`` for every variant, from ``data``'s recipe."""
    for name in sets:
        recipe = json.loads((data / name / "recipe.json").read_text())
        for stem, params in recipe["images"].items():
            hr = np.asarray(Image.open(data / name / "HR" / f"{stem}.png"))
            for variant, (noise, jpeg) in VARIANTS.items():
                lr = bench_v1(hr, params, SCALE, noise=noise, jpeg=jpeg)
                if variant == "bench-v1":
                    expected = np.asarray(Image.open(data / name / f"LR_degraded_X{SCALE}" / f"{stem}x{SCALE}.png"))
                    if not np.array_equal(lr, expected):
                        sys.exit(f"bench_components: {name}/{stem}: rebuilt bench-v1 LR differs from {data}")
                for folder, file, arr in (("HR", f"{stem}.png", hr), (f"LR_degraded_X{SCALE}", f"{stem}x{SCALE}.png", lr)):
                    out = work / variant / name / folder
                    out.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(out / file)


def score(models: list[str], sets: list[str], work: Path) -> dict:
    """{model: {variant: {set: PSNR-Y}}}; the bicubic reference is always included."""
    from surge.evaluation.runner import psnr_y_by_variant

    return psnr_y_by_variant(models, {variant: work / variant for variant in VARIANTS}, sets)


def table(results: dict, sets: list[str]) -> str:
    head = "| model | " + " | ".join(VARIANTS) + " |"
    lines = [f"PSNR-Y ({' / '.join(sets)}), in brackets the gain over bicubic", "", head,
             "|---|" + "---|" * len(VARIANTS)]
    ref = results["bicubic"]
    for model, by_variant in results.items():
        cells = []
        for variant in VARIANTS:
            values = [by_variant[variant][s] for s in sets]
            text = " / ".join(f"{v:.2f}" for v in values)
            if model != "bicubic":
                text += " (" + " / ".join(f"{v - ref[variant][s]:+.2f}" for v, s in zip(values, sets)) + ")"
            cells.append(text)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a `surge degrade` output folder")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    p.add_argument("--models", nargs="+", required=True, help="model names or .safetensors files")
    p.add_argument("--work", type=Path, default=None, help="where the variants are built (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the scores here")
    args = p.parse_args(argv)
    for name in args.sets:
        if not (args.data / name / "recipe.json").is_file():
            sys.exit(f"bench_components: {args.data / name}: no recipe.json (not a `surge degrade` output)")
    with tempfile.TemporaryDirectory(prefix="bench-components-") as tmp:
        work = args.work or Path(tmp)
        build_variants(args.data, args.sets, work)
        results = score(args.models, args.sets, work)
    print(table(results, args.sets))
    if args.json is not None:
        tmp_json = args.json.with_name(args.json.name + ".tmp")
        tmp_json.write_text(json.dumps(results, indent=2) + "\n")
        tmp_json.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
