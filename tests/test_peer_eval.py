"""benchmarks/peer_eval.py and model_speed.py: a peer's released weights measured with the project's code."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from script_loader import load_script
from surge.evaluation import metrics
from surge.imaging.bicubic import imresize

peers = load_script("benchmarks/peers.py")
peer_eval = load_script("benchmarks/peer_eval.py")


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    net = peers.SRVGGNetCompact()
    path = tmp_path / "peer.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "Tiny" / "HR").mkdir(parents=True)
    for stem in ("a", "b"):
        small = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
        Image.fromarray(np.asarray(Image.fromarray(small).resize((72, 64), Image.BICUBIC))).save(tmp_path / "data" / "Tiny" / "HR" / f"{stem}.png")
    return tmp_path / "data"


def test_released_key_layout_loads_strictly(weights, tmp_path):
    state = peer_eval.load_peer(weights).state_dict()
    assert "body.0.weight" in state and "body.66.bias" in state and len(state) == 2 + 32 * 3 + 1 + 2
    bad = tmp_path / "bad.safetensors"
    save_file({"body.0.weight": torch.zeros(64, 3, 3, 3)}, str(bad))
    with pytest.raises(RuntimeError, match="Missing key"):
        peer_eval.load_peer(bad)


def test_scores_are_the_project_metrics_of_the_peer_output(weights, data, tmp_path):
    out = tmp_path / "scores.json"
    assert peer_eval.main([str(weights), "--data", str(data), "--sets", "Tiny", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())["Tiny"]
    assert scores["images"] == 2 and scores["model"] == "realesr-general-x4v3" and scores["params"] == 1_213_296
    net = peer_eval.load_peer(weights)
    hr = np.asarray(Image.open(data / "Tiny" / "HR" / "a.png"))
    lr = imresize(hr, 0.25)
    with torch.inference_mode():
        sr = net(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)[0].clamp(0, 1)
    sr = np.floor(sr.permute(1, 2, 0).numpy().astype(np.float64) * 255 + 0.5).astype(np.uint8)
    psnr, ssim = metrics.psnr_ssim_y(sr, hr, 4)
    assert scores["per_image"]["a"]["psnr_y"] == pytest.approx(psnr, abs=1e-9)
    assert scores["per_image"]["a"]["ssim_y"] == pytest.approx(ssim, abs=1e-9)


def test_photo_output_is_x4_and_written_whole(weights, tmp_path):
    photo = tmp_path / "in.jpg"
    Image.fromarray(np.full((10, 12, 3), 128, np.uint8)).save(photo)
    out = tmp_path / "out.png"
    assert peer_eval.main([str(weights), "--photo", str(photo), "--photo-out", str(out)]) == 0
    assert Image.open(out).size == (48, 40) and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_speed_table_counts_the_peer_flops_by_hand(weights, tmp_path, capsys):
    speed = load_script("benchmarks/model_speed.py")
    out = tmp_path / "speed.json"
    assert speed.main(["--models", "bicubic", "--peer", str(weights), "--lr-size", "8", "--repeats", "1", "--json", str(out)]) == 0
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    # Multiply-adds per LR pixel, by hand: 3->64 conv 1,728 + 32 x 64->64 36,864 + 64->48 27,648 (PReLU, shuffle uncounted).
    assert rows["peer"]["mflop_per_lr_px"] == pytest.approx(2 * (1_728 + 32 * 36_864 + 27_648) / 1e6)
    assert rows["peer"]["params"] == 1_213_296 and rows["bicubic"]["params"] == 0
    assert all(r["s_per_mp"] > 0 for r in rows.values())
    assert "| peer | 1,213,296 | 2.4 |" in capsys.readouterr().out
