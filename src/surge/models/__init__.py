"""Architectures (pure ``nn.Module``s), their configs, model files and the catalogue of model names
(``registry``). Nothing here imports ``surge.inference``: the runnable model is
:class:`surge.inference.runtime.SRModel`."""

from surge.models.config import GENERATOR_PRESETS, CriticConfig, GeneratorConfig
from surge.models.critic import Critic
from surge.models.generator import SuRGeGenerator

__all__ = ["GENERATOR_PRESETS", "Critic", "CriticConfig", "GeneratorConfig", "SuRGeGenerator"]
