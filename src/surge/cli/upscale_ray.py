"""``surge upscale ... --ray [ADDRESS]``: the command-line front-end of surge.inference.ray_batch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from surge.errors import SurgeError
from surge.inference.image_io import IMAGE_EXTENSIONS, OUTPUT_FORMATS
from surge.inference.pipeline import UpscaleOptions
from surge.inference.ray_batch import import_ray, upscale_with_ray
from surge.safetext import printable


def run(args, options: UpscaleOptions) -> int:
    """``surge upscale ... --ray [ADDRESS]``: exit 0 when every file was done or skipped, 1 otherwise."""
    address = None if args.ray == "local" else args.ray
    if address and os.path.exists(address):
        raise SurgeError(f"--ray took {address} as the cluster address; put --ray after the inputs, or write --ray=ADDRESS")
    if "-" in args.inputs or str(args.output) == "-":
        raise SurgeError("--ray reads files and folders and writes into an output folder, not stdin/stdout")
    output = str(args.output)  # a plain string: `s3://b/k` must not become a Path
    if Path(output).suffix.lower() in (*OUTPUT_FORMATS, *IMAGE_EXTENSIONS):
        raise SurgeError(f"{output}: --ray writes into an output folder; give a folder, not a file name")
    import_ray()  # before any work: a missing extra is one line

    def show(row: dict) -> None:
        if row["status"] == "failed":
            print(printable(f"surge: error: {row['error']}"), file=sys.stderr)
        for warning in row.get("warnings") or []:
            print(printable(f"surge: warning: {warning}"), file=sys.stderr)

    summary = upscale_with_ray(args.inputs, output, options, recursive=args.recursive,
                               address=address, actors=args.ray_actors, on_row=show, quiet=args.quiet)
    for message in summary.errors:
        print(printable(f"surge: error: {message}"), file=sys.stderr)
    if not args.quiet:
        print(printable(f"surge: {summary.done} upscaled, {summary.skipped} skipped, "
                        f"{summary.failed + len(summary.errors)} failed -> {output} (manifest: {summary.manifest})"),
              file=sys.stderr)
    return 1 if summary.failed or summary.errors else 0
