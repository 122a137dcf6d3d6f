"""Prepare one call of the `device` tool: POT's wheel, a carried state and the largest data pack.

The steps that scripts/device_session.sh and scripts/gpu_train.sh document, in their order and as
one command, because the pack must be rebuilt after every merge (each tracked byte the tree gains
comes out of the pack) and a device session should not start with a hand-made mistake::

    python scripts/device_prepare.py                         # no state: .whl/ and .pack/ (the session then
                                                             # warm-starts from the bundled weights, SURGE_INIT_FROM)
    python scripts/device_prepare.py --state RETURNED_OUT    # continue: .carry/ too
    python scripts/device_prepare.py --bench-v1              # also bench-v1's LR files (gpu_train.sh, SURGE_MODE=real)

1. ``.whl/``: POT's wheel for the device image's Python (downloaded once; kept when present).
2. ``.carry/`` (with ``--state``): the travel state a previous call returned, repacked by
   ``python -m surge.training.travel repack`` to the most faithful profile within ``--state-mib``.
3. ``.pack/``: ``scripts/pack_data.py --fit`` with the budget ``scripts/device_budget.py --left``
   reports for the tree, the wheel and the state; BSD200's last images are left out as needed
   (``.pack/manifest.json`` lists them).
4. The call's table (``device_budget.py``) and the tool call to make. Exit status: 0 ready; 1 over
   the limit; 2 a step failed (its own message is printed above).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO.parent / "shared" / "datasets" / "benchmark"
POT = "POT==0.9.6.post1"
# The device image's interpreter (gpu-run-2026-12-04: CPython 3.12, manylinux x86_64).
WHEEL_TARGET = ["--python-version", "3.12", "--implementation", "cp",
                "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux2014_x86_64"]
# minimal profile of configs/gpu-real-psnr.toml is 9.0 MiB: fp16 weights, a documented warm restart,
# and room for T91 + most of BSD200 beside it. Raise it to carry EMA and Adam moments (lean 26.6,
# compact 44.3) at the cost of training images.
DEFAULT_STATE_MIB = 9.5


class StepFailed(Exception):
    """A step's command failed; its own output already says why."""


def run(cmd: list, what: str) -> None:
    print(f"== {what}: {' '.join(map(str, cmd))}", flush=True)
    done = subprocess.run(list(map(str, cmd)))
    if done.returncode != 0:
        raise StepFailed(f"{what} failed (exit {done.returncode})")


def pot_wheels(folder: Path) -> list[Path]:
    name = POT.split("==")[0].lower() + "-" + POT.split("==")[1]
    return sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(name + "-"))


def ensure_wheel(repo: Path, download: bool) -> None:
    folder = repo / ".whl"
    if pot_wheels(folder):
        print(f"== wheel: {pot_wheels(folder)[0].name} already in .whl/", flush=True)
        return
    if not download:
        raise StepFailed(f"{folder}: no {POT} wheel there and --no-download given")
    folder.mkdir(exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *WHEEL_TARGET,
         "-d", folder, POT], "wheel")


def ensure_state(repo: Path, state: Path | None, state_mib: float) -> list[str]:
    """The carry paths for the state: [] for a fresh start (a stale .carry/ is removed)."""
    carry = repo / ".carry"
    if state is None:
        if carry.exists():
            print("== state: none given; removing the earlier .carry/ (a fresh start)", flush=True)
            shutil.rmtree(carry)
        return []
    if not state.is_dir() or not any(state.glob("state-*.safetensors")):
        raise StepFailed(f"{state}: not a folder holding a travel state (state-NN.safetensors)")
    # Repacked beside .carry/ and swapped in only when whole: a failed repack leaves the earlier one.
    staging = Path(tempfile.mkdtemp(prefix=".carry.", dir=repo))
    try:
        run([sys.executable, "-m", "surge.training.travel", "repack", state, staging / "state", "--budget-mib",
             state_mib], "state")
        if carry.exists():
            shutil.rmtree(carry)
        (staging / "state").rename(carry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [".carry"]


def budget_left(repo: Path, carry: list[str], limit_mib: float) -> float:
    """MiB the tree, the wheel and the state leave for the pack (negative: over already)."""
    cmd = [sys.executable, str(REPO / "scripts" / "device_budget.py"), "--repo", str(repo), "--limit-mib",
           str(limit_mib), "--carry", ".whl", *carry, "--left"]
    print(f"== budget: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, text=True, capture_output=True)
    if done.returncode not in (0, 1):  # 1: over the limit, and it still prints by how much
        sys.stderr.write(done.stderr)
        raise StepFailed(f"budget failed (exit {done.returncode})")
    return float(done.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", type=Path, help="a folder a previous call returned (its state-NN.safetensors)")
    p.add_argument("--state-mib", type=float, default=DEFAULT_STATE_MIB,
                   help=f"the carried state at most this (default {DEFAULT_STATE_MIB:g}: the minimal profile of "
                        "gpu-real-psnr; more keeps EMA/Adam moments and leaves fewer training images)")
    p.add_argument("--bench-v1", action="store_true",
                   help="also pack bench-v1's degraded Set5/Set14 (surge degrade, seed 0) for gpu_train.sh's SURGE_MODE=real")
    p.add_argument("--train", nargs="*", type=Path, help="training folders (default: pack_data.py's T91 and BSD200)")
    p.add_argument("--bench", nargs="*", help="benchmark sets as pack_data.py takes them (default: its Set5 and Set14)")
    p.add_argument("--repo", type=Path, default=REPO,
                   help="the working tree the call carries, where .whl/.carry/.pack go (default: this script's)")
    p.add_argument("--limit-mib", type=float, default=64.0, help="the tool's carry limit (default 64)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing wheel")
    p.add_argument("--jobs", type=int, default=2, help="processes encoding images (default 2)")
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    try:
        ensure_wheel(repo, download=not args.no_download)
        carry = ensure_state(repo, args.state.resolve() if args.state else None, args.state_mib)
        bench = list(args.bench) if args.bench is not None else None
        if args.bench_v1:
            run([sys.executable, "-m", "surge", "degrade", "--data", BENCHMARKS, "--sets", "Set5", "Set14",
                 "-o", repo / ".bench-v1", "--overwrite"], "bench-v1")
            default_sets = [str(BENCHMARKS / s) for s in ("Set5", "Set14")]
            bench = (bench if bench is not None else default_sets) + [
                f"{s}-bench-v1={repo / '.bench-v1' / s}" for s in ("Set5", "Set14")]
        left = budget_left(repo, carry, args.limit_mib)
        if left <= 0:
            raise StepFailed(f"the tree, the wheel and the state leave {left:.2f} MiB for data: "
                             "carry a smaller state (--state-mib) or shrink the tree")
        pack_cmd = [sys.executable, REPO / "scripts" / "pack_data.py", *(args.train or []), "--out", repo / ".pack",
                    "--budget-mib", f"{left:.2f}", "--fit", "--force", "--jobs", args.jobs]
        if bench is not None:
            pack_cmd += ["--bench", *bench]
        run(pack_cmd, "pack")
    except StepFailed as exc:
        print(f"device_prepare: error: {exc}", file=sys.stderr)
        return 2
    paths = [".pack", ".whl", *carry]
    fits = subprocess.run([sys.executable, str(REPO / "scripts" / "device_budget.py"), "--repo", str(repo),
                           "--limit-mib", str(args.limit_mib), "--carry", *paths]).returncode == 0
    if not fits:
        print("device_prepare: error: the call is over the carry limit (table above)", file=sys.stderr)
        return 1
    carried = ", ".join(f'"{x}"' for x in paths)
    print(f"\nready; the device tool's call:\n  command:   bash scripts/device_session.sh\n"
          f"  carry:     [{carried}]\n  timeout_s: 600")
    return 0


if __name__ == "__main__":
    sys.exit(main())
