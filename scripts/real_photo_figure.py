"""Before/after figure of a real JPEG photo: input, bicubic and each model, one zoomed crop each.

The photo is scikit-image's ``chelsea`` (a camera photo, 451x300) saved as JPEG at quality 60, as
a web or messaging app would, and upscaled x4 as it is: no synthetic blur or downscale, so the
models see the artifacts of a real file. Usage::

    python scripts/real_photo_figure.py docs/results/real-world/photo.png \
        --models bicubic surge-x4-psnr surge-x4-real surge-x4-real-psnr

The JPEG input is written next to the figure (``<figure stem>-input.jpg``). A model may be given
as ``LABEL=MODEL`` (e.g. a weights file under a short name); ``--sr-image LABEL=PNG`` adds a panel
from an x4 output made elsewhere from that very input (a peer model outside the package:
``benchmarks/peer_eval.py --photo``).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

import surge
from surge.atomic import atomic_output

CROP = (150, 60, 250, 140)  # LR box (left, top, right, bottom): the cat's eye and fur


def jpeg_photo(quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def panel(img: Image.Image, label: str, box: tuple[int, int, int, int]) -> Image.Image:
    crop = img.crop(box)
    out = Image.new("RGB", (crop.width, crop.height + 18), "white")
    out.paste(crop, (0, 18))
    ImageDraw.Draw(out).text((4, 3), label, fill="black")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", nargs="+", default=["bicubic", "surge-x4-psnr", "surge-x4-real", "surge-x4-real-psnr"])
    parser.add_argument("--quality", type=int, default=60)
    parser.add_argument("--sr-image", nargs="*", default=[], metavar="LABEL=PNG",
                        help="extra panels: x4 outputs of the input JPEG made elsewhere")
    args = parser.parse_args()

    jpeg = jpeg_photo(args.quality)
    lr = Image.open(io.BytesIO(jpeg)).convert("RGB")
    scale = 4
    box = tuple(v * scale for v in CROP)
    panels = [panel(lr.resize((lr.width * scale, lr.height * scale), Image.NEAREST), f"input JPEG q{args.quality} (nearest)", box)]
    for entry in args.models:
        label, _, name = entry.rpartition("=")
        sr = surge.upscale(lr, model=surge.load_model(name), tile="auto")
        panels.append(panel(sr, label or name, box))
    for entry in args.sr_image:
        label, _, path = entry.partition("=")
        with Image.open(path) as im:
            sr = im.convert("RGB")
        if sr.size != (lr.width * scale, lr.height * scale):
            raise SystemExit(f"{path}: {sr.width}x{sr.height} px is not the x{scale} output of the {lr.width}x{lr.height} input")
        panels.append(panel(sr, label, box))
    width = sum(p.width for p in panels) + 4 * (len(panels) - 1)
    figure = Image.new("RGB", (width, panels[0].height), "white")
    x = 0
    for p in panels:
        figure.paste(p, (x, 0))
        x += p.width + 4
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out) as tmp:
        figure.save(tmp, format="PNG")
    # The very bytes the models saw, not a second encode.
    with atomic_output(args.out.with_name(f"{args.out.stem}-input.jpg")) as tmp:
        Path(tmp).write_bytes(jpeg)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
