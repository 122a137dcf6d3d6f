"""Which model for a JPEG of a given quality: clean LR re-encoded at several JPEG qualities, scored per model.

Photos from phones, cameras and the web are JPEGs of very different qualities (cameras ~90-95,
messaging and the web 50-85). This script takes each set's clean LR (its LR files, or MATLAB
bicubic x1/4 of the HR where it has none), encodes it with Pillow's JPEG (4:2:0 chroma, as
phones and browsers) at every ``--qualities`` value, decodes it, and scores every model on
each version with the standard protocol, so the README's "which model" advice can name the
quality where a model stops being the right one:

    python scripts/jpeg_sweep.py --data /work/val-photos --sets select25 --qualities 50 70 80 90 95 \\
        --models surge-x4-psnr surge-x4 surge-x4-real surge-x4-real-psnr --json sweep.json

Choose with sets that are not reported (``scripts/make_val_photos.py`` makes ``select25``).
``--data`` is read, never written; the versions are built in ``--work`` (a temporary folder by
default). Prints a Markdown table: mean PSNR-Y per model (rows) and quality (columns; ``clean``
is the LR as given), the best per column in bold.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image

from surge.data.degradations import jpeg_uint8

SCALE = 4


def build_versions(data: Path, sets: list[str], qualities: list[int], work: Path) -> list[str]:
    """``work/<version>/<Set>/{HR, LR_degraded_X4}`` for "clean" and every quality; the version names."""
    from surge.evaluation.datasets import discover_set, find_set, load_pair

    versions = ["clean", *(f"q{q}" for q in qualities)]
    for name in sets:
        bench = discover_set(find_set(data, name), SCALE)
        if bench.skipped:
            sys.exit(f"jpeg_sweep: {bench.skipped[0].reason}")
        for pair in bench.pairs:
            lr, hr = load_pair(pair, SCALE)
            for version, quality in zip(versions, [None, *qualities]):
                for folder, file, arr in (("HR", f"{pair.name}.png", hr),
                                          (f"LR_degraded_X{SCALE}", f"{pair.name}x{SCALE}.png",
                                           lr if quality is None else jpeg_uint8(lr, quality))):
                    out = work / version / name / folder
                    out.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(out / file)
    return versions


def score(models: list[str], sets: list[str], versions: list[str], work: Path) -> dict:
    """{model: {version: {set: PSNR-Y}}}; bicubic is always included."""
    from surge.evaluation.runner import psnr_y_by_variant

    return psnr_y_by_variant(models, {version: work / version for version in versions}, sets)


def mean(by_set: dict) -> float:
    return sum(by_set.values()) / len(by_set)


def table(results: dict, versions: list[str], sets: list[str]) -> str:
    best = {v: max(results, key=lambda m: mean(results[m][v])) for v in versions}
    lines = [f"PSNR-Y, mean over {' / '.join(sets)}", "", "| model | " + " | ".join(versions) + " |",
             "|---|" + "---|" * len(versions)]
    for model, by_version in results.items():
        cells = [f"**{mean(by_version[v]):.2f}**" if best[v] == model else f"{mean(by_version[v]):.2f}" for v in versions]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="benchmark root: one folder per set (HR, optional LR)")
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--qualities", nargs="+", type=int, default=[50, 70, 80, 90, 95], metavar="Q")
    p.add_argument("--models", nargs="+", required=True, help="model names or .safetensors files")
    p.add_argument("--work", type=Path, default=None, help="where the versions are built (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the scores here")
    args = p.parse_args(argv)
    bad = [q for q in args.qualities if not 1 <= q <= 95]
    if bad:
        p.error(f"--qualities must be 1-95 (Pillow's useful range), got {bad[0]}")
    with tempfile.TemporaryDirectory(prefix="jpeg-sweep-") as tmp:
        work = args.work or Path(tmp)
        versions = build_versions(args.data, args.sets, args.qualities, work)
        results = score(args.models, args.sets, versions, work)
    print(table(results, versions, args.sets))
    if args.json is not None:
        tmp_json = args.json.with_name(args.json.name + ".tmp")
        tmp_json.write_text(json.dumps({"qualities": args.qualities, "sets": args.sets, "psnr_y": results}, indent=2) + "\n")
        tmp_json.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
