"""Loss terms of the SuRGe objective, one small function each (see docs/surge-method.md, Losses).

- :mod:`~surge.losses.adversarial`: WGAN-GP critic loss, gradient penalty, generator term.
- :mod:`~surge.losses.divergence`: Jensen-Shannon (SR vs HR), Gromov-Wasserstein (LR vs SR).
- :mod:`~surge.losses.pixel`: L1, MSE and Charbonnier fidelity.
- :mod:`~surge.losses.combine`: dynamic (paper's or offset/scale-invariant) and fixed combination, :class:`LossConfig`.
"""

from surge.losses.adversarial import critic_loss, generator_adversarial_loss, gradient_penalty
from surge.losses.combine import (
    TERMS,
    LossConfig,
    RunningScale,
    combine_losses,
    dynamic_weights,
    generator_objective,
    invariant_weights,
)
from surge.losses.divergence import JS_MODES, gromov_wasserstein_loss, image_distributions, js_divergence
from surge.losses.pixel import PIXEL_LOSSES, charbonnier_loss, l1_loss, mse_loss

__all__ = [
    "JS_MODES",
    "PIXEL_LOSSES",
    "TERMS",
    "LossConfig",
    "RunningScale",
    "charbonnier_loss",
    "combine_losses",
    "critic_loss",
    "dynamic_weights",
    "generator_adversarial_loss",
    "generator_objective",
    "gradient_penalty",
    "gromov_wasserstein_loss",
    "image_distributions",
    "invariant_weights",
    "js_divergence",
    "l1_loss",
    "mse_loss",
]
