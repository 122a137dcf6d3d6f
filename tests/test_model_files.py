"""Model files that lie: absurd configs, shapes that do not match, provenance that is not an object."""

import json
import resource
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from surge.cli.main import main
from surge.errors import ConfigError, ModelFileError
from surge.models.config import CriticConfig, GeneratorConfig
from surge.models.files import lineage_of, load_model_file, read_metadata, save_model, total_steps
from surge.models.generator import SuRGeGenerator

TINY = GeneratorConfig(width0=4, width1=4, blocks0=1, blocks1=1, head_kernel=3, norm="none",
                       output_activation="none", global_residual=True)


def _tiny_file(tmp_path, name="m.safetensors", provenance=None):
    return save_model(SuRGeGenerator(TINY), tmp_path / name, provenance=provenance)


def _rewrite(path, *, config=None, provenance=None, tensors=None):
    """Re-save ``path`` with some metadata or tensors replaced (what a hostile file could hold)."""
    meta = read_metadata(path)
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    if config is not None:
        meta["surge.config"] = json.dumps(config)
    if provenance is not None:
        meta["surge.provenance"] = provenance
    save_file(tensors if tensors is not None else state, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("field, value", [
    ("width0", 10**6), ("width1", 0), ("blocks0", 10**7), ("blocks1", -1), ("head_kernel", 10**4 + 1),
    ("body_kernel", 17), ("in_channels", 1000), ("out_channels", 0), ("width0", True), ("width1", 8.0),
])
def test_generator_config_fields_are_bounded(field, value):
    with pytest.raises(ConfigError, match=rf"generator\.{field} must be an integer in \d+\.\.\d+"):
        GeneratorConfig(**{**TINY.to_dict(), field: value})


@pytest.mark.parametrize("field, value", [
    ("width", 10**6), ("max_width", 4096), ("stages", 10**7), ("pool_size", 1000), ("hidden", 10**6), ("in_channels", 0),
])
def test_critic_config_fields_are_bounded(field, value):
    with pytest.raises(ConfigError, match=rf"critic\.{field} must be an integer"):
        CriticConfig(**{field: value})


@pytest.mark.parametrize("mix", [(float("nan"), 0.5), ("a", "b"), (0.5, None)])
def test_mixing_init_must_be_finite_numbers(mix):
    with pytest.raises(ConfigError, match="mix0_init must be 2 positive weights"):
        GeneratorConfig(**{**TINY.to_dict(), "mix0_init": mix})


def test_bounds_admit_every_shipped_size():
    from surge.models.config import GENERATOR_PRESETS

    assert all(GeneratorConfig.from_dict(cfg.to_dict()) == cfg for cfg in GENERATOR_PRESETS.values())
    CriticConfig(width=64, max_width=256, stages=4)


@pytest.mark.parametrize("change", [{"width0": 10**6}, {"blocks0": 10**7}, {"blocks1": 64, "width1": 1024}])
def test_absurd_config_in_a_file_is_refused_fast_without_allocating(tmp_path, change):
    path = _tiny_file(tmp_path)
    _rewrite(path, config={**TINY.to_dict(), **change})
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"m\.safetensors: (invalid architecture config|weights do not match)"):
        load_model_file(path)
    assert time.perf_counter() - start < 2.0
    # 64+64 blocks at width 1024 would be ~1.2 GB of fp32 weights; the refusal allocates none of it.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000  # KiB


def test_wrong_tensor_shape_is_refused_before_building(tmp_path, monkeypatch):
    path = _tiny_file(tmp_path)
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["C0.0.weight"] = torch.zeros(4, 3, 5, 5)
    _rewrite(path, tensors=tensors)
    devices = []
    real_init = SuRGeGenerator.__init__

    def recording_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        devices.append(next(self.parameters()).device.type)

    monkeypatch.setattr(SuRGeGenerator, "__init__", recording_init)
    with pytest.raises(ModelFileError, match=r"1 with wrong shape \(e\.g\. C0\.0\.weight: \(4, 3, 5, 5\) vs \(4, 3, 3, 3\)\)"):
        load_model_file(path)
    assert "cpu" not in devices  # only shapes on the meta device were built, never real weights


@pytest.mark.parametrize("provenance, kind", [("[1, 2]", "array"), ('"text"', "string"), ("3", "number"), ("null", "null")])
def test_non_object_provenance_is_a_one_line_error(tmp_path, capsys, provenance, kind):
    path = _rewrite(_tiny_file(tmp_path), provenance=provenance)
    with pytest.raises(ModelFileError, match=f"provenance metadata must be a JSON object, got a JSON {kind}"):
        load_model_file(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surge: error: ") and err.count("\n") == 1 and str(path) in err


def test_lineage_must_be_a_list_of_objects(tmp_path):
    path = _tiny_file(tmp_path, provenance={"steps": 3, "lineage": {"steps": 2}})
    with pytest.raises(ModelFileError, match="'lineage' must be a JSON array of objects"):
        load_model_file(path)


def test_lineage_of_a_chain_adds_up_the_steps(tmp_path):
    first = _tiny_file(tmp_path, "a.safetensors", {"experiment": "a", "steps": 40, "init_from": None})
    second = _tiny_file(tmp_path, "b.safetensors", {"experiment": "b", "steps": 25, "init_from": str(first),
                                                   "lineage": lineage_of(first)})
    third = {"experiment": "c", "steps": 5, "init_from": str(second), "lineage": lineage_of(second)}
    assert [e["experiment"] for e in third["lineage"]] == ["a", "b"]
    assert all("lineage" not in e for e in third["lineage"])
    assert total_steps(third) == 70
    assert total_steps({"steps": 5, "lineage": [{"experiment": "legacy"}]}) is None


def test_loading_a_model_file_stays_fast(tmp_path):
    # The meta-device shape check must not pull in torch._dynamo (2+ s on the first load).
    import subprocess
    import sys

    path = save_model(SuRGeGenerator(TINY), tmp_path / "m.safetensors")
    code = ("import sys; from surge.models.files import load_model_file; load_model_file(sys.argv[1]); "
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True)


def test_save_model_without_replace_keeps_an_existing_file(tmp_path):
    net = SuRGeGenerator(GeneratorConfig(width0=8, width1=8, blocks0=1, blocks1=1))
    path = save_model(net, tmp_path / "m.safetensors", {"experiment": "first"})
    before = path.read_bytes()
    with pytest.raises(ModelFileError, match="already exists"):
        save_model(net, path, {"experiment": "second"}, replace=False)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]  # no temp file left
    save_model(net, path, {"experiment": "second"})  # the default replaces, atomically
    assert load_model_file(path)[1]["experiment"] == "second"
