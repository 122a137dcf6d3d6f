"""Host time of the device data pipeline: what one batch costs the thread that launches its work.

On a GPU the training step and the next batch's making share one Python process: the batch is
made by a thread whose host work (numpy draws, the interpreter, kernel launches) competes with
the training thread's under the interpreter lock. A step rate of R step/s leaves 1/R seconds of
host time per step for both, so this is the figure to keep small. Measured for a config's
``DeviceBatches`` (``surge.data.device_pairs``), with its own images replaced by synthetic ones
(the cost does not depend on the pixel values):

* ``plan``: drawing a batch's plan (crops, flips, blur kernels, every numpy draw); moved to
  ``data.workers`` processes when that is > 0;
* ``make``: turning a ready plan into the batch on the device, host side (on CUDA the call
  returns once its kernels are queued, and the queue is drained, untimed, before each call;
  ``--sync`` adds the wait for the batch's own kernels);
* ``plan + make``: the whole batch in the making thread with no workers, as before plans could
  move; ``make`` alone is what is left there with workers.

Each at the config's HR size and at ``--small`` px (where the arithmetic is negligible, so the
figure is nearly all overhead). Best of ``--repeats`` means of ``--batches`` batches; process
CPU time is not used since a GPU run's host time is wall time.

    python benchmarks/device_batches.py                               # CPU, configs/gpu-real-psnr.toml
    python benchmarks/device_batches.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from surge.data.device_pairs import DeviceBatches  # noqa: E402
from surge.evaluation.runner import write_json  # noqa: E402
from surge.training.config import load_config  # noqa: E402


def synthetic_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((size + 13 * (i % 3), size + 7 * (i % 5), 3)) * 255).astype(np.uint8) for i in range(count)]


def _per_batch(fn, batches: int, repeats: int, settle=lambda: None) -> float:
    """Mean seconds per call of ``fn(k)``, best of ``repeats`` rounds of ``batches`` calls.

    ``settle`` runs untimed before each call: on CUDA it waits for the queue to drain, so a call's
    time is its own host work, never back-pressure from a full launch queue.
    """
    best = float("inf")
    for r in range(repeats):
        total = 0.0
        for k in range(batches):
            settle()
            start = time.perf_counter()
            fn(r * batches + k)
            total += time.perf_counter() - start
        best = min(best, total / batches)
    return best


def measure(spec: str, hr_size: int, args) -> dict:
    """Host seconds per batch for config ``spec`` (``PATH`` or ``PATH:bicubic``) at ``hr_size``."""
    path, _, variant = spec.partition(":")
    cfg = load_config(path if Path(path).is_absolute() else REPO / path)
    degradation = None if variant == "bicubic" else cfg.data.degradation
    batch = args.batch or cfg.data.batch_size
    dev = DeviceBatches(synthetic_images(16, max(2 * hr_size, 64)), hr_size, args.device, seed=cfg.train.seed,
                        augment=cfg.data.augment, degradation=degradation)
    cuda = dev.device.type == "cuda"

    def done():
        if cuda and args.sync:
            torch.cuda.synchronize(dev.device)

    for k in range(3):  # warm-up: caches, first kernels
        dev.make(dev.plan(k, batch))
    done()
    plans = [dev.plan(k, batch) for k in range(args.batches * args.repeats)]

    def make(k):
        dev.make(plans[k])
        done()

    def both(k):
        dev.make(dev.plan(k, batch))
        done()

    def settle():
        if cuda:
            torch.cuda.synchronize(dev.device)

    timed = {"plan_s": lambda k: dev.plan(k, batch), "make_s": make, "plan_make_s": both}
    row = {"config": spec, "hr_size": hr_size, "batch": batch, "degradation": degradation is not None}
    row.update({name: _per_batch(fn, args.batches, args.repeats, settle) for name, fn in timed.items()})
    if cuda:
        torch.cuda.synchronize(dev.device)
    return row


def render(result: dict) -> str:
    lines = [f"device {result['device']} ({result['device_name']}), torch {result['torch']}, torch threads "
             f"{result['torch_threads']}; host ms per batch, best of {result['repeats']} means of {result['batches']}"
             + ("; CUDA synchronised after each batch" if result["sync"] else ""), "",
             "| config | batch x HR | plan (numpy) | make (device work) | plan + make (no workers) | make / (plan + make) |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        kind = "real-world" if r["degradation"] else "bicubic"
        lines.append(f"| {Path(r['config']).name} ({kind}) | {r['batch']} x {r['hr_size']} px | {1e3 * r['plan_s']:.1f} | "
                     f"{1e3 * r['make_s']:.1f} | {1e3 * r['plan_make_s']:.1f} | {r['make_s'] / r['plan_make_s']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["configs/gpu-real-psnr.toml", "configs/gpu-real-psnr.toml:bicubic"],
                    help="PATH:bicubic drops the config's [data.degradation] (clean LR)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=0, help="0: the config's")
    ap.add_argument("--small", type=int, default=32, help="the overhead-only HR size")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--sync", action="store_true", help="on CUDA, wait for each batch's kernels")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for spec in args.configs:
        hr = load_config(REPO / spec.partition(":")[0]).data.hr_size
        rows += [measure(spec, size, args) for size in sorted({hr, args.small}, reverse=True)]
    device = torch.device(args.device)
    result = {"device": args.device, "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cores": os.cpu_count(),
              "batches": args.batches, "repeats": args.repeats, "sync": args.sync, "rows": rows}
    print(render(result))
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()
