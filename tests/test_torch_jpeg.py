"""Torch JPEG simulation (surge.data.torch_jpeg) against Pillow/libjpeg on natural images."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from surge.data.torch_jpeg import blockiness, jpeg, jpeg_levels, quant_tables, quality_scaling, LUMA_TABLE


def pillow_jpeg(img, quality):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def torch_jpeg(img, quality):
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    return jpeg_levels(x, torch.tensor([quality]))[0].permute(1, 2, 0).to(torch.uint8).numpy()


def psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@pytest.fixture(scope="module")
def natural():
    from skimage import data

    # Odd sizes on purpose: the MCU padding (16 px) and the crop back are exercised.
    return {name: np.ascontiguousarray(getattr(data, name)()[:203, :237]) for name in ("astronaut", "chelsea", "coffee")}


def test_quant_tables_follow_ijg_scaling():
    assert [quality_scaling(q) for q in (1, 10, 49, 50, 75, 95, 100)] == [5000, 500, 102, 100, 50, 10, 0]
    luma, chroma = quant_tables(torch.tensor([50, 75, 100, 1]))
    assert luma[0].flatten().tolist() == list(LUMA_TABLE)  # quality 50 = the Annex K table
    assert luma[1, 0, 0] == 8 and chroma[1, 0, 0] == 9  # (16*50+50)//100, (17*50+50)//100
    assert int(luma[2].max()) == 1 and int(chroma[3].min()) == 255  # clamped to 1..255 (baseline)


# Measured by benchmarks/jpeg_vs_pillow.py (docs/results/device-data.md): 43.7-47.6 dB on the full
# images, blockiness ratio torch/Pillow 1.001-1.005. Bounds: 1.5 dB below the lowest, ratio within 2%.
@pytest.mark.parametrize("quality", [30, 45, 60, 75, 90, 95])
def test_matches_pillow(natural, quality):
    for name, img in natural.items():
        p, t = pillow_jpeg(img, quality), torch_jpeg(img, quality)
        assert psnr(t, p) > 42.0, (name, quality, psnr(t, p))
        # The simulation damages the image as much as libjpeg does, not less (an identity would pass PSNR > 30).
        assert abs(psnr(t, img) - psnr(p, img)) < 0.25, (name, quality)
        ratio = blockiness(t) / blockiness(p)
        assert 0.98 < ratio < 1.02, (name, quality, ratio)


def test_blockiness_sees_jpeg_blocks(natural):
    img = natural["coffee"]
    assert blockiness(torch_jpeg(img, 30)) > blockiness(img) + 0.2


def test_per_sample_quality_in_a_batch(natural):
    imgs = [natural[n][:96, :96] for n in ("astronaut", "chelsea", "coffee")]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    q = torch.tensor([30, 60, 95])
    out = jpeg(x, q)
    for i in range(3):
        alone = jpeg(x[i : i + 1], q[i : i + 1])
        assert torch.equal(out[i], alone[0])
    assert torch.equal(out * 255, torch.round(out * 255))  # on the 8-bit grid
    errors = [float((out[i] - x[i]).abs().mean()) for i in range(3)]
    assert errors[0] > errors[1] > errors[2]  # lower quality, more damage


def test_rejects_non_rgb():
    with pytest.raises(ValueError, match="B, 3, H, W"):
        jpeg_levels(torch.zeros(1, 1, 8, 8), torch.tensor([50]))
