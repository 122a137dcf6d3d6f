"""Paired comparison of two models on the same images (surge.evaluation.paired, `surge diff`)."""

import json

import numpy as np
import pytest

from surge.cli.main import main
from surge.errors import DatasetError
from surge.evaluation.paired import paired_difference
from surge.evaluation.runner import ImageResult, SetResult


def _set(values, name="Set14", model="m", niqe=None):
    per_image = {f"img{i}": ImageResult(psnr_y=float(v), ssim_y=0.5, seconds=0.0, niqe=None if niqe is None else float(niqe[i]))
                 for i, v in enumerate(values)}
    return SetResult(name=name, model=model, per_image=per_image)


def test_a_constant_gain_has_a_zero_width_interval():
    a = np.linspace(20, 30, 12)
    r = paired_difference(_set(a), _set(a + 0.5))
    assert r.mean_diff == pytest.approx(0.5) and r.ci_low == pytest.approx(0.5) and r.ci_high == pytest.approx(0.5)
    assert (r.better, r.worse, r.images) == (12, 0, 12) and r.significant and r.wilcoxon_p < 0.001


def test_the_interval_covers_a_known_mean_and_zero_when_there_is_no_effect():
    rng = np.random.default_rng(0)
    a = rng.normal(26, 2, 100)
    gain = paired_difference(_set(a), _set(a + rng.normal(0.3, 0.1, 100)))
    assert gain.ci_low < 0.3 < gain.ci_high and gain.ci_low > 0.25 and gain.significant
    noise = paired_difference(_set(a), _set(a + rng.normal(0.0, 1.0, 30)[np.arange(100) % 30]))
    assert noise.ci_low < 0 < noise.ci_high and not noise.significant and noise.wilcoxon_p > 0.05
    # A higher level gives a wider interval; the seed makes it reproducible.
    b = _set(a + rng.normal(0.3, 0.5, 100))
    narrow, wide = paired_difference(_set(a), b), paired_difference(_set(a), b, level=0.99)
    assert wide.ci_low < narrow.ci_low and wide.ci_high > narrow.ci_high
    assert paired_difference(_set(a), b) == narrow and paired_difference(_set(a), b, seed=1) != narrow


def test_lower_is_better_for_niqe_and_unscored_metrics_are_an_error():
    a = _set([25, 26, 27], niqe=[7, 8, 9])
    b = _set([25, 26, 27], niqe=[6, 8.5, 8])
    r = paired_difference(a, b, "niqe")
    assert (r.better, r.worse) == (2, 1) and r.mean_diff == pytest.approx((-1 + 0.5 - 1) / 3)
    with pytest.raises(DatasetError, match="no image has vif"):
        paired_difference(a, b, "vif")


def test_only_common_images_are_compared():
    a, b = _set([20, 21, 22, 23]), _set([21, 22, 23])
    r = paired_difference(a, b)
    assert r.images == 3 and r.only_in_one == 1 and r.mean_diff == pytest.approx(1.0)


def _json(path, sets):
    path.write_text(json.dumps({s.name: s.to_dict() for s in sets}))
    return path


def test_cli_prints_the_table_and_refuses_what_it_cannot_compare(tmp_path, capsys):
    rng = np.random.default_rng(1)
    base = rng.normal(26, 2, 20)
    a = _json(tmp_path / "a.json", [_set(base[:5], "Set5", "last"), _set(base, "BSD100", "last")])
    b = _json(tmp_path / "b.json", [_set(base[:5] + 1, "Set5", "last"), _set(base + 0.2, "BSD100", "last")])
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| Set5") or line.startswith("| BSD100")]
    assert len(rows) == 2 and f"| {tmp_path.name}/a | {tmp_path.name}/b |" in out  # both are "last": the files name them
    assert "+1.00 | [+1.00, +1.00] * | 5 / 0" in rows[0] and "+0.20 |" in rows[1]
    assert "Set5: fewer than 10 images" in out
    assert main(["diff", str(a), str(b), "--sets", "Set14"]) == 2
    assert "no results for set Set14" in capsys.readouterr().err
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"x": {"Set5": _set(base[:5]).to_dict()}, "y": {"Set5": _set(base[:5]).to_dict()}}))
    assert main(["diff", str(both), str(b)]) == 2
    assert "holds 2 models (x, y)" in capsys.readouterr().err
