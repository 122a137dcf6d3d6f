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

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "niqe", "vif")
LOWER_IS_BETTER = frozenset({"niqe"})


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
        """The interval excludes zero."""
        return self.ci_low > 0 or self.ci_high < 0


def paired_difference(a: SetResult, b: SetResult, metric: str = "psnr_y", level: float = 0.95,
                      resamples: int = 10_000, seed: int = 0) -> PairedDifference:
    """Compare ``b`` against ``a`` on ``metric`` over their common images (see the module docstring)."""
    from scipy import stats

    if metric not in METRICS:
        raise DatasetError(f"unknown metric {metric!r} (use one of {', '.join(METRICS)})")
    common = [name for name in a.per_image if name in b.per_image]
    pairs = [(getattr(a.per_image[n], metric), getattr(b.per_image[n], metric)) for n in common]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    if not pairs:
        raise DatasetError(f"{a.name}: no image has {metric} for both models (evaluate with --metrics {metric})")
    xa, xb = np.array(pairs, dtype=np.float64).T
    diff = xb - xa
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    if len(diff) < 2 or np.ptp(diff) == 0:
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
    lines = [
        f"| set | metric | images | {name_a} | {name_b} | difference | {level} interval | {name_b} better / worse | Wilcoxon p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        digits = 4 if r.metric in ("ssim_y", "vif") else 2 if r.metric != "niqe" else 3
        note = f" ({r.only_in_one} image(s) not in both, left out)" if r.only_in_one else ""
        lines.append(
            f"| {r.set_name}{note} | {r.metric} | {r.images} | {r.mean_a:.{digits}f} | {r.mean_b:.{digits}f} | "
            f"{r.mean_diff:+.{digits}f} | [{r.ci_low:+.{digits}f}, {r.ci_high:+.{digits}f}]{' *' if r.significant else ''} | "
            f"{r.better} / {r.worse} | {r.wilcoxon_p:.2g} |"
        )
    return "\n".join(lines)
