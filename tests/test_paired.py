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


# --- issue 22: hostile and mismatched inputs -----------------------------------------------


def test_diff_refuses_evaluations_made_with_different_protocols(tmp_path, capsys):
    """Bicubic against itself scored with another crop read as a significant -0.30 dB."""
    rng = np.random.default_rng(2)
    base = rng.normal(26, 2, 12)
    a = _json(tmp_path / "a.json", [_set(base, "Set14")])
    cropped = _set(base - 0.3, "Set14")
    cropped.crop = 8
    b = _json(tmp_path / "b.json", [cropped])
    assert main(["diff", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crop" in err and "4" in err and "8" in err
    other_y = _set(base - 0.3, "Set14")
    other_y.y_convention = "float"
    c = _json(tmp_path / "c.json", [other_y])
    assert main(["diff", str(a), str(c)]) == 2
    assert "y_convention" in capsys.readouterr().err


def test_an_interval_needs_enough_images_to_be_called_significant(tmp_path, capsys):
    """One image gave a zero-width interval marked significant."""
    from surge.evaluation.paired import MIN_INTERVAL_IMAGES

    one = paired_difference(_set([25.0]), _set([25.5]))
    assert one.images == 1 and not one.significant
    assert np.isnan(one.ci_low) and np.isnan(one.ci_high)
    few = paired_difference(_set(np.arange(MIN_INTERVAL_IMAGES - 1) + 20.0), _set(np.arange(MIN_INTERVAL_IMAGES - 1) + 21.0))
    assert not few.significant
    enough = paired_difference(_set(np.linspace(20, 30, MIN_INTERVAL_IMAGES)), _set(np.linspace(20, 30, MIN_INTERVAL_IMAGES) + 1))
    assert enough.significant
    a = _json(tmp_path / "a.json", [_set([25.0], "Set5")])
    b = _json(tmp_path / "b.json", [_set([25.5], "Set5")])
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| Set5"))
    assert " * " not in row and "n/a" in row
    assert f"at least {MIN_INTERVAL_IMAGES} images" in out


def _raw(path, per_image, **fields):
    entry = {"per_image": per_image, "model": "m", "crop": 4, "y_convention": "matlab", **fields}
    path.write_text(json.dumps({"Set5": entry}).replace('"NaN_"', "NaN").replace('"Inf_"', "Infinity"))
    return path


def test_diff_validates_per_image_values(tmp_path, capsys):
    """`true` was read as 1.0; NaN, inf and null images were dropped without a word."""
    good = {f"i{k}": {"psnr_y": 25.0 + k, "ssim_y": 0.7} for k in range(5)}
    a = _raw(tmp_path / "a.json", good)
    for bad, word in ((True, "true"), ("25", "'25'"), ("NaN_", "nan")):
        b = _raw(tmp_path / "b.json", {**good, "i2": {"psnr_y": bad, "ssim_y": 0.7}})
        assert main(["diff", str(a), str(b)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "i2" in err and "psnr_y" in err and word in err.lower(), err
    # null in ssim_y is not a number either (only PSNR may be infinite)
    b = _raw(tmp_path / "b.json", {**good, "i2": {"psnr_y": 26.0, "ssim_y": None}})
    assert main(["diff", str(a), str(b), "--metrics", "ssim_y"]) == 2
    assert "ssim_y" in capsys.readouterr().err


def test_an_infinite_psnr_is_kept_not_dropped(tmp_path, capsys):
    """An SR identical to HR has PSNR inf (null in the JSON): a legitimate score."""
    good = {f"i{k}": {"psnr_y": 25.0 + k, "ssim_y": 0.7} for k in range(6)}
    a = _raw(tmp_path / "a.json", {**good, "i0": {"psnr_y": None, "ssim_y": 1.0}})
    b = _raw(tmp_path / "b.json", {**good, "i0": {"psnr_y": "Inf_", "ssim_y": 1.0}})
    assert main(["diff", str(a), str(b)]) == 0  # both inf: equal, counted
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| Set5"))
    assert "| 6 |" in row
    c = _raw(tmp_path / "c.json", good)
    assert main(["diff", str(c), str(a)]) == 2  # finite vs inf: no finite mean difference; said, not dropped
    err = capsys.readouterr().err
    assert "i0" in err and "inf" in err.lower()


def test_diff_messages_for_empty_files_and_unmeasured_metrics(tmp_path, capsys):
    empty = tmp_path / "e.json"
    empty.write_text("{}")
    assert main(["diff", str(empty), str(empty)]) == 2
    err = capsys.readouterr().err
    assert "got dict" not in err and "no results" in err
    listed = tmp_path / "l.json"
    listed.write_text("[1]")
    assert main(["diff", str(listed), str(listed)]) == 2
    assert "JSON array" in capsys.readouterr().err
    a = _json(tmp_path / "a.json", [_set(np.arange(6) + 20.0, "Set5")])
    for metric, advice in (("psnr_rgb", "surge eval --rgb"), ("vif", "surge eval --metrics psnr ssim vif")):
        assert main(["diff", str(a), str(a), "--metrics", metric]) == 2
        err = capsys.readouterr().err
        assert advice in err and f"--metrics {metric}" not in err, err
