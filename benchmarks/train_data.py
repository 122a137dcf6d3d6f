"""Training step rate with the data made by CPU loader processes vs on the training device.

For each experiment config, the project's own :class:`surge.training.trainer.Trainer` is built
twice, with ``data.pipeline = "loader"`` (torch DataLoader, ``data.workers`` processes, numpy/Pillow
degradations) and ``data.pipeline = "device"`` (``surge.data.device_pairs``: images on the device,
batched torch crops and degradations), and its unmodified loop body is run: take the next batch
from ``Trainer._loader``, move it to the device, ``train_step``. The two pipelines alternate in
rounds (``--rounds``) so that both see the same machine load; the table gives each one's step
rate and their ratio side by side.

Columns: ``step/s`` (steps over the wall time of the timed rounds); ``data wait``: share of the
wall time spent getting the next batch (for ``device`` that is the batch's own making, queued on
the device); ``busy``: on CUDA, the share of wall time between CUDA events recorded around ``train_step`` (the
step ends with a host sync for the logged loss; an upper bound of the step's kernel time) and
NVML's utilisation (``torch.cuda.utilization``, the share of time any kernel ran, data kernels
included; n/a without pynvml), on CPU the process's CPU time over wall time; ``TFLOP/s``: the model's FLOPs per step (forward + backward +
optimiser, counted by ``torch.utils.flop_counter`` on one step) times step/s, and its share of
the conv and matmul peaks measured in the same run (one 128->128 3x3 conv at 256^2,
channels_last; an 8192^2 matmul on CUDA, 2048^2 on CPU; fp32 and, on CUDA, bf16).

Training images: ``--train-dirs`` (else the config's ``data.train_dirs``; where those are absent,
64 synthetic 200x200 images, which the table says). The loader's first ``--warmup`` batches and
the device's are not timed.

    python benchmarks/train_data.py                                   # CPU: cpu-psnr + cpu-real-psnr at batch 8
    python benchmarks/train_data.py --device cuda --configs configs/gpu-real-psnr.toml \\
        configs/gpu-real-psnr.toml:bicubic --batch 0 --train-dirs DATA/T91 DATA/BSD200 --seconds 120 --json out.json

``PATH:bicubic`` runs PATH's experiment without its ``[data.degradation]`` table (clean MATLAB-bicubic LR).

``--compile first`` (or ``all``) adds a third row for the first (or every) config: the device
pipeline with ``train.compile = true`` (torch.compile of the generator). Its untimed warm-up holds
the compile, reported as ``warmup_s`` beside the eager rows'; a compile that fails is recorded as
the row's ``error`` and the other rows stand. ``--compile-mode reduce-overhead`` compiles that
row with ``train.compile_mode = "reduce-overhead"`` (CUDA graphs of the compiled forward and
backward). The JSON is rewritten after each config, so a run cut off by a timeout keeps the
configs it finished.

``--profile-steps N`` then runs N more steps of the first config's device pipelines (eager, and
compiled when timed) under ``torch.profiler``, to say where a step goes when the target is missed:
kernel time per step (CUDA), CPU time inside operators (all threads: the batch-making thread's
too), kernel launches per step, and the operators or kernels that take the most. The profiler adds
host time, so its wall time per step is not the step rate; the timed rounds are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from surge.evaluation.runner import write_json  # noqa: E402
from surge.training.config import ExperimentConfig, apply_overrides, load_config, read_config_data  # noqa: E402
from surge.training.trainer import Trainer  # noqa: E402

PIPELINES = ("loader", "device")
COMPILED = "device+compile"  # the device pipeline with train.compile = true


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, device, repeats: int = 6) -> float:
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def peaks(device: torch.device) -> dict:
    """TFLOP/s of one large matmul and one large 3x3 conv per dtype, best of a few."""
    cuda = device.type == "cuda"
    n = 8192 if cuda else 2048
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16} if cuda else {"fp32": torch.float32}
    out = {}
    for name, dtype in dtypes.items():
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        out[f"matmul_{name}"] = 2 * n**3 / _best_time(lambda: a @ b, device) / 1e12
        side, batch = (256, 1) if cuda else (64, 2)
        conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(device, dtype).to(memory_format=torch.channels_last)
        x = torch.randn(batch, 128, side, side, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out[f"conv_{name}"] = 2 * 128 * 128 * 9 * side * side * batch / _best_time(lambda: conv(x), device) / 1e12
        del a, b, conv, x
    return out


def synthetic_dir(root: Path, count: int = 64, size: int = 200) -> Path:
    from PIL import Image

    folder = root / "synthetic"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"{i}.png")
    return folder


def build_config(path: str, pipeline: str, args, train_dirs: list[str], extra: tuple[str, ...] = ()):
    """The experiment config for one row; ``PATH:bicubic`` is PATH without its [data.degradation] (clean LR)."""
    path, _, variant = path.partition(":")
    overrides = [f"data.pipeline={pipeline}", 'data.val_dir=""', 'train.init_from=""', f"train.device={args.device}",
                 "train.steps=1000000", f"data.train_dirs={json.dumps(train_dirs)}", *args.set, *extra]
    if args.batch:
        overrides.append(f"data.batch_size={args.batch}")
    if args.hr_size:
        overrides.append(f"data.hr_size={args.hr_size}")
    if args.workers is not None:
        overrides.append(f"data.workers={args.workers}")
    if variant not in ("", "bicubic"):
        raise SystemExit(f"train_data.py: unknown config variant {variant!r} in {path}:{variant} (known: bicubic)")
    data = read_config_data(path)
    if variant == "bicubic":
        data.get("data", {}).pop("degradation", None)
    apply_overrides(data, overrides, path)
    return ExperimentConfig.from_dict(data, source=path)


def flops_per_step(trainer: Trainer, lr: torch.Tensor, hr: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(lr, hr)
    return float(counter.get_total_flops())


class UtilizationSampler:
    """NVML's GPU utilisation (share of time a kernel ran, per ~1/6-1 s sample window), sampled in a
    thread every 0.1 s while a round runs; unavailable (None) without pynvml or off CUDA."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self.ok = device, [], device.type == "cuda"
        if self.ok:
            try:
                torch.cuda.utilization(device)
            except Exception:  # no pynvml / NVML: report none rather than guess
                self.ok = False

    def __enter__(self):
        import threading

        self.stop = threading.Event()
        if self.ok:
            def sample():
                while not self.stop.wait(0.1):
                    self.samples.append(torch.cuda.utilization(self.device))

            self.thread = threading.Thread(target=sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.ok:
            self.thread.join()

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch")


def profile_steps(runner: "Runner", steps: int, top: int = 10) -> dict:
    """``steps`` more training steps of ``runner`` under torch.profiler: where their time goes."""
    from torch.profiler import ProfilerActivity, profile

    cuda = runner.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # Operators of every thread (by default only the calling thread's: the batch-making thread's
    # would be missing); an older torch without the option gives the training thread's alone.
    try:
        extra = {"experimental_config": torch._C._profiler._ExperimentalConfig(profile_all_threads=True)}
        threads = "all"
    except (AttributeError, TypeError):
        extra, threads = {}, "training thread"
    _sync(runner.device)
    start = time.perf_counter()
    with profile(activities=activities, **extra) as prof:
        for _ in range(steps):
            runner.trainer.train_step(*runner.next_batch())
        _sync(runner.device)
    wall = time.perf_counter() - start
    events = list(prof.key_averages())
    # self times: an operator's excludes what it called, so the sums count nothing twice
    kernel_us = sum(e.self_device_time_total for e in events) if cuda else None
    cpu_us = sum(e.self_cpu_time_total for e in events)
    rank_by = "self_device_time_total" if cuda else "self_cpu_time_total"
    total = (kernel_us if cuda else cpu_us) or 1.0
    ranked = sorted(events, key=lambda e: getattr(e, rank_by), reverse=True)[:top]
    return {
        "steps": steps, "ranked_by": "kernel time" if cuda else "CPU time", "threads": threads,
        # host waits for the GPU (CUDA runtime calls; the trainer means one per step, at its end)
        "syncs_per_step": sum(e.count for e in events if "Synchronize" in e.key) / steps if cuda else None,
        "wall_ms_per_step": 1e3 * wall / steps,
        "kernel_ms_per_step": kernel_us / 1e3 / steps if cuda else None,
        "op_cpu_ms_per_step": cpu_us / 1e3 / steps,
        "launches_per_step": sum(e.count for e in events if e.key in LAUNCH_CALLS) / steps if cuda else None,
        "top": [{"name": e.key, "ms_per_step": getattr(e, rank_by) / 1e3 / steps, "calls_per_step": e.count / steps,
                 "share": getattr(e, rank_by) / total} for e in ranked],
    }


class Runner:
    """One pipeline's trainer and batch stream, stepped in timed rounds."""

    def __init__(self, cfg, run_dir: Path):
        from surge.training.distributed import init_distributed

        self.trainer = Trainer(cfg, run_dir, init_distributed(cfg.train.device))  # as `surge train` picks the device
        self.device = self.trainer.device
        assert self.device.type == torch.device(cfg.train.device).type, (self.device, cfg.train.device)
        self.batches, _ = self.trainer._loader(0)
        self.iterator = iter(self.batches)
        self.trainer.generator.train()
        self.steps = 0
        self.wall = self.data = self.busy = self.cpu = self.warmup = 0.0
        self.nvml = UtilizationSampler(self.device)

    def next_batch(self):
        lr, hr = next(self.iterator)
        cl = torch.channels_last
        return (lr.to(self.device, non_blocking=True).contiguous(memory_format=cl),
                hr.to(self.device, non_blocking=True).contiguous(memory_format=cl))

    def warm(self, steps: int) -> None:
        t = time.perf_counter()
        for _ in range(steps):
            self.trainer.train_step(*self.next_batch())
        _sync(self.device)
        self.warmup = time.perf_counter() - t  # with train.compile: mostly the compile

    def round(self, seconds: float) -> None:
        cuda = self.device.type == "cuda"
        events = []
        _sync(self.device)
        with self.nvml:
            self._timed(seconds, cuda, events)
        self.busy += sum(s.elapsed_time(e) for s, e in events) / 1000

    def _timed(self, seconds: float, cuda: bool, events: list) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            lr, hr = self.next_batch()
            self.data += time.perf_counter() - t
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            self.trainer.train_step(lr, hr)  # ends with its one host sync (the logged values)
            if cuda:
                end.record()
                events.append((start, end))
            self.steps += 1
        _sync(self.device)
        self.wall += time.perf_counter() - t0
        self.cpu += time.process_time() - c0

    def close(self) -> None:
        if hasattr(self.iterator, "_shutdown_workers"):  # the loader's worker processes
            self.iterator._shutdown_workers()
        if hasattr(self.iterator, "close"):  # the device pipeline's prefetch thread
            self.iterator.close()


def bench_config(path: str, args, train_dirs: list[str], tmp: Path, compile_too: bool = False,
                 profile: int = 0) -> dict:
    stem = f"{Path(path).stem}-{path.partition(':')[2]}"
    runners = {p: Runner(build_config(path, p, args, train_dirs), tmp / f"{stem}-{p}") for p in PIPELINES}
    errors = {}
    try:
        first = runners["device"]
        lr, hr = first.next_batch()
        flops = flops_per_step(first.trainer, lr, hr)
        for r in runners.values():
            r.warm(args.warmup)
        if compile_too:
            try:
                extra = ("train.compile=true", f'train.compile_mode="{args.compile_mode}"')
                runner = Runner(build_config(path, "device", args, train_dirs, extra),
                                tmp / f"{stem}-compiled")
                runners[COMPILED] = runner
                runner.warm(args.warmup)
            except Exception as exc:  # a backend that cannot compile this model: say so, keep the eager rows
                errors[COMPILED] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                runners.pop(COMPILED, None)
        per_round = args.seconds / (len(PIPELINES) * args.rounds)
        for _ in range(args.rounds):
            for r in runners.values():
                r.round(per_round)
        profiles = {name: profile_steps(runners[name], profile) for name in ("device", COMPILED)
                    if profile and name in runners}
    finally:
        for r in runners.values():
            r.close()
    cfg = runners["device"].trainer.cfg
    out = {"config": path, "batch": cfg.data.batch_size, "hr_size": cfg.data.hr_size, "workers": cfg.data.workers,
           "degradation": cfg.data.degradation is not None, "precision": runners["device"].trainer.precision,
           "generator_params": sum(p.numel() for p in runners["device"].trainer.g_module.parameters()),
           "flops_per_step": flops, "pipelines": {}}
    for name, error in errors.items():
        out["pipelines"][name] = {"error": error}
    for name, r in runners.items():
        rate = r.steps / r.wall
        out["pipelines"][name] = {
            "steps": r.steps, "seconds": round(r.wall, 3), "step_per_s": rate, "warmup_s": round(r.warmup, 2),
            "data_wait_share": r.data / r.wall,
            "busy_share": (r.busy / r.wall) if r.device.type == "cuda" else None,
            "nvml_utilization": r.nvml.mean(),
            "cpu_per_wall": r.cpu / r.wall,
            "tflops": flops * rate / 1e12,
        }
        if name in profiles:
            out["pipelines"][name]["profile"] = profiles[name]
    if COMPILED in out["pipelines"]:
        out["pipelines"][COMPILED]["compile_mode"] = args.compile_mode
    return out


def data_only(paths: list[str], args, repeats: int = 5) -> list[dict]:
    """CPU seconds to make one batch of LR from HR: the loader's per-sample code vs the batched torch code.

    Same HR crops (synthetic noise-textured), ``--batch`` samples, on this process's torch threads;
    process CPU time, so other processes' load does not count. Best of ``repeats``.
    """
    from surge.data.degradations import degrade
    from surge.data.torch_degradations import BatchDegrader, MatlabBicubic, to_levels
    from surge.imaging.bicubic import imresize

    rows = []
    for path in paths:
        cfg = build_config(path, "device", args, ["."])
        b, s, deg = cfg.data.batch_size, cfg.data.hr_size, cfg.data.degradation
        hr8 = (np.random.default_rng(0).random((b, s, s, 3)) * 255).astype(np.uint8)
        hr = torch.from_numpy(hr8).permute(0, 3, 1, 2).float() / 255
        batched = BatchDegrader(deg) if deg is not None else None
        bicubic = MatlabBicubic()

        def reference(j):
            return [degrade(hr8[i], np.random.default_rng([j, i]), deg) if deg is not None else imresize(hr8[i], 0.25)
                    for i in range(b)]

        def torch_batch(j):
            if batched is None:
                return to_levels(bicubic(hr, (s // 4, s // 4)))
            return batched(hr, np.random.default_rng(j), torch.Generator().manual_seed(j))

        times = {}
        for name, fn in (("reference", reference), ("torch", torch_batch)):
            fn(0)
            best = float("inf")
            for j in range(repeats):
                c = time.process_time()
                fn(j + 1)
                best = min(best, time.process_time() - c)
            times[name] = best
        rows.append({"config": path, "batch": b, "hr_size": s, "degradation": deg is not None, **times})
    return rows


def render_data_only(rows: list[dict]) -> str:
    lines = [f"CPU seconds to make one batch's LR (torch threads {torch.get_num_threads()}, best of 5):", "",
             "| config | batch x HR | loader code, per sample | torch, batched | ratio torch/loader |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {Path(r['config']).name} ({'real-world' if r['degradation'] else 'bicubic'}) | {r['batch']} x "
                     f"{r['hr_size']} px | {r['reference']:.4f} | {r['torch']:.4f} | {r['torch'] / r['reference']:.2f} |")
    return "\n".join(lines)


def render(result: dict) -> str:
    cuda = result["device"].startswith("cuda")
    pk = result["peaks"]
    lines = [f"device: {result['device_name']} ({result['device']}), torch {result['torch']}, "
             f"{result['cores']} cores, torch threads {result['torch_threads']}",
             "peaks measured in this run (TFLOP/s): " + ", ".join(f"{k} {v:.2f}" for k, v in pk.items()),
             f"training images: {result['train_dirs_note']}", ""]
    busy = "GPU in step / NVML util" if cuda else "CPU time / wall"
    lines += [f"| config | batch x HR | pipeline | steps | step/s | ratio to loader | data wait | {busy} | "
              "TFLOP/s | of conv / matmul peak | warm-up s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    dtype = "bf16" if cuda and any(r["precision"] == "bf16" for r in result["rows"]) else "fp32"
    for row in result["rows"]:
        loader = row["pipelines"]["loader"]["step_per_s"]
        kind = "real-world" if row["degradation"] else "bicubic"
        for name, p in row["pipelines"].items():
            if "error" in p:
                lines.append(f"| {Path(row['config']).name} ({kind}) | | {name} | failed: {p['error']} | | | | | | | |")
                continue
            b = p["busy_share"] if cuda else p["cpu_per_wall"]
            ratio = f"{p['step_per_s'] / loader:.2f}" if name != "loader" else ""
            # device pipelines: the workers only draw the plans (surge.data.device_pairs)
            label = f"{name} ({row['workers']} {'workers' if name == 'loader' else 'plan workers'})"
            nvml = p.get("nvml_utilization")
            shown = f"{100 * b:.0f}% / {'n/a' if nvml is None else f'{100 * nvml:.0f}%'}" if cuda else f"{b:.2f}"
            lines.append(
                f"| {Path(row['config']).name} ({kind}, {row['precision']}) | "
                f"{row['batch']} x {row['hr_size']} px | {label} | {p['steps']} | {p['step_per_s']:.2f} | "
                f"{ratio} | {100 * p['data_wait_share']:.0f}% | {shown} | "
                f"{p['tflops']:.3f} | {100 * p['tflops'] / pk[f'conv_{dtype}']:.1f}% / "
                f"{100 * p['tflops'] / pk[f'matmul_{dtype}']:.1f}% | {p['warmup_s']:.1f} |")
        compiled = row["pipelines"].get(COMPILED)
        if compiled and "error" not in compiled:
            gain = compiled["step_per_s"] / row["pipelines"]["device"]["step_per_s"]
            lines.append(f"| {Path(row['config']).name} ({kind}) | | compiled ({compiled.get('compile_mode', 'default')}) "
                         f"/ eager (device) | | {gain:.2f}x | | | | | | |")
    lines.append("\nFLOPs per step (fwd+bwd+optimiser, torch.utils.flop_counter): "
                 + ", ".join(f"{Path(r['config']).name} {r['flops_per_step'] / 1e12:.3f} TFLOP" for r in result["rows"])
                 + f"; peak columns use the {dtype} peaks.")
    lines += render_profiles(result)
    return "\n".join(lines)


def render_profiles(result: dict) -> list[str]:
    lines = []
    for row in result["rows"]:
        for name, p in row["pipelines"].items():
            prof = p.get("profile")
            if not prof:
                continue
            kernel = "" if prof["kernel_ms_per_step"] is None else (
                f", kernels {prof['kernel_ms_per_step']:.2f} ms in {prof['launches_per_step']:.0f} launches, "
                f"{prof['syncs_per_step']:.1f} host syncs")
            lines += ["", f"{Path(row['config']).name}, {name}, under torch.profiler ({prof['steps']} steps; it adds "
                      f"host time): per step wall {prof['wall_ms_per_step']:.2f} ms{kernel}, CPU in operators "
                      f"{prof['op_cpu_ms_per_step']:.2f} ms ({'all threads' if prof['threads'] == 'all' else 'training thread only'})",
                      f"| top by {prof['ranked_by']} | ms per step | calls per step | share |", "|---|---|---|---|"]
            lines += [f"| {t['name'][:70]} | {t['ms_per_step']:.3f} | {t['calls_per_step']:.1f} | {100 * t['share']:.1f}% |"
                      for t in prof["top"]]
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["configs/cpu-psnr.toml", "configs/cpu-real-psnr.toml"])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--seconds", type=float, default=60.0, help="timed wall time per config (both pipelines together)")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the two pipelines per config")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per pipeline")
    ap.add_argument("--batch", type=int, default=8, help="data.batch_size (0: the config's)")
    ap.add_argument("--hr-size", type=int, default=0, help="data.hr_size (0: the config's)")
    ap.add_argument("--workers", type=int, help="data.workers of the loader pipeline (default: the config's)")
    ap.add_argument("--train-dirs", nargs="+", help="training image folders (default: the config's)")
    ap.add_argument("--set", nargs="*", default=[], help="more config overrides, section.key=value")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of this process (0: torch's default)")
    ap.add_argument("--compile", choices=("none", "first", "all"), default="none",
                    help="also time the device pipeline with train.compile=true, for the first or every config")
    ap.add_argument("--compile-mode", choices=("default", "reduce-overhead"), default="default",
                    help="train.compile_mode of the compiled row")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="then profile this many steps of the first config's device pipelines (torch.profiler)")
    ap.add_argument("--json", help="write the results to this file (rewritten after each config)")
    ap.add_argument("--data-only", action="store_true",
                    help="only the CPU cost of making a batch's LR, loader code vs batched torch code (no training)")
    args = ap.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data_only:
        rows = data_only(args.configs, args)
        print(render_data_only(rows))
        if args.json:
            write_json(rows, args.json)
        return
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dirs = args.train_dirs or list(load_config(args.configs[0].partition(":")[0], ['data.val_dir=""']).data.train_dirs)
        if all(Path(d).is_dir() for d in dirs):
            note = ", ".join(dirs)
        else:
            dirs, note = [str(synthetic_dir(tmp))], "64 synthetic 200x200 images (the configs' training folders are absent)"
        result = {"device": args.device, "torch": torch.__version__, "cores": os.cpu_count(),
                  "torch_threads": torch.get_num_threads(), "train_dirs_note": note,
                  "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
                  "peaks": peaks(device), "rows": []}
        for i, path in enumerate(args.configs):
            compile_too = args.compile == "all" or (args.compile == "first" and i == 0)
            profile = args.profile_steps if i == 0 else 0
            result["rows"].append(bench_config(path, args, dirs, tmp, compile_too, profile))
            print(f"done: {path}", file=sys.stderr, flush=True)
            if args.json:  # a run cut off later keeps this config's rows
                write_json(result, args.json)
    print(render(result))


if __name__ == "__main__":
    main()
