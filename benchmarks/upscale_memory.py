"""Peak memory and wall time of `surge.upscale` on a 960x540 -> 3840x2160 image, per tile setting.

Each setting runs in a fresh child process, so its peak resident set (ru_maxrss from
``os.wait4``) is that run's alone: imports, model, input, output and tiles included.
The image is synthetic (no dataset files) and the model is the paper-size ``surge``
preset with random weights: memory and time do not depend on the weights' values.

    python benchmarks/upscale_memory.py                       # auto, 128, 256
    python benchmarks/upscale_memory.py --tiles auto,0 --size 480x270
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def synthetic_image(width: int, height: int):
    """Smooth gradients, stripes and a little noise: a deterministic stand-in photo."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 0.5 + 0.5 * np.sin(x / 37.0) * np.cos(y / 23.0)
    g = (x + y) / (width + height)
    b = 0.5 + 0.5 * np.sin((x - 2 * y) / 11.0)
    noise = np.random.default_rng(0).normal(0, 0.03, (height, width, 3)).astype(np.float32)
    rgb = np.clip(np.stack([r, g, b], axis=-1) + noise, 0, 1)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def child(args) -> None:
    """One measured run; prints a JSON line for the parent."""
    import resource

    import torch

    import surge
    from surge.inference.tiling import plan_tiles
    from surge.inference.upscale import _resolve_tile

    start = time.perf_counter()
    width, height = map(int, args.size.split("x"))
    image = synthetic_image(width, height)
    torch.manual_seed(0)
    # Loaded and prepared once (what a batch job does), so the tile choice can be reported.
    model = surge.load_model(args.model, device="cpu", precision=args.precision).prepare()
    tile = None if args.tile in ("0", "none") else ("auto" if args.tile == "auto" else int(args.tile))
    overlap = model.receptive_radius
    effective = _resolve_tile(tile, model._engine(), height, width, overlap)  # what upscale() will use
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = surge.upscale(image, model=model, tile=tile)
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "effective_tile": effective,
        "tiles": len(plan_tiles(height, width, effective, overlap)),
        "overlap": overlap,
        "precision": model._engine().precision,
        "out_size": f"{out.size[0]}x{out.size[1]}",
        "rss_before_upscale_mb": rss_before / 1024,
        "upscale_s": seconds,
        "child_total_s": time.perf_counter() - start,
    }))


def measure(tile: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--tile", tile, "--size", args.size,
           "--model", args.model, "--precision", args.precision]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child for tile={tile} failed with exit code {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["tile"] = tile
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


def print_table(rows: list[dict], args) -> None:
    import torch

    print(f"surge.upscale, model {args.model} (random init), {args.size} -> x4, CPU, "
          f"{torch.get_num_threads()} torch threads, precision {args.precision}")
    print()
    print("| --tile | LR tile used | tiles | overlap | precision | output | peak RSS (MB) | RSS before upscale (MB) | upscale (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        used = r["effective_tile"] if r["effective_tile"] else "untiled"
        print(f"| {r['tile']} | {used} | {r['tiles']} | {r['overlap']} | {r['precision']} | {r['out_size']} | "
              f"{r['peak_rss_mb']:.0f} | {r['rss_before_upscale_mb']:.0f} | {r['upscale_s']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="auto,128,256", help="comma-separated --tile values (0 = untiled)")
    parser.add_argument("--size", default="960x540", help="LR size WxH")
    parser.add_argument("--model", default="surge")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tile", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for tile in args.tiles.split(","):
        rows.append(measure(tile, args))
        print(f"measured tile={tile}: {rows[-1]['peak_rss_mb']:.0f} MB, {rows[-1]['upscale_s']:.1f} s", file=sys.stderr)
    print_table(rows, args)


if __name__ == "__main__":
    main()
