"""Refusing untrained models where their output would be taken for a result.

An architecture preset (``surge``, ``surge-small``...) loads with random weights: fine for
`surge info` and speed tests, but `surge upscale` would write noise and `surge eval` would
report scores of noise, both with exit 0.
"""

from __future__ import annotations

import argparse

from surge.errors import UntrainedModelError
from surge.models.registry import refuse_untrained

__all__ = ["UntrainedModelError", "add_allow_untrained", "refuse_untrained"]


def add_allow_untrained(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-untrained", action="store_true",
                   help="run an architecture preset anyway (random weights: noise, for speed or plumbing tests)")
