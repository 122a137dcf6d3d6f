"""What an architecture tells the inference optimiser about itself.

:mod:`surge.inference.optimize` knows rewrites (sub-pixel convs, reduced precision with an
fp32 interface), not architectures: a network opts in by defining
``inference_hints() -> InferenceHints`` naming its own submodules. A network without the
method gets only the rewrites found from its traced data flow (BatchNorm folding) and is
cast whole for reduced precision.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InferenceHints:
    """Submodule paths (as in ``named_modules``) with the properties each rewrite needs.

    ``subpixel_pairs``: (upsample, conv) where the upsample is an
    :class:`~surge.models.generator.Upsample2x` (conv -> nearest x2 -> per-channel
    activation) and every use of its output is read by that conv, and nothing else reads
    it. The pair may then run as a low-resolution conv followed by ``pixel_shuffle``.

    ``input_modules``: the modules that read the network's (fp32) input; in reduced
    precision they get the input cast on entry.
    ``fp32_modules``: modules kept in fp32 in reduced precision (their input is cast up);
    whatever ``forward`` computes from their output and from the input outside the
    listed modules then stays fp32 as well.
    ``fp32_parameters``: parameters kept in fp32 (e.g. mixing logits fed to a softmax).
    """

    subpixel_pairs: tuple[tuple[str, str], ...] = ()
    input_modules: tuple[str, ...] = ()
    fp32_modules: tuple[str, ...] = ()
    fp32_parameters: tuple[str, ...] = ()
