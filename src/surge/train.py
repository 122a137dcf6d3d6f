"""``python -m surge.train CONFIG [--resume RUN_DIR] [section.key=value ...]``.

The same entry point serves single-process runs and ``torchrun --nproc_per_node=N -m
surge.train ...`` (data-parallel; gloo on CPU, NCCL on GPU). `surge train` calls it too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from surge.errors import SurgeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment TOML file (see configs/), or a run's config.json to repeat that run")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.steps=500 or data.degradation.first.jpeg_range=[30,60]")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--run-dir", help="where to write the run (default: <train.out_dir>/<train.name>)")


def parse_with_overrides(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, accepting ``key=value`` overrides after options too (``CONFIG --resume DIR k=v``)."""
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if "=" not in e or e.startswith("-")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*getattr(args, "overrides", []), *extra]
    return args


def run(args: argparse.Namespace) -> int:
    from surge.training.checkpoint import load_checkpoint
    from surge.training.config import apply_overrides, config_from_dict, load_config
    from surge.training.distributed import init_distributed, shutdown
    from surge.training.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.resume:
        run_dir = Path(args.resume)
        state = load_checkpoint(run_dir / "last.pt")
        data = state["config"]
        apply_overrides(data, args.overrides)  # e.g. extend train.steps
        cfg = config_from_dict(data)
    else:
        cfg = load_config(args.config, args.overrides)
        run_dir = Path(args.run_dir) if args.run_dir else Path(cfg.train.out_dir) / cfg.train.name
        if (run_dir / "last.pt").exists():
            raise SurgeError(f"{run_dir}: a run already exists there; use --resume {run_dir} or another train.name")
    ctx = init_distributed(cfg.train.device)
    try:
        trainer = Trainer(cfg, run_dir, ctx, resume=bool(args.resume))
        result = trainer.run()
    except BaseException:
        shutdown(ctx, finished=False)
        raise
    shutdown(ctx)
    if ctx.is_main:
        summary = {"run_dir": str(result.run_dir), "step": result.step, "best_val_psnr_y": result.best_psnr,
                   "interrupted": result.interrupted, "budget_spent": result.budget_spent}
        print(json.dumps(summary))
    return 130 if result.interrupted else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m surge.train", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = parse_with_overrides(p, argv)
    try:
        return run(args)
    except SurgeError as exc:
        print(f"surge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
