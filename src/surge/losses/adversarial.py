"""WGAN-GP adversarial losses (Gulrajani et al. 2017), as the SuRGe paper states.

The reference release trains the critic on the gradient penalty alone and the generator with
BCE-with-logits (known defects 2 and 3 in docs/surge-method.md); these are the Wasserstein terms
the paper describes instead.

Critics map a batch (B, C, H, W) to scores of shape (B,) (``surge.models.Critic``); a (B, 1) output
works too, since every expectation here is a plain mean. Scores are cast to float32 (float64 stays
float64) before any mean or difference: under bf16 autocast a critic's raw scores sit on a grid of
~1/256 of their magnitude, coarser than the gap between real and fake scores early in training.
"""

from __future__ import annotations

import torch
from torch import nn

# Added under the square root of the gradient norm: ||g|| = sqrt(sum g^2 + eps). The exact norm
# has an undefined (NaN) derivative at g = 0, which a critic with a flat region reaches; the
# penalty's value moves by at most sqrt(eps) = 1e-6.
_NORM_EPS = 1e-12


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or float64 if it already is (autocast's bf16/fp16 are too coarse here)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    mix: torch.Tensor | None = None,
) -> torch.Tensor:
    """``E[(||grad_x D(x_hat)||_2 - 1)^2]`` with ``x_hat = eps*real + (1-eps)*fake``.

    ``eps ~ U[0, 1]`` is drawn per sample (shape (B, 1, 1, 1)) unless ``mix`` gives it (for
    reproducible tests). The gradient norm is taken per sample over all of C, H, W. ``fake`` is
    detached: the penalty trains the critic only. The result keeps its graph
    (``create_graph=True``), so ``backward`` reaches the critic's parameters through the gradient.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    real = real.detach()
    fake = fake.detach()
    if mix is None:
        mix = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), dtype=real.dtype, device=real.device)
    x_hat = (mix * real + (1 - mix) * fake).requires_grad_(True)
    scores = _at_least_fp32(critic(x_hat))
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norm = torch.sqrt(_at_least_fp32(grad).flatten(1).pow(2).sum(dim=1) + _NORM_EPS)
    return (norm - 1).pow(2).mean()


def critic_loss(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    gp_weight: float = 10.0,
    mix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """WGAN-GP critic loss ``E[D(fake)] - E[D(real)] + gp_weight * GP`` (minimised by the critic).

    ``mix``: the penalty's per-sample eps, shape (B, 1, 1, 1) (drawn by :func:`gradient_penalty`
    when None). The loss and ``stats`` are at least float32 whatever the critic's autocast dtype.

    ``fake`` is detached, so calling ``backward`` on the result never touches the generator.
    Returns ``(loss, stats)``; ``stats`` holds detached 0-d tensors (call ``float()`` to log them;
    kept as tensors so that a training step needs no device sync for them):
    ``wasserstein`` = ``E[D(real)] - E[D(fake)]`` (the critic's estimate of the W1 distance),
    ``gp`` (unweighted penalty), ``d_real`` and ``d_fake`` (mean scores).
    """
    fake = fake.detach()
    d_real = _at_least_fp32(critic(real)).mean()
    d_fake = _at_least_fp32(critic(fake)).mean()
    loss = d_fake - d_real
    gp = None
    if gp_weight:
        gp = gradient_penalty(critic, real, fake, mix)
        loss = loss + gp_weight * gp
    stats = {
        "wasserstein": (d_real - d_fake).detach(),
        "gp": gp.detach() if gp is not None else torch.zeros((), dtype=loss.dtype, device=loss.device),
        "d_real": d_real.detach(),
        "d_fake": d_fake.detach(),
    }
    return loss, stats


def generator_adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein generator term ``-E[D(fake)]`` (``fake`` not detached: it trains G).

    Only the generator's optimiser should step on it; the critic's parameters do receive
    gradients, so zero them (or freeze the critic) before the critic's own step.
    """
    return -_at_least_fp32(critic(fake)).mean()
