"""Wall time of `surge upscale` on a folder, reading ahead and writing behind the model
(``--io-threads N``) against one file after another (``--io-threads 0``).

The saving is the decode and encode time that overlaps the network: small where the network
dominates (a CPU running SuRGe), large where it does not (a GPU, or ``bicubic`` standing in for
one here: a 4x PNG takes zlib longer to encode than a GPU takes to compute it). Each setting
runs the same CLI in a fresh process, in rounds that alternate the settings (these machines are
noisy); the table gives the median per setting and its ratio to ``--io-threads 0``.

    python benchmarks/batch_upscale.py                                # bicubic, 12 photos of 480x320, PNG out
    python benchmarks/batch_upscale.py --model surge-x4-psnr --images 4 --size 240x160
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upscale_memory import synthetic_image  # noqa: E402 - the benchmarks' shared stand-in photo

from surge.training.precision import cpu_id, cpu_name  # noqa: E402


def make_inputs(folder: Path, count: int, size: str, ext: str) -> None:
    width, height = map(int, size.split("x"))
    base = synthetic_image(width, height)
    for i in range(count):
        # Shifted copies: the same work per file, not byte-identical files.
        base.rotate(i * 7, expand=False).save(folder / f"photo{i:02d}.{ext}", quality=90)


def run_cli(inputs: Path, out: Path, model: str, threads: int, ext: str) -> float:
    cmd = [sys.executable, "-m", "surge.cli.main", "upscale", str(inputs), "-o", str(out), "--model", model,
           "--device", "cpu", "--io-threads", str(threads), "--ext", ext, "--overwrite", "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bicubic")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", default="480x320", help="input WxH")
    parser.add_argument("--input-ext", default="jpg")
    parser.add_argument("--ext", default="png", help="output format")
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2], help="--io-threads settings to compare")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        make_inputs(inputs, args.images, args.size, args.input_ext)
        times: dict[int, list[float]] = {t: [] for t in args.threads}
        for _ in range(args.rounds):
            for t in args.threads:
                times[t].append(run_cli(inputs, Path(tmp) / f"out{t}", args.model, t, args.ext))
    base = statistics.median(times[args.threads[0]])
    print(f"# surge upscale, {args.images} x {args.size} {args.input_ext} -> x4 {args.ext}, --model {args.model}, "
          f"{os.cpu_count()} cores: {cpu_name()} {cpu_id()}; median of {args.rounds} rounds (process start included)")
    print()
    print("| --io-threads | seconds (median) | all rounds | vs first row |")
    print("|---|---|---|---|")
    for t in args.threads:
        median = statistics.median(times[t])
        rounds = " / ".join(f"{x:.1f}" for x in times[t])
        print(f"| {t} | {median:.2f} | {rounds} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
