"""``surge models``: every model name the other commands accept, default marked."""

from __future__ import annotations

import argparse
import json

from surge.cli.messages import printable_lines
from surge.models.registry import available_models, default_model_name


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def run(args) -> int:
    rows = available_models()
    default = default_model_name()
    for row in rows:
        row["default"] = row["name"] == default
    print(json.dumps(rows, indent=2) if args.json else printable_lines(format_table(rows)))
    return 0


def format_table(rows: list[dict]) -> str:
    """A plain-text table; ``*`` marks the default model, ``-`` one not installed."""
    header = ("", "name", "kind", "installed", "description")
    body = [
        ("*" if r["default"] else "", r["name"], r["kind"], "yes" if r["available"] else "no", r["description"])
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) + "  " + line[-1] for line in [header, *body]]
    lines.append("* default model (used when --model is not given)")
    return "\n".join(line.rstrip() for line in lines)
