"""Images/s of `surge upscale --ray` with 1 and 2 actors against plain `surge upscale`, and
Ray's overhead per image; then, on paper, a cluster fed by the measured per-GPU rate.

Two views, one run:
- end to end: each command in a fresh process (Python, torch and, for --ray, a local Ray
  started and stopped), as a user would time it;
- steady state: one local Ray kept for the run (`ray.init(num_cpus=...)`), `upscale_with_ray`
  timed from its first manifest row to its last, against `Upscaler.process_file` in a loop (the
  same per-file work, no Ray). Ray's overhead per image is the 1-actor steady-state time per
  image minus the mean time the actors spent inside `process_file` (the manifest's `seconds`).

`bicubic` (the default) stands in for a fast GPU model: the per-image time is then decode +
encode, the part a GPU node has to keep up with on its CPUs.

    python benchmarks/ray_batch.py                                   # bicubic, 24 photos of 480x320 -> PNG
    python benchmarks/ray_batch.py --model surge-x4 --images 6 --size 160x120
    python benchmarks/ray_batch.py --gpu-json ../shared/models/gpu-run-2026-12-04/infer-cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_upscale import make_inputs  # noqa: E402 - the benchmarks' shared stand-in photos

from surge.training.precision import cpu_name  # noqa: E402


def end_to_end(inputs: Path, out: Path, model: str, ext: str, more: list[str]) -> float:
    cmd = [sys.executable, "-m", "surge.cli.main", "upscale", str(inputs), "-o", str(out), "--model", model,
           "--device", "cpu", "--ext", ext, "--quiet", *more]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def serial_pipeline(inputs: Path, out: Path, options) -> tuple[float, float]:
    """(seconds of the whole loop, mean seconds per file) of Upscaler.process_file, no Ray."""
    from surge.inference.pipeline import Upscaler, plan_jobs

    upscaler = Upscaler(options)
    upscaler.load()
    jobs, _ = plan_jobs([inputs], out, options)
    start = time.perf_counter()
    per_file = [upscaler.process_file(job.source, job.target).seconds for job in jobs]
    return time.perf_counter() - start, statistics.mean(per_file)


def steady_ray(inputs: Path, out: Path, options, actors: int) -> dict:
    from surge.inference.ray_batch import upscale_with_ray

    stamps: list[float] = []
    rows: list[dict] = []

    def on_row(row: dict) -> None:
        stamps.append(time.perf_counter())
        rows.append(row)

    start = time.perf_counter()
    summary = upscale_with_ray([inputs], out, options, actors=actors, on_row=on_row)
    wall = time.perf_counter() - start
    assert summary.done == len(rows) and not summary.failed, summary
    return {"wall": wall, "first_row": stamps[0] - start, "steady_per_image": (stamps[-1] - stamps[0]) / (len(stamps) - 1),
            "inside": statistics.mean(r["seconds"] for r in rows)}


def output_bytes_per_mp(out: Path) -> float:
    from PIL import Image

    total_bytes = total_px = 0
    for path in out.glob("*_x4.*"):
        with Image.open(path) as img:
            total_px += img.width * img.height
        total_bytes += path.stat().st_size
    return total_bytes / (total_px / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bicubic")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", default="480x320", help="input WxH")
    parser.add_argument("--ext", default="png", help="output format")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="num_cpus of the local Ray")
    parser.add_argument("--gpu-json", type=Path, default=None, help="infer-cuda.json of a device run: adds the cluster estimate")
    parser.add_argument("--cluster", default="10x8", help="nodes x GPUs for the estimate")
    args = parser.parse_args()

    import ray

    from surge.inference.pipeline import UpscaleOptions

    options = UpscaleOptions(model=args.model, device="cpu", ext=args.ext)
    width, height = map(int, args.size.split("x"))
    n = args.images
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = tmp / "in"
        inputs.mkdir()
        make_inputs(inputs, n, args.size, "jpg")
        table = []
        wall = end_to_end(inputs, tmp / "plain", args.model, args.ext, [])
        table.append(("surge upscale (fresh process)", wall, n / wall, "-"))
        wall = end_to_end(inputs, tmp / "plain0", args.model, args.ext, ["--io-threads", "0"])
        table.append(("surge upscale --io-threads 0 (fresh process)", wall, n / wall, "-"))
        for actors in args.actors:
            wall = end_to_end(inputs, tmp / f"ray{actors}", args.model, args.ext, ["--ray", "--ray-actors", str(actors)])
            table.append((f"surge upscale --ray --ray-actors {actors} (fresh process)", wall, n / wall, "-"))
        mp_bytes = output_bytes_per_mp(tmp / "plain")

        loop, per_file = serial_pipeline(inputs, tmp / "serial", options)
        table.append(("Upscaler.process_file loop, no Ray (steady)", loop, n / loop, f"{per_file * 1e3:.0f} ms/file inside"))
        start = time.perf_counter()
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        init_s = time.perf_counter() - start
        steady = {}
        try:
            for actors in args.actors:
                steady[actors] = s = steady_ray(inputs, tmp / f"steady{actors}", options, actors)
                table.append((f"upscale_with_ray, {actors} actor(s), Ray up (steady)", s["wall"], 1 / s["steady_per_image"],
                              f"first row {s['first_row']:.1f} s; {s['inside'] * 1e3:.0f} ms/file inside"))
        finally:
            ray.shutdown()
    load_after = os.getloadavg()[0]

    print(f"\n{n} images {width}x{height} JPEG -> x4 {args.ext}, model {args.model}, CPU: {cpu_name()}, "
          f"{os.cpu_count()} cores; load average {load_before:.1f} before, {load_after:.1f} after; ray {ray.__version__}\n")
    print("| run | wall s | images/s | note |\n|---|---|---|---|")
    for name, wall, rate, note in table:
        print(f"| {name} | {wall:.1f} | {rate:.2f} | {note} |")
    one = steady[args.actors[0]]
    overhead = one["steady_per_image"] - one["inside"]
    print(f"\nlocal Ray start (ray.init): {init_s:.1f} s; Ray's overhead per image ({args.actors[0]} actor, steady): "
          f"{overhead * 1e3:.0f} ms ({one['steady_per_image'] * 1e3:.0f} ms per image vs {one['inside'] * 1e3:.0f} ms inside "
          f"process_file); serial per-file time without Ray: {per_file * 1e3:.0f} ms")
    out_mp = width * height * 16 / 1e6
    per_core = out_mp / per_file  # output MP/s one core's decode + encode sustain (bicubic: no network to speak of)
    print(f"output: {out_mp:.2f} MP per image, {mp_bytes / 1e6:.2f} MB per output MP ({args.ext}); "
          f"one process_file stream: {per_core:.2f} output MP/s")
    if args.gpu_json:
        estimate(args.gpu_json, args.cluster, out_mp, per_core, mp_bytes)


def estimate(gpu_json: Path, cluster: str, out_mp: float, per_core: float, mp_bytes: float) -> None:
    """On paper: the cluster's images/hour from the measured per-GPU network rate, and what must keep up."""
    data = json.loads(gpu_json.read_text())
    row = next(r for r in data["rows"] if r["model"] == "surge" and r["variant"] == "auto")
    lr = 128 * 128
    gpu_mps = lr * 16 / row["seconds"] / 1e6  # output MP/s of one GPU, network only
    nodes, gpus = map(int, cluster.lower().split("x"))
    total = nodes * gpus
    images_h = total * gpu_mps / out_mp * 3600
    cores = gpu_mps / per_core
    print(f"\nOn paper ({nodes} nodes x {gpus} GPUs; per GPU {gpu_mps:.1f} output MP/s = SuRGe paper config, "
          f"{row.get('precision', 'auto')}, {row['seconds'] * 1e3:.1f} ms per 128x128 LR, from {gpu_json.name}):")
    print(f"- network-bound: {images_h / 1e6:.2f} M images/hour of {out_mp:.2f} output MP ({total * gpu_mps:.0f} output MP/s)")
    print(f"- decode + encode ({per_core:.2f} output MP/s per stream measured here) need {cores:.0f} such streams per GPU, "
          f"{cores * gpus:.0f} per node")
    print(f"- outputs: {total * gpu_mps * mp_bytes / 1e9:.1f} GB/s to storage for the cluster, "
          f"{gpu_mps * gpus * mp_bytes * 8 / 1e9:.1f} Gbit/s per node")


if __name__ == "__main__":
    main()
