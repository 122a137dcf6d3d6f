"""Torch JPEG simulation (surge.data.torch_jpeg) against Pillow's libjpeg encode + decode, on the CPU.

For each natural image (scikit-image's astronaut, chelsea, coffee) and quality, both codecs code
the same 8-bit RGB image with 4:2:0 chroma; the table gives the PSNR between the two decodes
(how close the simulation is), each decode's PSNR to the original (the damage each does), and
the 8x8 blockiness of each decode (``torch_jpeg.blockiness``: mean step across block
boundaries over the mean step inside blocks; the original's is given for reference).

    python benchmarks/jpeg_vs_pillow.py [--qualities 30 40 50 60 70 80 90 95] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import torch
from PIL import Image

from surge.data.torch_jpeg import blockiness, jpeg_levels

IMAGES = ("astronaut", "chelsea", "coffee")
QUALITIES = (30, 40, 50, 60, 70, 80, 90, 95)


def pillow_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def torch_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    return jpeg_levels(x, torch.tensor([quality]))[0].permute(1, 2, 0).to(torch.uint8).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def natural_image(name: str) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)())


def measure(names=IMAGES, qualities=QUALITIES) -> list[dict]:
    rows = []
    for name in names:
        img = natural_image(name)
        for q in qualities:
            p, t = pillow_jpeg(img, q), torch_jpeg(img, q)
            rows.append({"image": name, "size": f"{img.shape[1]}x{img.shape[0]}", "quality": q,
                         "psnr_torch_vs_pillow": psnr(t, p), "psnr_pillow": psnr(p, img), "psnr_torch": psnr(t, img),
                         "blockiness_original": blockiness(img), "blockiness_pillow": blockiness(p),
                         "blockiness_torch": blockiness(t)})
    return rows


def table(rows: list[dict]) -> str:
    out = ["| image | quality | PSNR torch vs Pillow (dB) | PSNR to original: Pillow / torch | "
           "blockiness original / Pillow / torch | torch/Pillow |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['image']} {r['size']} | {r['quality']} | {r['psnr_torch_vs_pillow']:.2f} | "
                   f"{r['psnr_pillow']:.2f} / {r['psnr_torch']:.2f} | {r['blockiness_original']:.3f} / "
                   f"{r['blockiness_pillow']:.3f} / {r['blockiness_torch']:.3f} | "
                   f"{r['blockiness_torch'] / r['blockiness_pillow']:.3f} |")
    worst = min(rows, key=lambda r: r["psnr_torch_vs_pillow"])
    ratios = [r["blockiness_torch"] / r["blockiness_pillow"] for r in rows]
    out.append(f"\nlowest PSNR torch vs Pillow: {worst['psnr_torch_vs_pillow']:.2f} dB ({worst['image']}, q{worst['quality']}); "
               f"blockiness ratio torch/Pillow {min(ratios):.3f}..{max(ratios):.3f}")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", type=int, nargs="+", default=list(QUALITIES))
    ap.add_argument("--images", nargs="+", default=list(IMAGES))
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    rows = measure(args.images, args.qualities)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
