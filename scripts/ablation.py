"""The SuRGe ablation at equal budget and seed: one table, one loss-curve figure.

    python scripts/ablation.py --psnr-weights runs/cpu-psnr/best.safetensors \
        --gan-steps 300 --scratch-minutes 20 --out docs/results/ablation

Two groups of runs, every run with the same seed and data:

* loss terms -- fine-tuning from the same PSNR-stage weights for ``--gan-steps`` steps:
  L1 only; + adversarial (WGAN-GP); + JS; + GW (full SuRGe, dynamic weights); full SuRGe with
  fixed equal weights instead of the dynamic softmax;
* generator -- trained from scratch (L1) for the same wall-clock budget (``--scratch-minutes``,
  the budget that matters on a CPU): the shipped generator; the same with plain addition of the
  skips instead of the convex mixing (F0/F1); the paper's exact generator (BatchNorm, tanh, no
  global residual, 4.04M parameters).

Each run is `surge train` with overrides of `configs/cpu-gan.toml` / `configs/cpu-psnr.toml`;
each result is `surge eval` on Set5, Set14 and BSD100. Runs already finished in the output folder
are reused, so the script can be resumed after an interruption.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    name: str
    config: str
    overrides: tuple[str, ...]
    group: str


def rows(psnr_weights: str, gan_steps: int, scratch_minutes: float) -> list[Row]:
    init = f'train.init_from="{psnr_weights}"'
    ft = (init, f"train.steps={gan_steps}", f"train.val_every={gan_steps}")
    off = ("loss.js=false", "loss.gw=false")
    scratch = (f"train.max_minutes={scratch_minutes}", "train.steps=1000000", "optim.schedule=\"constant\"",
               "train.val_every=1000000")
    return [
        Row("L1 only", "configs/cpu-psnr.toml", (*ft, "optim.lr_g=5e-5", "optim.warmup_steps=0", "optim.schedule=\"constant\""), "loss terms"),
        Row("+ adversarial (WGAN-GP)", "configs/cpu-gan.toml", (*ft, *off), "loss terms"),
        Row("+ JS", "configs/cpu-gan.toml", (*ft, "loss.gw=false"), "loss terms"),
        Row("+ GW (SuRGe, dynamic weights)", "configs/cpu-gan.toml", ft, "loss terms"),
        Row("SuRGe, fixed weights", "configs/cpu-gan.toml",
            (*ft, 'loss.combination="fixed"', "loss.fixed_weights={adv=0.3333, js=0.3333, gw=0.3334}"), "loss terms"),
        Row("shipped generator (convex mixing)", "configs/cpu-psnr.toml", scratch, "generator"),
        Row("plain addition of skips", "configs/cpu-psnr.toml", (*scratch, 'generator.mixing="sum"'), "generator"),
        Row("paper-exact generator", "configs/cpu-psnr.toml",
            (*scratch, 'generator.preset="surge"'), "generator"),
    ]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--psnr-weights", required=True, help="PSNR-stage generator all loss-term rows start from")
    p.add_argument("--gan-steps", type=int, default=300)
    p.add_argument("--scratch-minutes", type=float, default=20.0)
    p.add_argument("--data", default="../shared/datasets/benchmark")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    p.add_argument("--out", default="docs/results/ablation")
    p.add_argument("--only", nargs="*", help="run only these row names (for testing)")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every run (e.g. for a smoke test)")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    surge = [sys.executable, "-m", "surge.cli.main"]
    results = {}
    for row in rows(args.psnr_weights, args.gan_steps, args.scratch_minutes):
        if args.only and row.name not in args.only:
            continue
        run_dir = out / "runs" / slug(row.name)
        weights = run_dir / "last.safetensors"
        if not (run_dir / "eval.json").exists():
            if not weights.exists():
                run([*surge, "train", row.config, *row.overrides, f"train.name={slug(row.name)}", *args.extra,
                     "--run-dir", str(run_dir)])
            run([*surge, "eval", "--model", str(weights), "--data", args.data, "--sets", *args.sets,
                 "--json", str(run_dir / "eval.json")])
        results[row] = json.loads((run_dir / "eval.json").read_text())
    write_table(results, out / "ablation.md", args)
    plot_curves(results, out / "loss_curves.png")
    return 0


def write_table(results: dict, path: Path, args) -> None:
    sets = args.sets
    lines = [
        "# Ablation (equal seed and data; loss terms: equal steps from the same PSNR weights; "
        "generator: equal wall-clock budget from scratch)",
        "",
        f"Command: `python scripts/ablation.py --psnr-weights {args.psnr_weights} --gan-steps {args.gan_steps} "
        f"--scratch-minutes {args.scratch_minutes}`",
        "",
        "| group | run | steps | " + " | ".join(f"{s} PSNR-Y / SSIM-Y" for s in sets) + " |",
        "|---|---|---|" + "---|" * len(sets),
    ]
    for row, res in results.items():
        steps = _last_step(Path(args.out) / "runs" / slug(row.name))
        cells = [f"{res[s]['psnr_y']:.2f} / {res[s]['ssim_y']:.4f}" if s in res else "-" for s in sets]
        lines.append(f"| {row.group} | {row.name} | {steps} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


def _last_step(run_dir: Path) -> int:
    with (run_dir / "log.csv").open() as f:
        return max(int(r["step"]) for r in csv.DictReader(f))


def plot_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for row in results:
        with (path.parent / "runs" / slug(row.name) / "log.csv").open() as f:
            data = [r for r in csv.DictReader(f) if r.get("loss_l1")]
        ax = axes[0 if row.group == "loss terms" else 1]
        ax.plot([int(r["step"]) for r in data], [float(r["loss_l1"]) for r in data], label=row.name, lw=0.8)
    for ax, title in zip(axes, ("loss terms (fine-tuning): L1", "generator (from scratch): L1")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
