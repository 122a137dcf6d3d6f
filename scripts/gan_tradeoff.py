"""The fidelity/realism trade-off of a GAN stage over its steps: PSNR-Y and NIQE of snapshots.

    python scripts/gan_tradeoff.py configs/cpu-gan-invariant.toml --run-dir runs/cpu-gan-invariant \
        --steps 300 450 600 750 900 --reference surge-x4-psnr --out docs/results/gan-tradeoff

For each step count in ``--steps`` (ascending) the run is trained up to it (a fresh ``surge train``
for the first, ``--resume`` with ``train.steps`` extended after that), its ``last.safetensors`` is
kept as ``<run-dir>/snapshots/step<N>.safetensors`` and scored with ``surge eval --metrics psnr
ssim niqe`` into ``<out>/records/step<N>.json``; the ``--reference`` model (the PSNR-stage weights
the run starts from) is scored the same way. Step counts already scored are skipped, so the
script resumes after an interruption and can be extended later with more steps.

It writes ``<out>/tradeoff.md`` (one row per snapshot: PSNR-Y, SSIM-Y and NIQE per set, and the
change against the reference on the ``--target-sets``) and ``<out>/tradeoff.png`` (PSNR-Y against
NIQE, one line per set through the snapshots in step order, the reference as step 0). The target
marked in the table is issue 12's: NIQE at least ``--niqe-gain`` lower than the reference while
PSNR-Y drops at most ``--max-psnr-drop`` dB, on every target set.

With ``--alphas`` the script also builds, for every snapshot, the network interpolations
``(1 - alpha) * reference + alpha * snapshot`` (``surge interpolate``, as in ESRGAN) and picks one
model without looking at the reported sets: every snapshot and interpolation is scored on the
selection set (``--select-data``/``--select-set``, e.g. ``scripts/make_val_photos.py``), the
candidates whose PSNR-Y there is at most ``--select-max-psnr-drop`` dB below the reference's are
kept, and the one with the lowest NIQE there is chosen. Only the chosen model is then scored on
the reported sets (``records/chosen.json``), and the table says whether it meets the target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def weights_step(path: Path) -> int:
    from surge.models.files import read_provenance

    return int(read_provenance(path)["steps"])


def train_to(config: str, run_dir: Path, steps: int, extra: list[str], surge: list[str]) -> Path:
    """Train ``run_dir`` up to ``steps``; returns the snapshot of its weights at exactly that step."""
    resume = ["--resume", str(run_dir)] if (run_dir / "last.pt").exists() else ["--run-dir", str(run_dir)]
    if resume[0] == "--resume" and (run_dir / "last.safetensors").exists():
        at = weights_step(run_dir / "last.safetensors")
        if at >= steps:  # the weights of that step are gone; resuming would only add a runtime record
            raise SystemExit(f"{run_dir}: the run is already at step {at}; step {steps} has no snapshot to score")
    run([*surge, "train", config, *resume, f"train.steps={steps}", *extra])
    weights = run_dir / "last.safetensors"
    got = weights_step(weights)
    if got != steps:
        # A time budget (train.max_minutes) or a signal stopped it early: a snapshot labelled with
        # the wrong step would put a false point on the curve.
        raise SystemExit(f"{weights}: holds step {got}, not {steps}; rerun to continue the run")
    snapshot = run_dir / "snapshots" / f"step{steps}.safetensors"
    snapshot.parent.mkdir(exist_ok=True)
    shutil.copyfile(weights, snapshot)
    return snapshot


def score(model: str, json_path: Path, data: str, sets: list[str], surge: list[str]) -> dict:
    """``surge eval --metrics psnr ssim niqe`` of ``model`` into ``json_path``, unless already there; its scores."""
    if not json_path.exists():
        json_path.parent.mkdir(parents=True, exist_ok=True)
        run([*surge, "eval", "--model", model, "--data", data, "--sets", *sets,
             "--metrics", "psnr", "ssim", "niqe", "--json", str(json_path)])
    return json.loads(json_path.read_text())


def candidate_name(step: int, alpha: float) -> str:
    return f"step{step}" if alpha == 1 else f"step{step}-a{alpha:g}"


def select(reference: dict, candidates: dict[str, dict], set_name: str, max_drop: float) -> str | None:
    """The candidate with the lowest NIQE on ``set_name`` among those within ``max_drop`` dB PSNR-Y of the reference."""
    ref = reference[set_name]
    ok = {k: c[set_name] for k, c in candidates.items() if c[set_name]["psnr_y"] >= ref["psnr_y"] - max_drop}
    return min(ok, key=lambda k: ok[k]["niqe"]) if ok else None


def load_records(out: Path) -> tuple[dict | None, dict[int, dict]]:
    records = out / "records"
    reference = json.loads((records / "reference.json").read_text()) if (records / "reference.json").exists() else None
    points = {int(p.stem[4:]): json.loads(p.read_text()) for p in records.glob("step*.json") if "-" not in p.stem}
    return reference, dict(sorted(points.items()))


def deltas(reference: dict, point: dict, sets: list[str]) -> dict[str, tuple[float, float]]:
    """Per set: (PSNR-Y change in dB, NIQE change) of ``point`` against ``reference``; negative NIQE = better."""
    return {s: (point[s]["psnr_y"] - reference[s]["psnr_y"], point[s]["niqe"] - reference[s]["niqe"])
            for s in sets if s in point and s in reference}


def meets_target(d: dict[str, tuple[float, float]], sets: list[str], niqe_gain: float, max_drop: float) -> bool:
    return all(s in d and d[s][0] >= -max_drop and d[s][1] <= -niqe_gain for s in sets)


def write_table(reference: dict, points: dict[int, dict], args, path: Path) -> None:
    sets, targets = args.sets, args.target_sets
    lines = [
        f"# PSNR-Y vs NIQE over the GAN steps of `{args.config}`",
        "",
        f"Reference (step 0): `{args.reference}`. Target: NIQE at least {args.niqe_gain} lower and PSNR-Y at most "
        f"{args.max_psnr_drop} dB lower than the reference on {', '.join(targets)}.",
        "",
        "| step | " + " | ".join(f"{s} PSNR-Y / SSIM-Y / NIQE" for s in sets) + " | "
        + " | ".join(f"{s} dPSNR / dNIQE" for s in targets) + " | target met |",
        "|---|" + "---|" * (len(sets) + len(targets) + 1),
    ]
    rows = [(0, reference)] + list(points.items())
    for step, res in rows:
        cells = [f"{res[s]['psnr_y']:.2f} / {res[s]['ssim_y']:.4f} / {res[s]['niqe']:.3f}" if s in res else "-"
                 for s in sets]
        d = deltas(reference, res, targets)
        cells += [f"{d[s][0]:+.2f} / {d[s][1]:+.3f}" if s in d else "-" for s in targets]
        met = "-" if step == 0 else ("yes" if meets_target(d, targets, args.niqe_gain, args.max_psnr_drop) else "no")
        lines.append(f"| {step} | " + " | ".join(cells) + f" | {met} |")
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


def plot(reference: dict, points: dict[int, dict], sets: list[str], path: Path, chosen: tuple[str, dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    steps = [0, *points]
    for s in sets:
        series = [reference, *points.values()]
        xs, ys = [r[s]["niqe"] for r in series], [r[s]["psnr_y"] for r in series]
        (line,) = ax.plot(xs, ys, "o-", lw=1, label=s)
        for x, y, step in zip(xs, ys, steps):
            ax.annotate(str(step), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=line.get_color())
        if chosen is not None and s in chosen[1]:
            ax.plot(chosen[1][s]["niqe"], chosen[1][s]["psnr_y"], "*", ms=12, color=line.get_color(),
                    label=f"{s}: chosen {chosen[0]}")
    ax.set_xlabel("NIQE (lower = more natural statistics)")
    ax.set_ylabel("PSNR-Y, dB (higher = more faithful)")
    ax.set_title("GAN stage: fidelity vs naturalness by step (0 = PSNR-stage reference;\n"
                 "star = the model chosen on the selection set)", fontsize=9)
    ax.invert_xaxis()  # better is up and to the right
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def choose(args, run_dir: Path, records: Path, surge: list[str]) -> tuple[str | None, dict, dict[str, dict]]:
    """Score every snapshot and interpolation on the selection set and pick one; score the pick on the
    reported sets. Returns (the pick, the reference's selection scores, every candidate's)."""
    from surge.models.registry import weights_file

    reference_file = weights_file(args.reference)
    sel = (args.select_data, [args.select_set], surge)
    ref = score(str(reference_file), records / "select-reference.json", *sel)
    candidates = {}
    for steps in args.steps:
        snapshot = run_dir / "snapshots" / f"step{steps}.safetensors"
        for alpha in [*args.alphas, 1.0]:
            name = candidate_name(steps, alpha)
            model = snapshot
            if alpha != 1:
                model = run_dir / "snapshots" / f"{name}.safetensors"
                if not model.exists():
                    run([*surge, "interpolate", str(reference_file), str(snapshot), "--alpha", f"{alpha:g}", "-o", str(model)])
            candidates[name] = score(str(model), records / f"select-{name}.json", *sel)
    chosen = select(ref, candidates, args.select_set, args.select_max_psnr_drop)
    if chosen is not None:  # a raw snapshot's benchmark scores are already there: nothing is rerun
        score(str(run_dir / "snapshots" / f"{chosen}.safetensors"), records / f"{chosen}.json", args.data, args.sets, surge)
    return chosen, ref, candidates


def write_selection(reference: dict, chosen: str, ref_sel: dict, candidates: dict[str, dict], args, records: Path,
                    path: Path) -> None:
    sel = args.select_set
    ref = ref_sel[sel]
    lines = ["", f"## Selection on {sel} (not a reported set)", "",
             f"Rule: the lowest {sel} NIQE among the candidates whose {sel} PSNR-Y is at most "
             f"{args.select_max_psnr_drop} dB below the reference's ({ref['psnr_y']:.2f} dB, NIQE {ref['niqe']:.3f}).",
             "", f"| candidate | {sel} PSNR-Y | {sel} NIQE | eligible |", "|---|---|---|---|"]
    for name in sorted(candidates, key=_candidate_key):
        r = candidates[name][sel]
        ok = r["psnr_y"] >= ref["psnr_y"] - args.select_max_psnr_drop
        lines.append(f"| {'**' + name + '**' if name == chosen else name} | {r['psnr_y']:.2f} | {r['niqe']:.3f} | "
                     f"{'yes' if ok else 'no'} |")
    res = json.loads((records / f"{chosen}.json").read_text())
    d = deltas(reference, res, args.target_sets)
    met = meets_target(d, args.target_sets, args.niqe_gain, args.max_psnr_drop)
    lines += ["", f"Chosen: **{chosen}**. On the reported sets: "
              + "; ".join(f"{s} {res[s]['psnr_y']:.2f} dB / SSIM {res[s]['ssim_y']:.4f} / NIQE {res[s]['niqe']:.3f}"
                          for s in args.sets if s in res)
              + ". Against the reference: "
              + "; ".join(f"{s} {d[s][0]:+.2f} dB, NIQE {d[s][1]:+.3f}" for s in args.target_sets if s in d)
              + f". Target met: **{'yes' if met else 'no'}**."]
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _candidate_key(name: str) -> tuple[int, float]:
    step, _, alpha = name[4:].partition("-a")
    return int(step), float(alpha) if alpha else 1.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="the GAN-stage experiment config")
    p.add_argument("--run-dir", required=True, help="the run folder (created on the first step count)")
    p.add_argument("--steps", nargs="+", type=int, default=[], help="step counts to snapshot, ascending")
    p.add_argument("--reference", default="surge-x4-psnr", help="the PSNR-stage model the run starts from")
    p.add_argument("--data", default="../shared/datasets/benchmark")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    p.add_argument("--target-sets", nargs="+", default=["Set14", "BSD100"])
    p.add_argument("--niqe-gain", type=float, default=1.0)
    p.add_argument("--max-psnr-drop", type=float, default=1.0)
    p.add_argument("--out", default="docs/results/gan-tradeoff")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every train call, e.g. train.threads=1")
    p.add_argument("--alphas", nargs="*", type=float, default=[],
                   help="interpolation weights of each snapshot against the reference (1 = the snapshot itself)")
    p.add_argument("--select-data", help="root of the selection set (not one of the reported sets)")
    p.add_argument("--select-set", default="select25")
    p.add_argument("--select-max-psnr-drop", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.steps != sorted(set(args.steps)) or any(n < 1 for n in args.steps):
        p.error("--steps must be positive and strictly ascending")
    if args.alphas and not args.select_data:
        p.error("--alphas needs --select-data: the choice is made on a set that is not reported")
    if any(not 0 < a < 1 for a in args.alphas):
        p.error("--alphas must be in (0, 1) (the snapshots themselves are always candidates)")

    out, run_dir = Path(args.out), Path(args.run_dir)
    surge = [sys.executable, "-m", "surge.cli.main"]
    records = out / "records"
    score(args.reference, records / "reference.json", args.data, args.sets, surge)
    for steps in args.steps:
        if (records / f"step{steps}.json").exists():
            continue
        snapshot = run_dir / "snapshots" / f"step{steps}.safetensors"
        if not snapshot.exists():
            snapshot = train_to(args.config, run_dir, steps, args.extra, surge)
        score(str(snapshot), records / f"step{steps}.json", args.data, args.sets, surge)
    chosen, ref_sel, candidates = choose(args, run_dir, records, surge) if args.select_data else (None, {}, {})
    # The curve shows every snapshot recorded in the folder, also those of earlier invocations.
    reference, points = load_records(out)
    write_table(reference, points, args, out / "tradeoff.md")
    if chosen is not None:
        write_selection(reference, chosen, ref_sel, candidates, args, records, out / "tradeoff.md")
    chosen_res = (chosen, json.loads((records / f"{chosen}.json").read_text())) if chosen else None
    plot(reference, points, args.sets, out / "tradeoff.png", chosen_res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
