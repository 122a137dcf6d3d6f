"""Architecture, parameter counts, mixing weights and model files."""

import json

import pytest
import torch
from safetensors.torch import save_file

import surge
from surge.errors import ConfigError, ModelFileError
from surge.models import GENERATOR_PRESETS, Critic, CriticConfig, GeneratorConfig, SuRGeGenerator
from surge.models.files import load_model_file, read_metadata, save_model
from surge.inference.info import describe


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_generator_has_the_published_size():
    assert 4_030_000 <= n_params(SuRGeGenerator(GeneratorConfig())) <= 4_060_000


def test_paper_generator_structure():
    g = SuRGeGenerator()
    assert g.C0[0].kernel_size == (9, 9) and g.C0[0].out_channels == 64
    assert len(g.R0) == 8 and len(g.R1) == 8
    assert isinstance(g.I0[1], torch.nn.BatchNorm2d) and isinstance(g.I1[1], torch.nn.BatchNorm2d)
    assert g.C1[0].out_channels == 128 and g.C1[0].kernel_size == (9, 9)
    assert g.out.kernel_size == (9, 9) and g.out.out_channels == 3
    assert all(isinstance(m, torch.nn.PReLU) for m in (g.C0[1], g.C1[1], g.U0.act, g.U1.act))


def test_mixing_weights_start_at_spec_values_and_are_convex():
    g = SuRGeGenerator()
    w = g.mixing_weights()
    assert w["F0 (mu*I0, nu*C0)"] == [0.5, 0.5]
    assert w["F1 (alpha*I1, beta*X, gamma*S)"] == [0.33, 0.33, 0.34]
    with torch.no_grad():
        g.F1.logits.add_(torch.tensor([3.0, -1.0, 0.5]))
    f1 = g.F1.weights()
    assert torch.all(f1 > 0) and torch.isclose(f1.sum(), torch.tensor(1.0))


def test_mixing_weights_are_learned():
    g = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"])
    x = torch.rand(2, 3, 8, 8)
    g(x).mean().backward()
    assert g.F0.logits.grad is not None and g.F0.logits.grad.abs().sum() > 0
    assert g.F1.logits.grad is not None and g.F1.logits.grad.abs().sum() > 0


def test_sum_mixing_is_plain_addition():
    cfg = GeneratorConfig(width0=4, width1=4, blocks0=1, blocks1=1, head_kernel=3, mixing="sum")
    g = SuRGeGenerator(cfg)
    assert g.F1.weights().tolist() == [1.0, 1.0, 1.0]
    assert not g.F1.logits.requires_grad


@pytest.mark.parametrize("preset", list(GENERATOR_PRESETS))
def test_generator_output_shape_any_size(preset):
    cfg = GENERATOR_PRESETS[preset]
    if cfg.width1 > 64:
        cfg = GeneratorConfig(**{**cfg.to_dict(), "width0": 8, "width1": 8, "blocks0": 1, "blocks1": 1,
                                 "mix0_init": tuple(cfg.mix0_init), "mix1_init": tuple(cfg.mix1_init)})
    g = SuRGeGenerator(cfg).eval()
    y = g(torch.rand(1, 3, 7, 11))
    assert y.shape == (1, 3, 28, 44)
    if cfg.output_activation == "tanh":
        assert 0 <= y.min() and y.max() <= 1


def test_receptive_radius_bounds_the_influence_of_a_pixel():
    g = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]).eval()
    r = g.receptive_radius()
    size = 2 * r + 9
    x = torch.rand(1, 3, size, size)
    x2 = x.clone()
    x2[..., 0, 0] += 1.0  # perturb a corner pixel
    diff = (g(x2) - g(x)).abs()[0].amax(0)
    affected = torch.nonzero(diff > 1e-7)
    assert affected[:, 0].max() < 4 * (r + 1) and affected[:, 1].max() < 4 * (r + 1)


def test_critic_has_no_batchnorm_or_sigmoid_and_takes_any_size():
    d = Critic(CriticConfig(width=8, max_width=16, stages=2, hidden=16))
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Sigmoid)) for m in d.modules())
    for h, w in [(32, 32), (45, 61), (96, 96)]:
        assert d(torch.rand(3, 3, h, w)).shape == (3,)


def test_config_validation_errors_are_clear():
    with pytest.raises(ConfigError, match="head_kernel must be odd"):
        GeneratorConfig(head_kernel=4)
    with pytest.raises(ConfigError, match="norm"):
        GeneratorConfig(norm="layer")
    with pytest.raises(ConfigError, match=r"generator config: unknown key\(s\) widht0"):
        GeneratorConfig.from_dict({"widht0": 3})


CONFIGS = [
    GeneratorConfig(width0=8, width1=12, blocks0=1, blocks1=2, head_kernel=5),
    GeneratorConfig(width0=8, width1=8, blocks0=2, blocks1=0, norm="none", output_activation="none", global_residual=True),
    GeneratorConfig(width0=4, width1=4, blocks0=0, blocks1=1, head_kernel=3, body_kernel=5, mixing="sum"),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_state_dict_round_trip_through_model_file(tmp_path, cfg):
    torch.manual_seed(0)
    g = SuRGeGenerator(cfg)
    with torch.no_grad():  # non-trivial BN statistics and mixing weights must survive too
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        g.F1.logits.add_(0.3)
    g.eval()
    path = save_model(g, tmp_path / "m.safetensors", provenance={"steps": 7, "training_data": ["T91"]})
    loaded, prov = load_model_file(path)
    assert prov == {"steps": 7, "training_data": ["T91"]}
    assert loaded.config == cfg
    for k, v in g.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.rand(1, 3, 9, 10)
    assert torch.equal(g(x), loaded(x))


def test_critic_round_trip(tmp_path):
    d = Critic(CriticConfig(width=8, max_width=16, stages=2, hidden=16))
    loaded, _ = load_model_file(save_model(d, tmp_path / "d.safetensors"))
    assert isinstance(loaded, Critic) and loaded.config == d.config


def test_fp16_storage_halves_the_file_and_loads_as_fp32(tmp_path):
    g = SuRGeGenerator(CONFIGS[0])
    a = save_model(g, tmp_path / "a.safetensors")
    b = save_model(g, tmp_path / "b.safetensors", dtype=torch.float16)
    assert b.stat().st_size < 0.6 * a.stat().st_size
    loaded, _ = load_model_file(b)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        surge.load_model(str(tmp_path / "nope.safetensors"))


def test_truncated_file(tmp_path):
    path = save_model(SuRGeGenerator(CONFIGS[0]), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"m\.safetensors: .*(truncated|not a readable)"):
        surge.load_model(str(path))


def test_empty_and_non_safetensors_files(tmp_path):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        surge.load_model(str(empty))
    junk = tmp_path / "junk.safetensors"
    junk.write_text("this is not a model")
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        surge.load_model(str(junk))


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(ModelFileError, match="foreign"):
        surge.load_model(str(path))


def test_mismatching_weights(tmp_path):
    path = save_model(SuRGeGenerator(CONFIGS[0]), tmp_path / "m.safetensors")
    meta = read_metadata(path)
    other = json.loads(meta["surge.config"])
    other["width1"] = 16
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata={**meta, "surge.config": json.dumps(other)})
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        surge.load_model(str(path))


def test_unknown_model_name():
    with pytest.raises(ModelFileError, match="unknown model"):
        surge.load_model("no-such-model")


def test_builtin_and_preset_models_load_and_describe():
    bic = surge.load_model("bicubic")
    assert bic.scale == 4 and describe(bic)["parameters"] == 0
    info = describe(surge.load_model("surge"))
    assert 4_030_000 <= info["parameters"] <= 4_060_000
    assert 33 < info["mflops_per_lr_pixel"] < 35.5  # spec: ~34 MFLOP per LR pixel
    assert "bf16" in info["precisions"] and "mixing_weights" in info


def test_default_model_is_a_loadable_model():
    from surge.models.registry import default_model_name

    assert surge.load_model("default").name == default_model_name()


def test_model_files_get_ordinary_permissions(tmp_path):
    import os

    mask = os.umask(0)
    os.umask(mask)
    path = save_model(SuRGeGenerator(CONFIGS[0]), tmp_path / "m.safetensors")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's/safetensors' 0600


def test_bundled_models_load_and_carry_their_provenance():
    from surge.models.registry import BUNDLED, bundled_path

    shipped = [name for name in BUNDLED if bundled_path(name) is not None]
    for name in shipped:
        model = surge.load_model(name)
        assert {"steps", "training_data", "scores"} <= set(model.provenance), name
        assert set(model.provenance["scores"]) == {"Set5", "Set14", "BSD100"}
