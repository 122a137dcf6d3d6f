"""One resource budget per file (issue 22, point 12): input pixels, output pixels and memory."""

from __future__ import annotations

import pytest

from surge.inference.limits import (
    BYTES_PER_INPUT_PIXEL_X4, DEFAULT_MAX_OUTPUT_PIXELS, LimitError, Limits, estimate_peak_bytes, parse_size,
)


def test_the_declared_bomb_is_refused_by_the_output_bound():
    # 9000x9000 is under the 100 MP input default, but its x4 output is 1.3 GP.
    with pytest.raises(LimitError, match=r"bomb\.png: the output would be 36000x36000 = 1,296,000,000 pixels"):
        Limits().check("bomb.png", 9000, 9000)
    with pytest.raises(LimitError, match=r"16000x12000 = 192,000,000 pixels, over the limit of 178,956,970"):
        Limits().check("tiny.png", 16, 12, outscale=1000)
    assert Limits().check("tiny.png", 16, 12, outscale=100).output_size == (1600, 1200)


def test_input_bound_counts_frames_and_memory_bound_uses_the_estimate():
    with pytest.raises(LimitError, match=r"anim\.gif: 10 frames of 1000x100 = 1000000 pixels exceeds the limit of 999999 \(max_pixels\)"):
        Limits(max_input_pixels=999_999).check("anim.gif", 1000, 100, frames=10)
    need = estimate_peak_bytes(2000, 1500)
    assert need == 2000 * 1500 * BYTES_PER_INPUT_PIXEL_X4
    assert Limits(max_memory=need).check("a.png", 2000, 1500).peak_bytes == need
    with pytest.raises(LimitError, match=r"a\.png: 2000x1500 -> 8000x6000 needs about 369 MB of memory, over the limit of 369 MB"):
        Limits(max_memory=need - 1).check("a.png", 2000, 1500)
    # The tiles' working set counts; bounds switched off with None.
    with pytest.raises(LimitError):
        Limits(max_memory=need, tile_bytes=1).check("a.png", 2000, 1500)
    Limits(max_input_pixels=None, max_output_pixels=None, max_memory=None).check("big.png", 9000, 9000)


def test_estimate_grows_with_depth_alpha_frames_and_a_resize():
    base = estimate_peak_bytes(100, 100)
    assert estimate_peak_bytes(100, 100, sample_bytes=2) > base
    assert estimate_peak_bytes(100, 100, channels=4) > estimate_peak_bytes(100, 100, channels=3) > 0
    assert estimate_peak_bytes(100, 100, frames=3) > base
    assert estimate_peak_bytes(100, 100, out_size=(200, 200)) != base
    assert DEFAULT_MAX_OUTPUT_PIXELS == 178_956_970


def test_default_memory_comes_from_the_available_ram():
    limits = Limits.default()
    assert limits.max_memory and limits.max_memory > 0
    assert Limits.default(max_memory=123).max_memory == 123
    assert 7 < Limits().per_gigabyte() < 9  # input MP of an 8-bit RGB still at x4 per GB (README)


@pytest.mark.parametrize("text,value", [("4G", 4 << 30), ("512M", 512 << 20), ("2.5GB", int(2.5 * (1 << 30))),
                                        ("1GiB", 1 << 30), ("1000", 1000)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "G", "-1G", "0", "nanG", "four"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)
