"""Benchmark evaluation with the super-resolution papers' protocol (MATLAB conventions).

* :mod:`~surge.evaluation.metrics` -- PSNR-Y / SSIM-Y (BT.601 Y, border crop, Wang's SSIM);
* :mod:`~surge.evaluation.perceptual` -- NIQE (no reference, MATLAB release) and VIF
  (``surge eval --metrics niqe vif``);
* :mod:`~surge.evaluation.datasets` -- finding and checking (LR, HR) pairs on disk;
* :mod:`~surge.evaluation.runner` -- :func:`evaluate_set` / :func:`evaluate` (the API the
  trainer's validation calls) and ``surge eval``;
* :mod:`~surge.evaluation.reference` -- published results of reference models;
* :mod:`~surge.evaluation.report` -- markdown tables and crop figures (``surge compare``).
"""

from surge.evaluation.metrics import psnr_rgb, psnr_y, rgb_to_y, ssim_y
from surge.evaluation.runner import SetResult, evaluate, evaluate_set

__all__ = ["SetResult", "evaluate", "evaluate_set", "psnr_rgb", "psnr_y", "rgb_to_y", "ssim_y"]
