"""Where a training step's time goes: generator, critic with gradient penalty, JS, GW, optimisers.

Builds the project's own :class:`surge.training.trainer.Trainer` from each experiment config and
runs its unmodified ``train_step`` on one fixed synthetic batch (made by the project's data
pipeline, :class:`surge.data.pairs.PairDataset`, from synthetic images: the step's cost does not
depend on the pixel values). The phases are timed from outside, by wrapping the trainer's pieces
for the duration of the benchmark (no step logic is re-implemented here):

* ``critic``: ``Trainer._critic_step`` (D on real and on the step's detached SR, gradient penalty
  with its double backward), less the critic's optimiser step;
* ``G fwd``: the step's one generator forward plus ``Trainer._generator_terms`` (adversarial term
  through the critic, L1), less the JS and GW forwards;
* ``G bwd``: the generator's backward (``Trainer._backward_and_step``), less its optimiser step and
  less the JS/GW backwards (see below);
* ``JS``, ``GW``: ``surge.losses.divergence.js_divergence`` / ``gromov_wasserstein_loss`` forward
  as called inside the step, plus their backward, measured by replaying each term alone on the same
  inputs (a leaf copy of SR) right after the step; that backward is subtracted from ``G bwd`` so
  the columns add up to the step;
* ``optim``: both Adam steps; ``other``: the rest of ``train_step`` (zero_grad, combination,
  finiteness check, schedulers, EMA);
* ``total``: the whole ``train_step`` wall time;
* ``aten ops``: operators one more (untimed) step dispatches, views included (on a GPU, about
  the kernel launches: host work that small kernels cannot hide).

Each phase boundary reads ``time.perf_counter()`` after ``torch.cuda.synchronize()`` on CUDA (on
CPU the work is synchronous). After ``--warmup`` untimed steps, ``--repeats`` timed steps are run;
the table shows the fastest of them, phase by phase (``--stat best``: other processes can only
add time, and the phases still add up to the step), or each phase's median (``--stat median``).
``CPU use`` is the process's CPU time over wall time while timing (CPU runs): near the thread
count when the cores were free, lower when other processes took them.

    python benchmarks/train_step.py                                  # CPU: batch 4, HR 96
    python benchmarks/train_step.py --configs configs/cpu-gan.toml --batch 0 --hr-size 0
    python benchmarks/train_step.py --device cuda --batch 0 --hr-size 0   # the configs' own sizes
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ("configs/cpu-gan.toml", "configs/paper-gan.toml")
PHASES = ("g_fwd", "g_bwd", "critic", "js", "gw", "optim", "other")
HEADERS = {"g_fwd": "G fwd", "g_bwd": "G bwd", "critic": "critic step incl. GP", "js": "JS", "gw": "GW",
           "optim": "optimiser steps", "other": "other"}


class PhaseClock:
    """Exclusive wall time per phase: a phase entered inside another is subtracted from it.

    ``inherit`` maps an outer phase to inner phase names that are *not* split out of it (the
    generator forward and backward inside the critic step belong to the critic).
    """

    def __init__(self, device, inherit: dict[str, set[str]] | None = None):
        import torch

        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.inherit = inherit or {}
        self.stack: list[list] = []  # [name, start, time spent in children]
        self.totals: dict[str, float] = defaultdict(float)

    def now(self) -> float:
        self._sync()
        return time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str):
        if self.stack and name in self.inherit.get(self.stack[-1][0], ()):
            yield  # counted in the enclosing phase
            return
        frame = [name, self.now(), 0.0]
        self.stack.append(frame)
        try:
            yield
        finally:
            elapsed = self.now() - frame[1]
            self.stack.pop()
            self.totals[name] += elapsed - frame[2]
            if self.stack:
                self.stack[-1][2] += elapsed

    def wrap(self, name: str, fn):
        @functools.wraps(fn)  # keeps markers such as the LR scheduler's ``_wrapped_by_lr_sched``
        def timed(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)

        return timed


def synthetic_batch(batch: int, hr_size: int, seed: int = 0):
    """One (LR, HR) batch from :class:`PairDataset` over synthetic photo-like images."""
    import numpy as np
    import torch

    from surge.data.pairs import PairDataset

    size = max(2 * hr_size, 128)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(seed)
    images = []
    for k in range(2):
        rgb = np.stack([0.5 + 0.5 * np.sin(x / (17.0 + 5 * k)) * np.cos(y / 23.0), (x + y) / (2 * size),
                        0.5 + 0.5 * np.sin((x - 2 * y) / (11.0 + k))], axis=-1)
        rgb = np.clip(rgb + rng.normal(0, 0.03, rgb.shape), 0, 1)
        images.append((rgb * 255).round().astype(np.uint8))
    dataset = PairDataset(images, hr_size, seed=seed)
    return torch.utils.data.default_collate([dataset[k] for k in range(batch)])


def _leaf_replay(fn, args, kwargs):
    """Re-run one loss term on leaf copies of its grad-carrying tensor inputs; returns the loss."""
    import torch

    def leaf(v):
        if isinstance(v, torch.Tensor) and v.requires_grad:
            return v.detach().clone().requires_grad_(True)
        return v

    return fn(*[leaf(a) for a in args], **{k: leaf(v) for k, v in kwargs.items()})


def load_benchmark_config(path: Path, precision: str, batch: int, hr_size: int, device: str, threads: int):
    """The experiment config with the benchmark's settings; no data, weights or validation needed."""
    from surge.training.config import load_config

    overrides = [f"train.precision={precision}", 'train.init_from=""', 'data.val_dir=""', f"train.device={device}"]
    if batch:
        overrides.append(f"data.batch_size={batch}")
    if hr_size:
        overrides.append(f"data.hr_size={hr_size}")
    if threads:
        overrides.append(f"train.threads={threads}")
    return load_config(path, overrides)


def measure(config_path: Path, precision: str, args) -> dict:
    """Phase times (seconds) of ``train_step`` for one (config, precision): fastest step or medians (``--stat``)."""
    import torch

    from surge.losses import divergence
    from surge.training.distributed import DistContext
    from surge.training.trainer import Trainer

    cfg = load_benchmark_config(config_path, precision, args.batch, args.hr_size, args.device, args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, Path(run_dir), DistContext(device=device))
    lr, hr = synthetic_batch(cfg.data.batch_size, cfg.data.hr_size, seed=cfg.train.seed)
    lr, hr = lr.to(device), hr.to(device)

    clock = PhaseClock(device, inherit={"critic": {"g_fwd", "g_bwd"}})
    captured: dict[str, tuple] = {}

    def capture(name, fn):
        @functools.wraps(fn)
        def call(*a, **kw):
            captured[name] = (a, kw)
            with clock.phase(name):
                return fn(*a, **kw)

        return call

    def optimiser_step(opt):
        return clock.wrap("optim", opt.step)

    patches = [
        mock.patch.object(trainer, "_critic_step", clock.wrap("critic", trainer._critic_step)),
        mock.patch.object(trainer.g_module, "forward", clock.wrap("g_fwd", trainer.g_module.forward)),
        mock.patch.object(trainer, "_generator_terms", clock.wrap("g_fwd", trainer._generator_terms)),
        mock.patch.object(trainer, "_backward_and_step", clock.wrap("g_bwd", trainer._backward_and_step)),
        mock.patch.object(trainer.opt_g, "step", optimiser_step(trainer.opt_g)),
        mock.patch.object(divergence, "js_divergence", capture("js", divergence.js_divergence)),
        mock.patch.object(divergence, "gromov_wasserstein_loss", capture("gw", divergence.gromov_wasserstein_loss)),
    ]
    if trainer.opt_d is not None:
        patches.append(mock.patch.object(trainer.opt_d, "step", optimiser_step(trainer.opt_d)))
    originals = {"js": divergence.js_divergence, "gw": divergence.gromov_wasserstein_loss}

    samples: list[dict[str, float]] = []
    cpu0 = wall0 = 0.0
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        for i in range(args.warmup + args.repeats):
            if i == args.warmup:
                cpu0, wall0 = time.process_time(), clock.now()
            clock.totals.clear()
            captured.clear()
            with clock.phase("other"):
                trainer.train_step(lr, hr)
            row = dict(clock.totals)
            for name in ("js", "gw"):  # backward of the term alone, moved out of G bwd
                if name not in captured:
                    continue
                with trainer._autocast():
                    loss = _leaf_replay(originals[name], *captured[name])
                t0 = clock.now()
                loss.float().backward()
                backward = clock.now() - t0
                row[name] += backward
                row["g_bwd"] = max(0.0, row.get("g_bwd", 0.0) - backward)
            row["total"] = sum(clock.totals.values())
            if i >= args.warmup:
                samples.append(row)
    # Process CPU time over wall time of the timed steps (replays included): about the thread
    # count when the cores were ours alone, lower when other processes took them.
    cpu_use = (time.process_time() - cpu0) / (clock.now() - wall0)
    ops = count_aten_ops(lambda: trainer.train_step(lr, hr))  # one more, untimed step
    if args.stat == "best":  # the fastest step, whole: its phases add up to its total
        best = min(samples, key=lambda s: s["total"])
        result = {k: best.get(k, 0.0) for k in (*PHASES, "total")}
    else:
        result = {k: statistics.median(s.get(k, 0.0) for s in samples) for k in (*PHASES, "total")}
    result["cpu_use"] = cpu_use
    result["aten_ops"] = ops
    result.update(config=config_path.name, precision=precision, batch=cfg.data.batch_size, hr_size=cfg.data.hr_size,
                  generator_params=sum(p.numel() for p in trainer.g_module.parameters()),
                  critic_params=sum(p.numel() for p in trainer.d_module.parameters()) if trainer.d_module else 0,
                  repeats=len(samples))
    result["divergence_share"] = 100 * (result["js"] + result["gw"]) / result["total"]
    return result


def count_aten_ops(fn) -> int:
    """The aten operators ``fn`` dispatches (views included): on a GPU each non-view one is a kernel
    launch, so the count is the host's share of a step that arithmetic cannot hide when it is small."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.calls


def format_table(rows: list[dict], args) -> str:
    import torch

    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} torch threads"
    stat = "fastest" if args.stat == "best" else "median"
    lines = [
        f"surge Trainer.train_step phase times, {where}, torch {torch.__version__}; {stat} of {args.repeats} steps "
        f"after {args.warmup} warm-up; seconds",
        "",
        "| config | precision | batch x HR | " + " | ".join(HEADERS[p] for p in PHASES)
        + " | total | divergence share | CPU use | aten ops |",
        "|---|---|---|" + "---|" * (len(PHASES) + 4),
    ]
    for r in rows:
        cells = " | ".join(f"{r[p]:.4f}" for p in PHASES)
        lines.append(f"| {r['config']} | {r['precision']} | {r['batch']} x {r['hr_size']} | {cells} | "
                     f"{r['total']:.4f} | {r['divergence_share']:.1f}% | {100 * r['cpu_use']:.0f}% | {r['aten_ops']} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=[str(REPO / c) for c in DEFAULT_CONFIGS], metavar="TOML",
                   help="experiment configs (default: configs/cpu-gan.toml configs/paper-gan.toml)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "amp"])
    p.add_argument("--batch", type=int, default=4, help="batch size for every config; 0 = each config's own (default 4)")
    p.add_argument("--hr-size", type=int, default=96, help="HR crop size; 0 = each config's own (default 96)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per row (default 5; median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--stat", choices=["best", "median"], default="best",
                   help="best: the fastest timed step (robust on a shared machine, default); median: per-phase medians")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores this process may run on)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.batch < 0 or args.hr_size < 0:
        p.error("--repeats must be >= 1 and --warmup, --batch, --hr-size >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from surge.errors import SurgeError

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    if args.device.startswith("cuda"):
        args.threads = 0  # leave torch's default for the host side
    rows = []
    try:
        for config in args.configs:
            for precision in args.precisions:
                t0 = time.perf_counter()
                rows.append(measure(Path(config), precision, args))
                print(f"measured {Path(config).name} {precision}: {rows[-1]['total']:.3f} s/step "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    except SurgeError as exc:
        print(f"train_step: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows, args))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
