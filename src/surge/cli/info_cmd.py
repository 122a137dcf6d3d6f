"""``surge info NAME``: what a model is, what it costs and where it came from.

NAME is anything ``surge.load_model`` accepts: ``bicubic``, a bundled model, an
architecture preset such as ``surge`` (random init), or a ``.safetensors`` file.
"""

from __future__ import annotations

import argparse
import json

import surge
from surge.cli.messages import printable_lines
from surge.inference.info import describe

# describe() keys in display order, with their labels; other keys are printed after them.
_LABELS = {
    "name": "name",
    "description": "description",
    "architecture": "architecture",
    "scale": "scale",
    "channels": "channels",
    "input_size": "input size (LR)",
    "trained": "trained",
    "parameters": "parameters",
    "mflops_per_lr_pixel": "MFLOPs per LR pixel",
    "receptive_radius_lr_px": "receptive radius (LR px)",
    "precisions": "precisions",
    "source": "source",
    "mixing_weights": "learned mixing weights",
    "provenance": "provenance",
    "config": "config",
}


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME|FILE", help="model name (see `surge models`), preset, or .safetensors file")
    p.add_argument("--json", action="store_true", help="print the description as JSON")


def run(args) -> int:
    info = describe(surge.load_model(args.name, device="cpu"))
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(printable_lines(format_info(info)))
    return 0


def format_info(info: dict) -> str:
    keys = [k for k in _LABELS if k in info] + [k for k in info if k not in _LABELS]
    lines: list[str] = []
    for key in keys:
        _format_entry(lines, _LABELS.get(key, key), _display(key, info[key]), indent=0)
    return "\n".join(lines)


def _display(key: str, value):
    if key == "parameters":
        return f"{value:,}"
    if key == "scale":
        return f"x{value}"
    if key == "trained":
        return "yes" if value else "no (random initial weights: output is not a meaningful upscale)"
    if key == "receptive_radius_lr_px":
        return f"{value} (minimum tile overlap for exact tiled output)"
    if key == "provenance" and isinstance(value.get("lineage"), list):
        # Each ancestor's full provenance is in --json; one line per chain reads better here.
        chain = " -> ".join(f"{e.get('experiment', '?')} ({e.get('steps', '?')} steps)" for e in value["lineage"])
        return {**value, "lineage": chain or "none (trained from scratch)"}
    return value


def _format_entry(lines: list[str], label: str, value, indent: int) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        lines.append(f"{pad}{label}:")
        for k, v in value.items():
            _format_entry(lines, str(k), v, indent + 2)
    else:
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        lines.append(f"{pad}{label + ':':<{max(28 - indent, len(label) + 2)}}{value}")
