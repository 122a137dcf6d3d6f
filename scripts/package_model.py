"""Package a trained generator as a bundled model: fp16 weights + provenance with scores.

    python scripts/package_model.py runs/cpu-psnr/best.safetensors surge-x4-psnr \
        --scores docs/results/surge-x4-psnr.json --machine "2-core AMD Zen 5 CPU (bf16), torch 2.13"

Only the generator's weights are shipped (no optimiser or critic state). fp16 storage halves the
file; weights are cast back to fp32 on load. The written file is checked by re-reading it: its
tensors must equal the source's cast to fp16, bit for bit (so re-packaging an fp16 file changes
only its metadata), and its outputs must match the source weights'.

The provenance is the source file's own (what the trainer wrote: tag, step, the validation score
of those weights, config, lineage), unless ``--records`` rebuilds it from training record
folders (``docs/results/training/<run>/``: ``config.json``, ``log.csv`` and ``run.json`` with the
tag, steps and wall time of the weights), oldest first, the last being the run that made these
weights. That is how files from before per-file provenance are re-packaged::

    python scripts/package_model.py src/surge/weights/surge-x4-psnr.safetensors surge-x4-psnr \
        --records docs/results/training/cpu-psnr docs/results/training/cpu-psnr-ft \
        --scores docs/results/training/cpu-psnr-ft/eval.json --machine "..." --note "..."
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
from safetensors import safe_open

from surge.models.files import load_model_file, save_model, total_steps

REPO = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = REPO / "src" / "surge" / "weights"
STORAGE = torch.float16


def record_provenance(folder: Path) -> dict:
    """The provenance a run's weights file carries (as the trainer writes it), from its record folder."""
    config = json.loads((folder / "config.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    last_step, val = _read_log(folder / "log.csv")
    if last_step != run["steps"]:
        raise SystemExit(f"{folder}: run.json says {run['steps']} steps but log.csv ends at step {last_step}")
    data, train = config["data"], config["train"]
    return {
        "tag": run["tag"],
        "steps": run["steps"],
        "val_psnr_y": val.get(run["steps"]),
        "val_set": Path(data["val_dir"]).name if data.get("val_dir") else None,
        "wall_seconds": run["wall_seconds"],
        "config": config,
        "init_from": train.get("init_from") or None,
        "experiment": train["name"],
        "stage": train["stage"],
        "batch_size": data["batch_size"],
        "hr_size": data["hr_size"],
        "training_data": [Path(d).name for d in data["train_dirs"]],
        "ema": bool(config["optim"].get("ema_decay")),
        "loss": config["loss"],
        "record": folder.resolve().relative_to(REPO).as_posix() if folder.resolve().is_relative_to(REPO) else str(folder),
        "record_note": run.get("note", ""),
    }


def _read_log(path: Path) -> tuple[int, dict[int, float]]:
    """(last training step, {step: validation PSNR-Y}) of a run's log.csv."""
    last, val = 0, {}
    with path.open() as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            if row.get("val_psnr_y"):
                val[step] = float(row["val_psnr_y"])
            if row.get("loss_g"):
                last = max(last, step)
    return last, val


def chain_provenance(folders: list[Path]) -> dict:
    """Provenance of the last record's weights, with every earlier record as its lineage."""
    entries = [record_provenance(f) for f in folders]
    for parent, child in zip(entries, entries[1:]):
        if child["init_from"] is None or Path(child["init_from"]).parent.name != parent["experiment"]:
            raise SystemExit(f"{child['record']}: init_from {child['init_from']!r} is not a file of run {parent['experiment']!r}")
    provenance = {**entries[-1], "lineage": entries[:-1]}
    provenance["total_steps"] = total_steps(provenance)
    return provenance


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", type=Path, help="trained generator .safetensors (a run's best/last, or a bundled file)")
    p.add_argument("name", help="bundled model name, e.g. surge-x4")
    p.add_argument("--records", type=Path, nargs="+", metavar="DIR",
                   help="training record folders, oldest first, to rebuild the provenance from")
    p.add_argument("--scores", help="JSON written by `surge eval --json` for these weights")
    p.add_argument("--machine", default="", help="where it was trained, for the model card")
    p.add_argument("--note", default="", help="free text for the provenance")
    p.add_argument("--out", type=Path, default=None, help="output file (default: the bundled weights folder)")
    args = p.parse_args(argv)

    source = read_tensors(args.weights)  # before anything is written: the output may be this very file
    module, provenance = load_model_file(args.weights)
    provenance = chain_provenance(args.records) if args.records else dict(provenance)
    if args.scores:
        data = json.loads(Path(args.scores).read_text())
        provenance["scores"] = {
            name: {"psnr_y": round(r["psnr_y"], 4), "ssim_y": round(r["ssim_y"], 5), "images": r["images"]}
            for name, r in data.items()
        }
    if args.machine:
        provenance["machine"] = args.machine
    if args.note:
        provenance["note"] = args.note
    provenance["storage"] = "float16"
    out = save_model(module, args.out or WEIGHTS_DIR / f"{args.name}.safetensors", provenance=provenance, dtype=STORAGE)

    written = read_tensors(out)
    changed = [k for k in source if not torch.equal(written[k], source[k].to(STORAGE) if source[k].is_floating_point() else source[k])]
    if changed or set(written) != set(source):
        raise SystemExit(f"{out}: stored tensors differ from the source's fp16 cast ({len(changed)} tensors, e.g. {changed[:1]})")
    reloaded, _ = load_model_file(out)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        diff = (reloaded(x) - module(x)).abs().max().item()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); tensors equal the source's fp16 cast; "
          f"max output change from fp16 storage: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
