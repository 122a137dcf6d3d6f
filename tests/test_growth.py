"""Function-preserving growth of a generator (surge.models.growth, scripts/grow_generator.py)."""

import dataclasses

import pytest
import torch

from surge.errors import SurgeError
from surge.models.config import GENERATOR_PRESETS
from surge.models.files import load_model_file, save_model
from surge.models.generator import SuRGeGenerator
from surge.models.growth import grow_generator

from script_loader import load_script


def trained_like(seed=0) -> SuRGeGenerator:
    """A tiny generator with every weight random (not the near-zero output conv of a fresh one)."""
    torch.manual_seed(seed)
    net = SuRGeGenerator(dataclasses.replace(GENERATOR_PRESETS["surge-tiny"], blocks0=2, blocks1=1))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def test_grown_generator_computes_the_same_function_with_more_blocks():
    net = trained_like()
    grown = grow_generator(net, blocks0=5, blocks1=3)
    assert (grown.config.blocks0, grown.config.blocks1) == (5, 3) and len(grown.R0) == 5 and len(grown.R1) == 3
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in net.parameters())
    x = torch.rand(2, 3, 12, 10)
    with torch.inference_mode():
        torch.testing.assert_close(grown(x), net(x), rtol=0, atol=1e-6)
    for k, v in net.state_dict().items():  # the trained weights are carried over untouched
        assert torch.equal(grown.state_dict()[k], v), k


def test_new_blocks_learn_from_the_first_step():
    grown = grow_generator(trained_like(), blocks0=3, blocks1=1).train()
    grown(torch.rand(1, 3, 8, 8)).square().mean().backward()
    assert grown.R0[2].conv2.weight.grad.abs().sum() > 0  # a zeroed conv2 after a random conv1 gets gradient


def test_growth_refuses_to_shrink_or_to_grow_a_normalised_network():
    with pytest.raises(SurgeError, match="never shrinks"):
        grow_generator(trained_like(), blocks0=1, blocks1=1)
    with pytest.raises(SurgeError, match="norm='batch'"):
        grow_generator(SuRGeGenerator(dataclasses.replace(GENERATOR_PRESETS["surge"], width0=8, width1=8,
                                                          blocks0=1, blocks1=1)), 2, 1)


def _script():
    return load_script("scripts/grow_generator.py")


def test_grow_script_keeps_the_provenance_and_never_overwrites(tmp_path, capsys):
    source = save_model(trained_like(), tmp_path / "small.safetensors", {"experiment": "run-a", "steps": 7})
    out = tmp_path / "grown.safetensors"
    assert _script().main([str(source), "--blocks0", "4", "-o", str(out)]) == 0
    net, prov = load_model_file(out)
    assert (net.config.blocks0, net.config.blocks1) == (4, 1)
    assert (prov["experiment"], prov["steps"]) == ("run-a", 7)
    assert prov["growth"] == {"from_blocks": [2, 1], "to_blocks": [4, 1], "source": "small.safetensors", "seed": 0}
    before = out.read_bytes()
    assert _script().main([str(source), "--blocks0", "6", "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
