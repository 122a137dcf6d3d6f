"""``surge diff A.json B.json``: is model B better than model A on the same images?

Reads two ``surge eval --json`` files and prints, per set and metric, the mean per-image
difference B - A with a bootstrap confidence interval over images, how many images improved and
the Wilcoxon signed-rank p-value (``surge.evaluation.paired``). Exit 0; 2 on unreadable files,
a missing set or a metric that was not measured.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from surge.errors import DatasetError

FEW_IMAGES = 10  # below this a bootstrap over images has little to resample
RUN_WEIGHT_NAMES = {"last", "best"}  # what `surge train` calls a run's weights: no help in a table


def add_parser(p: argparse.ArgumentParser) -> None:
    from surge.evaluation.paired import METRICS

    p.add_argument("a", type=Path, metavar="A.json", help="scores of the reference model (`surge eval --json`)")
    p.add_argument("b", type=Path, metavar="B.json", help="scores of the model compared with it, on the same sets")
    p.add_argument("--metrics", nargs="+", default=["psnr_y"], choices=METRICS, metavar="METRIC",
                   help=f"per-image scores to compare: {', '.join(METRICS)} (default: psnr_y)")
    p.add_argument("--sets", nargs="+", default=None, metavar="SET", help="default: every set in both files")
    p.add_argument("--level", type=_level, default=0.95, help="confidence level of the interval (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: %(default)s)")


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a level between 0 and 1, e.g. 0.95; got {text}")
    return value


def _one_model(path: Path):
    from surge.evaluation.report import load_results_json

    entries = load_results_json(path)
    if len(entries) != 1:
        names = ", ".join(e.name for e in entries)
        raise DatasetError(f"{path}: holds {len(entries)} models ({names}); give one `surge eval --json` file per model")
    return entries[0]


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def run(args) -> int:
    from surge.cli.messages import printable, printable_lines
    from surge.evaluation.paired import MIN_INTERVAL_IMAGES, format_paired_table, paired_difference, protocol_mismatch

    a, b = _one_model(args.a), _one_model(args.b)
    sets = args.sets or [name for name in a.results if b.result(name) is not None]
    if not sets:
        raise DatasetError(f"{args.a}, {args.b}: no set in common ({', '.join(a.results)} vs {', '.join(b.results)})")
    rows = []
    for name in sets:
        for path, entry in ((args.a, a), (args.b, b)):
            if entry.result(name) is None:
                raise DatasetError(f"{path}: no results for set {name} (it has {', '.join(entry.results)})")
        mismatch = protocol_mismatch(a.result(name), b.result(name))
        if mismatch:
            raise DatasetError(f"{args.a}, {args.b}: set {name} was evaluated under different protocols ({mismatch}); "
                               "scores are comparable only with the same --crop, --y-convention and LR source")
        for metric in args.metrics:
            rows.append(paired_difference(a.result(name), b.result(name), metric, level=args.level, seed=args.seed))
    # Run folders name their weights "last"/"best": then the files (and their folders) tell them apart.
    name_a, name_b = a.name, b.name
    if name_a == name_b or {name_a, name_b} & RUN_WEIGHT_NAMES:
        name_a, name_b = _label(args.a), _label(args.b)
    print(printable_lines(format_paired_table(rows, name_a, name_b)))
    print(f"\ndifference = {printable(name_b)} - {printable(name_a)}, mean over images; interval: BCa bootstrap over images "
          f"(seed {args.seed}), * where it excludes 0. It does not include training noise: compare seeds for that.")
    none = sorted({printable(r.set_name) for r in rows if r.images < MIN_INTERVAL_IMAGES})
    few = sorted({printable(r.set_name) for r in rows if MIN_INTERVAL_IMAGES <= r.images < FEW_IMAGES})
    if none:
        print(printable_lines(f"{', '.join(none)}: no interval (it needs at least {MIN_INTERVAL_IMAGES} images); "
                              "read the better/worse counts."))
    if few:
        print(printable_lines(f"{', '.join(few)}: fewer than {FEW_IMAGES} images, so the interval is rough; "
                              "read the better/worse counts."))
    return 0
