"""argparse ``type=`` converters shared by the commands: one wording for every bound, so 0 and -5
get the same message (issue 22) and ``surge upscale`` and ``surge serve`` cannot drift apart."""

from __future__ import annotations

import argparse

from surge.inference.limits import parse_size


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def non_negative(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_number(text: str) -> float:
    """A finite number > 0 (a scale, megabytes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def quality(text: str) -> int:
    value = integer(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 100, got {value}")
    return value


def tile_size(text: str) -> int | str | None:
    """``auto``, 0 (no tiling: None) or a tile side in LR pixels."""
    if text == "auto":
        return "auto"
    return non_negative(text) or None


def memory_size(text: str) -> int | str:
    """``auto`` or a size such as 4G, 512M or a number of bytes."""
    if text == "auto":
        return "auto"
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_limit_arguments(p: argparse.ArgumentParser, max_pixels: int, memory_available: str) -> None:
    """The three per-file bounds of :mod:`surge.inference.limits`, checked from the header before
    decoding: input pixels (default ``max_pixels``), output pixels, estimated peak memory (default 3/4
    of the RAM available ``memory_available``, e.g. "at start")."""
    from surge.inference.limits import BYTES_PER_INPUT_PIXEL_X4, DEFAULT_MAX_OUTPUT_PIXELS

    p.add_argument("--max-pixels", default=max_pixels, type=positive, metavar="N",
                   help="refuse inputs with more pixels, all frames together, checked from the header before "
                        "decoding (default: %(default)s)")
    p.add_argument("--max-output-pixels", default=DEFAULT_MAX_OUTPUT_PIXELS, type=positive, metavar="N",
                   help="refuse inputs whose output would have more pixels (default: %(default)s, above which "
                        "Pillow refuses to open an image)")
    p.add_argument("--max-memory", default="auto", type=memory_size, metavar="SIZE|auto",
                   help="refuse inputs whose estimated peak memory is larger, e.g. 4G (default: auto = 3/4 of the "
                        f"RAM available {memory_available}; about {1e9 / BYTES_PER_INPUT_PIXEL_X4 / 1e6:.0f} MP of "
                        "8-bit input per GB at x4, plus the tiles' working set)")
