"""What a call of the `device` tool would carry, against its 64 MiB limit.

The tool copies the git-tracked files (their sizes on disk), the untracked files git does not
ignore, and the ignored paths named in ``carry``; together at most 64 MiB, or the call is refused
("the working tree is larger than 64 MiB"). This script sums the same three parts here, before a
call, prints a table and what is left of the limit after a safety margin, and exits 1 when over::

    python scripts/device_budget.py --carry .pack .whl .carry

``--left`` prints only the MiB left (two decimals, rounded down), for a prepare step that sizes the
data pack to what the rest leaves::

    B=$(python scripts/device_budget.py --carry .whl .carry --left)
    python scripts/pack_data.py ... --out .pack --budget-mib "$B" --fit

A carry path that does not exist counts 0 (the tool removes it there). Exit status: 0 fits, 1 over
the limit (less the margin), 2 not a git work tree or a bad argument.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

MIB = 2**20
LIMIT_MIB = 64.0
MARGIN_MIB = 0.5  # the tool's own count may differ slightly from ours (links, files changed after)


class BudgetError(Exception):
    """A one-line problem; the script prints it and exits 2."""


def _git_files(repo: Path, *args: str) -> list[str]:
    try:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", *args],
                             check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise BudgetError(f"{repo}: not a git work tree ({detail.decode(errors='replace').strip() or exc})") from None
    return [name for name in out.decode("utf-8", "surrogateescape").split("\0") if name]


def _size(path: Path) -> int:
    """Bytes of one file as it lies on disk (a link counts as itself); 0 if it is gone."""
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0  # tracked but deleted here: it does not travel


def files_bytes(repo: Path, names: list[str]) -> int:
    return sum(_size(repo / name) for name in names)


def tree_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (or of ``path`` itself); links are not followed."""
    if not os.path.lexists(path):
        return 0
    if path.is_symlink() or not path.is_dir():
        return _size(path)
    return sum(_size(Path(root) / name) for root, _, names in os.walk(path) for name in names)


def measure(repo: Path, carry: list[str]) -> list[tuple[str, int]]:
    """(part, bytes) rows: tracked files, untracked-not-ignored files, then each carry path."""
    rows = [("tracked files (git ls-files)", files_bytes(repo, _git_files(repo))),
            ("untracked, not ignored", files_bytes(repo, _git_files(repo, "--others", "--exclude-standard")))]
    for name in carry:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BudgetError(f"{name}: a carry path must be relative to the repository root")
        rows.append((f"carry {name}", tree_bytes(repo / name)))
    return rows


def left_mib(rows: list[tuple[str, int]], limit_mib: float, margin_mib: float) -> float:
    return (limit_mib - margin_mib) - sum(b for _, b in rows) / MIB


def table(rows: list[tuple[str, int]], limit_mib: float, margin_mib: float) -> str:
    total = sum(b for _, b in rows)
    width = max(len(name) for name, _ in rows + [("left after the margin", 0)])
    lines = [f"{name:<{width}}  {b:>12,} B  {b / MIB:8.2f} MiB" for name, b in rows]
    lines.append(f"{'total':<{width}}  {total:>12,} B  {total / MIB:8.2f} MiB")
    lines.append(f"{'limit':<{width}}  {int(limit_mib * MIB):>12,} B  {limit_mib:8.2f} MiB (margin {margin_mib:g})")
    left = left_mib(rows, limit_mib, margin_mib)
    lines.append(f"{'left after the margin':<{width}}  {int(left * MIB):>12,} B  {left:8.2f} MiB"
                 + ("" if left >= 0 else "  OVER"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--carry", nargs="*", default=[], metavar="PATH",
                   help="ignored paths the call will carry, relative to the repository root (e.g. .pack .whl .carry)")
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                   help="repository root (default: this script's repository)")
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help=f"the tool's limit (default {LIMIT_MIB:g})")
    p.add_argument("--margin-mib", type=float, default=MARGIN_MIB,
                   help=f"kept free below the limit (default {MARGIN_MIB:g})")
    p.add_argument("--left", action="store_true", help="print only the MiB left (rounded down to 0.01)")
    args = p.parse_args(argv)
    try:
        rows = measure(args.repo, args.carry)
    except BudgetError as exc:
        print(f"device_budget: error: {exc}", file=sys.stderr)
        return 2
    left = left_mib(rows, args.limit_mib, args.margin_mib)
    if args.left:
        print(f"{math.floor(left * 100) / 100:.2f}")
    else:
        print(table(rows, args.limit_mib, args.margin_mib))
    if left < 0:
        print(f"device_budget: over the {args.limit_mib:g} MiB limit (less {args.margin_mib:g} margin) "
              f"by {-left:.2f} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
