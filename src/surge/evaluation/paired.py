"""Paired comparison of two models scored on the same images (``surge diff``).

A benchmark mean moves with the images that happen to be in the set: Set5 has five. Because
both models see the same images, the question "is B better than A here?" is answered by the
per-image differences B - A: their mean, a bootstrap confidence interval of that mean (BCa,
``scipy.stats.bootstrap``; resampling images, not pixels), how many images improved, and the
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``), which assumes nothing about the shape of
the differences. The interval says how far the mean difference could move had other images of
the same kind been drawn; it says nothing about training noise (seeds), which needs reruns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surge.errors import DatasetError
from surge.evaluation.runner import SetResult
from surge.safetext import printable

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "niqe", "vif")
LOWER_IS_BETTER = frozenset({"niqe"})
# Below this many images a bootstrap interval is not computed: with one image it has zero width
# and every difference would look significant; with five it is rough but usable (Set5).
MIN_INTERVAL_IMAGES = 5
# How `surge eval` is asked to measure each metric.
_EVAL_FLAGS = {"psnr_y": "surge eval (always measured)", "ssim_y": "surge eval (always measured)",
               "psnr_rgb": "surge eval --rgb", "niqe": "surge eval --metrics psnr ssim niqe",
               "vif": "surge eval --metrics psnr ssim vif"}
# What must be equal for two evaluations' scores to be comparable.
PROTOCOL_FIELDS = ("crop", "y_convention", "lr_source")


def protocol_mismatch(a: SetResult, b: SetResult) -> str | None:
    """``"crop 4 vs 8"`` if ``a`` and ``b`` were measured under different protocols, else None."""
    differ = [f"{key} {getattr(a, key)} vs {getattr(b, key)}" for key in PROTOCOL_FIELDS if getattr(a, key) != getattr(b, key)]
    return ", ".join(differ) or None


@dataclass(frozen=True)
class PairedDifference:
    """B - A over the images both were scored on (``better``: images where B is better)."""

    set_name: str
    metric: str
    images: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    level: float
    better: int
    worse: int
    wilcoxon_p: float
    only_in_one: int  # images scored for one model but not the other (left out)

    @property
    def significant(self) -> bool:
        """The interval excludes zero (never without an interval: fewer than MIN_INTERVAL_IMAGES)."""
        return self.ci_low > 0 or self.ci_high < 0


def paired_difference(a: SetResult, b: SetResult, metric: str = "psnr_y", level: float = 0.95,
                      resamples: int = 10_000, seed: int = 0) -> PairedDifference:
    """Compare ``b`` against ``a`` on ``metric`` over their common images (see the module docstring)."""
    from scipy import stats

    if metric not in METRICS:
        raise DatasetError(f"unknown metric {metric!r} (use one of {', '.join(METRICS)})")
    common = [name for name in a.per_image if name in b.per_image]
    scored = {n: (getattr(a.per_image[n], metric), getattr(b.per_image[n], metric)) for n in common}
    scored = {n: (x, y) for n, (x, y) in scored.items() if x is not None and y is not None}
    if not scored:
        raise DatasetError(f"{a.name}: no image has {metric} for both models (measure it with {_EVAL_FLAGS[metric]})")
    pairs = []
    for name, (x, y) in scored.items():
        if math.isnan(x) or math.isnan(y):
            raise DatasetError(f"{a.name}: image {name}: {metric} is NaN; re-evaluate it")
        if math.isinf(x) or math.isinf(y):
            if x != y:  # an SR identical to HR for one model only: no finite mean difference
                raise DatasetError(f"{a.name}: image {name}: {metric} is {x} for A and {y} for B (an SR identical to its HR); "
                                   "the mean difference would be infinite: compare another metric, or leave the image out")
            x = y = 0.0  # both identical to HR: no difference
        pairs.append((x, y))
    xa, xb = np.array(pairs, dtype=np.float64).T
    diff = xb - xa
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    if len(diff) < MIN_INTERVAL_IMAGES:
        low = high = math.nan  # too few images to say how far the mean could move
    elif np.ptp(diff) == 0:
        low = high = float(diff.mean())  # nothing to resample: every resample has this mean
    else:
        ci = stats.bootstrap((diff,), np.mean, confidence_level=level, n_resamples=resamples, method="BCa",
                             random_state=np.random.default_rng(seed)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    nonzero = diff[diff != 0]
    p = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) else 1.0
    return PairedDifference(
        set_name=a.name, metric=metric, images=len(diff), mean_a=float(xa.mean()), mean_b=float(xb.mean()),
        mean_diff=float(diff.mean()), ci_low=low, ci_high=high, level=level,
        better=int((sign * diff > 0).sum()), worse=int((sign * diff < 0).sum()), wilcoxon_p=p,
        only_in_one=len(set(a.per_image) ^ set(b.per_image)),
    )


def format_paired_table(rows: list[PairedDifference], name_a: str, name_b: str) -> str:
    """A markdown table of :func:`paired_difference` rows."""
    if not rows:
        return ""
    level = f"{rows[0].level:.0%}"
    name_a, name_b = printable(name_a), printable(name_b)  # names from files: no terminal escapes, no line breaks
    lines = [
        f"| set | metric | images | {name_a} | {name_b} | difference | {level} interval | {name_b} better / worse | Wilcoxon p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        digits = 4 if r.metric in ("ssim_y", "vif") else 2 if r.metric != "niqe" else 3
        note = f" ({r.only_in_one} image(s) not in both, left out)" if r.only_in_one else ""
        lines.append(
            f"| {printable(r.set_name)}{note} | {r.metric} | {r.images} | {r.mean_a:.{digits}f} | {r.mean_b:.{digits}f} | "
            f"{r.mean_diff:+.{digits}f} | {_interval(r, digits)} | "
            f"{r.better} / {r.worse} | {r.wilcoxon_p:.2g} |"
        )
    return "\n".join(lines)


def _interval(r: PairedDifference, digits: int) -> str:
    if math.isnan(r.ci_low):
        return f"n/a (n < {MIN_INTERVAL_IMAGES})"
    return f"[{r.ci_low:+.{digits}f}, {r.ci_high:+.{digits}f}]{' *' if r.significant else ''}"
