"""Refusing untrained models where their output would be taken for a result.

An architecture preset (``surge``, ``surge-small``...) loads with random weights: fine for
`surge info` and speed tests, but `surge upscale` would write noise and `surge eval` would
report scores of noise, both with exit 0.
"""

from __future__ import annotations

import argparse

from surge.errors import SurgeError


class UntrainedModelError(SurgeError):
    """An untrained architecture preset was asked to produce images or scores."""


def add_allow_untrained(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-untrained", action="store_true",
                   help="run an architecture preset anyway (random weights: noise, for speed or plumbing tests)")


def refuse_untrained(model, allowed: bool) -> None:
    """Raise UntrainedModelError unless ``model`` is trained or ``allowed`` (--allow-untrained)."""
    if model is not None and not getattr(model, "trained", True) and not allowed:
        raise UntrainedModelError(
            f"{model.name}: is an untrained architecture preset (random weights: its output is noise); "
            "use a trained model (`surge models`) or pass --allow-untrained"
        )
