#!/usr/bin/env python
"""CPU cost of trained models as users run them: seconds per output megapixel, side by side in one run.

    python benchmarks/model_speed.py --models bicubic surge-x4-real-psnr runs/x.safetensors \
        --peer ../shared/peers/realesr-general-x4v3/realesr-general-x4v3-fp32.safetensors --json speed.json

Every surge model goes through ``surge.upscale`` (the default inference path: exact rewrites,
fp32 on a CPU without native bf16, no tiling for this size); a peer (``benchmarks/peers.py``'s
SRVGGNetCompact with released weights) runs its plain module in fp32. Input: one LR crop of
scikit-image's ``chelsea`` (``--lr-size`` px square), the same for every model. Timing: the best
of ``--repeats`` calls after one warm-up call, models interleaved round by round so that load
from other processes on a shared machine hits all of them alike; each call's CPU stall (Linux
PSI "some", time runnable threads waited for a CPU) is printed with the best call, so a
contended figure can be recognised. MFLOP per LR pixel: the nominal network's, by torch's flop
counter (``surge info`` counts the same way).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surge  # noqa: E402
from surge.inference.info import flops_per_lr_pixel  # noqa: E402

PSI = Path("/proc/pressure/cpu")


def stall_us() -> int | None:
    """Cumulative microseconds some runnable thread waited for a CPU (None without PSI)."""
    try:
        return int(PSI.read_text().split()[4].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def cpu_name() -> str:
    """"AMD EPYC family 25 model 1": the model name alone does not tell Zen generations apart."""
    info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()[:30] if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    return f"{info.get('model name', platform.processor())} family {info.get('cpu family', '?')} model {info.get('model', '?')}"


def peer_runner(path: Path):
    from peer_eval import load_peer

    net = load_peer(path)

    def run(lr: np.ndarray) -> None:
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255)
        with torch.inference_mode():
            net(x)

    x = torch.rand(1, 3, 32, 32)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(x)
    return run, counter.get_total_flops() / (32 * 32), sum(p.numel() for p in net.parameters())


def surge_runner(name: str):
    model = surge.load_model(name, device="cpu")

    def run(lr: np.ndarray) -> None:
        surge.upscale(lr, model=model, tile=None, precision="fp32")

    return run, flops_per_lr_pixel(model), sum(p.numel() for p in model.network.parameters())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["bicubic", "surge-x4-psnr", "surge-x4-real-psnr"],
                   help="model names or weights files, optionally as LABEL=FILE")
    p.add_argument("--peer", type=Path, action="append", default=[], help="realesr-general-x4v3 weights (SRVGGNetCompact)")
    p.add_argument("--lr-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    s = args.lr_size
    lr = np.ascontiguousarray(data.chelsea()[60 : 60 + s, 150 : 150 + s])
    if lr.shape[:2] != (s, s):
        raise SystemExit(f"--lr-size {s}: larger than the {data.chelsea().shape[1]}x{data.chelsea().shape[0]} photo allows")
    rows = {}
    for entry in args.models:  # NAME, FILE or LABEL=FILE
        label, _, name = entry.rpartition("=")
        rows[label or name] = surge_runner(name)
    for path in args.peer:
        rows[path.stem.removesuffix("-fp32")] = peer_runner(path)
    best: dict[str, tuple[float, float]] = {}
    for run, _, _ in rows.values():
        run(lr)  # warm-up
    for _ in range(args.repeats):
        for name, (run, _, _) in rows.items():
            s0, t0 = stall_us(), time.perf_counter()
            run(lr)
            dt = time.perf_counter() - t0
            stall = (stall_us() - s0) / 1e6 / dt if s0 is not None else float("nan")
            if name not in best or dt < best[name][0]:
                best[name] = (dt, stall)
    out_mp = (4 * s) ** 2 / 1e6
    header = (f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, fp32; "
              f"input {s}x{s} LR -> {4 * s}x{4 * s} ({out_mp:.3f} MP), best of {args.repeats}")
    print(header)
    print("\n| model | params | MFLOP / LR px | s / output MP | ms / image | effective GFLOP/s | CPU stall in best call |")
    print("|---|---|---|---|---|---|---|")
    table = []
    for name, (run, flops, params) in rows.items():
        dt, stall = best[name]
        gflops = flops * s * s / dt / 1e9
        table.append({"model": name, "params": params, "mflop_per_lr_px": flops / 1e6, "s_per_mp": dt / out_mp,
                      "ms_per_image": dt * 1e3, "gflop_per_s": gflops, "stall_share": stall})
        print(f"| {name} | {params:,} | {flops / 1e6:.1f} | {dt / out_mp:.3f} | {dt * 1e3:.0f} | {gflops:.0f} | {stall:.0%} |")
    if args.json:
        args.json.write_text(json.dumps({"conditions": header, "rows": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
