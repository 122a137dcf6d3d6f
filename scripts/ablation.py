"""The SuRGe ablation at equal budget and seed: one table, one loss-curve figure.

    python scripts/ablation.py --psnr-weights runs/cpu-psnr/best.safetensors \
        --gan-steps 300 --scratch-minutes 20 --out docs/results/ablation

Two groups of runs, every run with the same seed and data:

* loss terms -- fine-tuning from the same PSNR-stage weights for ``--gan-steps`` steps of
  ``--gan-batch`` crops: L1 only; + adversarial (WGAN-GP); + JS; + GW (full SuRGe), the last two
  combined with the offset- and scale-invariant dynamic weights (``loss.combination =
  "dynamic-invariant"``); full SuRGe with the paper's softmax-of-loss weights; full SuRGe with
  fixed equal weights;
* generator -- trained from scratch (L1) for the same wall-clock budget (``--scratch-minutes``,
  the budget that matters on a CPU): the shipped generator; the same with plain addition of the
  skips instead of the convex mixing (F0/F1); the paper's exact generator (BatchNorm, tanh, no
  global residual, 4.04M parameters).

Each run is `surge train` with overrides of `configs/cpu-gan.toml` / `configs/cpu-psnr.toml`;
each result is `surge eval` (PSNR-Y, SSIM-Y, NIQE) on Set5, Set14 and BSD100. Runs already finished in the output folder
are reused, so the script can be resumed after an interruption.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
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


def rows(psnr_weights: str, gan_steps: int, scratch_minutes: float, gan_batch: int = 16) -> list[Row]:
    init = f'train.init_from="{psnr_weights}"'
    ft = (init, f"train.steps={gan_steps}", f"train.val_every={gan_steps}", f"data.batch_size={gan_batch}")
    off = ("loss.js=false", "loss.gw=false")
    invariant = 'loss.combination="dynamic-invariant"'
    scratch = (f"train.max_minutes={scratch_minutes}", "train.steps=1000000", "optim.schedule=\"constant\"",
               "train.val_every=1000000")
    return [
        Row("L1 only", "configs/cpu-psnr.toml", (*ft, "optim.lr_g=5e-5", "optim.warmup_steps=0", "optim.schedule=\"constant\""), "loss terms"),
        Row("+ adversarial (WGAN-GP)", "configs/cpu-gan.toml", (*ft, *off), "loss terms"),
        # The combined rows give the adversarial term a weight below 1 (fixed: 1/3); this control
        # separates "JS/GW help" from "less adversarial pressure".
        Row("+ adversarial, fixed weight 1/3", "configs/cpu-gan.toml",
            (*ft, *off, 'loss.combination="fixed"', "loss.fixed_weights={adv=0.3333}"), "loss terms"),
        Row("+ JS (invariant weights)", "configs/cpu-gan.toml", (*ft, "loss.gw=false", invariant), "loss terms"),
        Row("+ GW (SuRGe, invariant weights)", "configs/cpu-gan.toml", (*ft, invariant), "loss terms"),
        Row("SuRGe, paper dynamic weights", "configs/cpu-gan.toml", ft, "loss terms"),
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
    p.add_argument("--gan-batch", type=int, default=16, help="batch size of the loss-term rows")
    p.add_argument("--scratch-minutes", type=float, default=20.0)
    p.add_argument("--data", default="../shared/datasets/benchmark")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    p.add_argument("--metrics", nargs="+", default=["psnr", "ssim", "niqe"], help="passed to surge eval")
    p.add_argument("--out", default="docs/results/ablation")
    p.add_argument("--only", nargs="*", help="run only these row names")
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="run the rows with each of these seeds (repeats measure run-to-run spread)")
    p.add_argument("--max-seed", type=int, default=9, help="highest seed looked for when building the table")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every run (e.g. for a smoke test)")
    p.add_argument("--table-only", action="store_true", help="run nothing; rebuild the table and figure from records/")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    surge = [sys.executable, "-m", "surge.cli.main"]
    all_rows = rows(args.psnr_weights, args.gan_steps, args.scratch_minutes, args.gan_batch)
    for seed in [] if args.table_only else args.seeds:
        for row in all_rows:
            if args.only and row.name not in args.only:
                continue
            run_dir = out / "runs" / run_name(row, seed)
            weights = run_dir / "last.safetensors"
            if (run_dir / "eval.json").exists():
                continue
            if not weights.exists():
                run([*surge, "train", row.config, *row.overrides, f"train.seed={seed}",
                     f"train.name={run_name(row, seed)}", *args.extra, "--run-dir", str(run_dir)])
            run([*surge, "eval", "--model", str(weights), "--data", args.data, "--sets", *args.sets,
                 "--metrics", *args.metrics, "--json", str(run_dir / "eval.json")])
            _keep_record(run_dir, out / "records" / run_name(row, seed))
    # The table covers every run recorded in the folder (records/ is committed; the run folders with
    # weights are not), also those of earlier invocations, so rows and seeds can be added one at a time.
    results, logs = {}, {}
    for row in all_rows:
        for seed in range(args.max_seed + 1):
            record = out / "records" / run_name(row, seed)
            if (record / "eval.json").exists():
                results[row, seed] = json.loads((record / "eval.json").read_text())
                logs[row, seed] = _read_log(record / "log.csv")
    write_table(results, logs, out / "ablation.md", args)
    plot_curves(logs, out / "loss_curves.png")
    return 0


def run_name(row: Row, seed: int) -> str:
    return slug(row.name) if seed == 0 else f"{slug(row.name)}-seed{seed}"


def _keep_record(run_dir: Path, dest: Path) -> None:
    # The run folders hold weights and optimiser state (ignored by git); the log, config and scores
    # are small and are what a reader needs to check the table and redraw the curves.
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("log.csv", "config.json", "eval.json", "data.json"):
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, dest / name)


def _cell(res: dict, s: str) -> str:
    if s not in res:
        return "-"
    cell = f"{res[s]['psnr_y']:.2f} / {res[s]['ssim_y']:.4f}"
    return cell + (f" / {res[s]['niqe']:.3f}" if res[s].get("niqe") is not None else "")


def write_table(results: dict, logs: dict, path: Path, args) -> None:
    sets = args.sets
    niqe = any(r.get(s, {}).get("niqe") is not None for r in results.values() for s in sets)
    unit = "PSNR-Y / SSIM-Y" + (" / NIQE" if niqe else "")
    lines = [
        "# Ablation (same data and seeds; loss terms: equal steps from the same PSNR weights; "
        "generator: equal wall-clock budget from scratch)",
        "",
        f"Command: `python scripts/ablation.py --psnr-weights {args.psnr_weights} --gan-steps {args.gan_steps} "
        f"--gan-batch {args.gan_batch} --scratch-minutes {args.scratch_minutes}"
        + (" --extra " + " ".join(args.extra) if args.extra else "") + "`",
        "",
        "| group | run | seed | steps | " + " | ".join(f"{s} {unit}" for s in sets) + " |",
        "|---|---|---|---|" + "---|" * len(sets),
    ]
    for (row, seed), res in results.items():
        steps = max(int(r["step"]) for r in logs[row, seed])
        cells = [_cell(res, s) for s in sets]
        lines.append(f"| {row.group} | {row.name} | {seed} | {steps} | " + " | ".join(cells) + " |")
    lines += _seed_summary(results, sets)
    lines += _weight_table(logs)
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


def seed_summary(results: dict, sets: list[str]) -> dict:
    """Per row with >= 2 seeds: ``{row name: {set: {metric: (mean, max - min, n)}}}``.

    The spread (max - min over seeds) is what a difference between two rows must exceed before it
    says anything about the rows rather than about the seeds.
    """
    by_row: dict[str, list[dict]] = {}
    for (row, _seed), res in results.items():
        by_row.setdefault(row.name, []).append(res)
    out = {}
    for name, runs in by_row.items():
        if len(runs) < 2:
            continue
        out[name] = {}
        for s in sets:
            out[name][s] = {}
            for metric in ("psnr_y", "niqe"):
                values = [r[s][metric] for r in runs if s in r and r[s].get(metric) is not None]
                if len(values) >= 2:
                    out[name][s][metric] = (sum(values) / len(values), max(values) - min(values), len(values))
    return out


def _seed_summary(results: dict, sets: list[str]) -> list[str]:
    summary = seed_summary(results, sets)
    if not summary:
        return []
    lines = ["", "Mean over seeds (spread = max - min over seeds) of the rows run with two or more seeds:", "",
             "| run | seeds | " + " | ".join(f"{s} PSNR-Y | {s} NIQE" for s in sets) + " |",
             "|---|---|" + "---|---|" * len(sets)]
    for name, per_set in summary.items():
        n = max((v[2] for m in per_set.values() for v in m.values()), default=0)
        cells = []
        for s in sets:
            for metric, digits in (("psnr_y", 2), ("niqe", 3)):
                v = per_set[s].get(metric)
                cells.append(f"{v[0]:.{digits}f} ± {v[1] / 2:.{digits}f}" if v else "-")
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "(± is half the max - min spread over the seeds.)"]
    return lines


def weight_stats(log: list[dict]) -> dict | None:
    """How the adversarial term's weight behaved in a run that combines several terms.

    ``log``: the rows of a run's ``log.csv`` (:func:`_read_log`); None for single-term runs.
    """
    data = _training_rows(log)
    w = [float(r["w_adv"]) for r in data if r.get("w_adv") not in (None, "")]
    if not w or not any(r.get("w_js") or r.get("w_gw") for r in data):
        return None
    adv = [float(r["loss_adv"]) for r in data]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "mean_w_adv": mean(w),
        "share_above_0.9": sum(v > 0.9 for v in w) / len(w),
        "share_below_0.1": sum(v < 0.1 for v in w) / len(w),
        "mean_w_adv_last_50": mean(w[-50:]),
        "min_loss_adv": min(adv),
        "max_loss_adv": max(adv),
    }


def _weight_table(logs: dict) -> list[str]:
    # The paper's softmax weights depend on the raw loss values; this shows how they actually moved.
    lines = ["", "Weight of the adversarial term in the rows that combine several terms (from each `log.csv`):", "",
             "| run | seed | mean `w_adv` | steps `w_adv` > 0.9 | steps `w_adv` < 0.1 | mean `w_adv`, last 50 steps | range of `L_adv` |",
             "|---|---|---|---|---|---|---|"]
    n = 0
    for (row, seed), log in logs.items():
        st = weight_stats(log)
        if st is None:
            continue
        n += 1
        lines.append(f"| {row.name} | {seed} | {st['mean_w_adv']:.3f} | {st['share_above_0.9']:.0%} | "
                     f"{st['share_below_0.1']:.0%} | {st['mean_w_adv_last_50']:.3f} | "
                     f"{st['min_loss_adv']:.2f} .. {st['max_loss_adv']:.2f} |")
    return lines if n else []


def _read_log(log_csv: Path) -> list[dict]:
    with log_csv.open() as f:
        return list(csv.DictReader(f))


def _training_rows(log: list[dict]) -> list[dict]:
    # Validation rows carry only step and val_psnr_y.
    return [r for r in log if r.get("loss_l1")]


def _smooth(values: list[float], window: int) -> list[float]:
    # Per-step GAN losses are noisy; a trailing mean keeps the trend readable without shifting it much.
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _series(data: list[dict], key: str, window_steps: int) -> tuple[list[int], list[float]]:
    pts = [(int(r["step"]), float(r[key])) for r in data if r.get(key) not in (None, "")]
    # Runs log every step or every 20 steps; the window is in steps, so convert it to log rows.
    every = max(1, pts[-1][0] - pts[-2][0]) if len(pts) > 2 else 1
    return [p[0] for p in pts], _smooth([p[1] for p in pts], max(1, window_steps // every))


def plot_curves(logs: dict, path: Path) -> None:
    """Four panels: L1 and the critic's Wasserstein estimate of the loss-term rows, the weight of
    the adversarial term in the combined rows (every seed), and L1 of the from-scratch generator
    rows. Except for the weights, only the seed-0 run of each row is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_l1, ax_w), (ax_weights, ax_gen) = axes
    for (row, seed), log in logs.items():
        data = _training_rows(log)
        if data and "w_js" in data[0]:  # rows that combine several terms, every seed
            ax_weights.plot(*_series(data, "w_adv", 10), label=f"{row.name} (seed {seed})", lw=0.9)
        if seed != 0:
            continue  # one curve per row in the other panels
        if row.group != "loss terms":
            ax_gen.plot(*_series(data, "loss_l1", 100), label=row.name, lw=0.9)
            continue
        ax_l1.plot(*_series(data, "loss_l1", 20), label=row.name, lw=0.9)
        if data and "critic_wasserstein" in data[0]:
            ax_w.plot(*_series(data, "critic_wasserstein", 20), label=row.name, lw=0.9)
    titles = (
        (ax_l1, "loss terms (fine-tuning): L1 to HR, mean of 20 steps", "log"),
        (ax_w, "loss terms: critic's Wasserstein estimate, mean of 20 steps", "linear"),
        (ax_weights, "weight of the adversarial term (w_adv), mean of 10 steps", "linear"),
        (ax_gen, "generator rows (from scratch, equal wall-clock): L1, mean of 100 steps", "log"),
    )
    for ax, title, scale in titles:
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale(scale)
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
