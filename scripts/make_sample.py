"""Write a small sample photo for `make demo`: scikit-image's bundled "astronaut", downscaled
x4 with the MATLAB-compatible bicubic so the demo upscales a realistic LR input."""

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from surge.imaging.bicubic import imresize


def main(out: str) -> None:
    hr = np.asarray(data.astronaut())  # 512x512 RGB, ships with scikit-image
    lr = imresize(hr, scale=0.25)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(lr).save(out)
    print(f"sample LR image ({lr.shape[1]}x{lr.shape[0]}) written to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".demo/sample.png")
