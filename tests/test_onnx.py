"""ONNX export (dynamic H/W, no fixed-size Resize) and the onnxruntime backend vs PyTorch fp32."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from PIL import Image  # noqa: E402

from surge.cli.main import main  # noqa: E402
from surge.inference.onnx_backend import OnnxError, OnnxSession, check_dynamic_resize, export_onnx  # noqa: E402
from surge.inference.optimize import optimize_for_inference  # noqa: E402
from surge.models.config import GENERATOR_PRESETS  # noqa: E402
from surge.models.files import save_model  # noqa: E402
from surge.models.generator import SuRGeGenerator  # noqa: E402
from surge.inference.runtime import load_model  # noqa: E402

from test_optimize import generator  # noqa: E402

TOL = 1e-4
TINY_BN = dataclasses.replace(GENERATOR_PRESETS["surge"], width0=8, width1=12, blocks0=2, blocks1=1, head_kernel=9)


def torch_fp32(net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The reference: the network as loaded, fp32, eager, no rewrites."""
    with torch.no_grad():
        return net.eval()(x).numpy()


@pytest.mark.parametrize("preset", ["surge-tiny", "tiny-batchnorm-tanh"])
def test_export_has_dynamic_size_and_matches_torch(tmp_path, preset):
    net = generator(TINY_BN) if preset == "tiny-batchnorm-tanh" else generator(GENERATOR_PRESETS[preset])
    fast, _ = optimize_for_inference(net)
    path = export_onnx(fast, tmp_path / "m.onnx")
    model = onnx.load(path)
    check_dynamic_resize(model)  # no fixed-size Resize
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    session = OnnxSession(path)
    for shape in [(1, 3, 17, 23), (2, 3, 8, 30)]:  # sizes never seen at export (16x16)
        x = torch.rand(*shape)
        got = session(x).numpy()
        assert got.shape == (shape[0], 3, 4 * shape[2], 4 * shape[3])
        assert np.abs(got - torch_fp32(net, x)).max() <= TOL


def test_check_dynamic_resize_rejects_fixed_size():
    from onnx import TensorProto, helper

    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 3, 8, 8])],
    )
    with pytest.raises(OnnxError, match="fixed output size"):
        check_dynamic_resize(helper.make_model(graph), "fixed.onnx")


def test_engine_onnxruntime_backend_matches_torch_fp32():
    model = load_model("surge-tiny", device="cpu")
    engine = model._engine(backend="onnxruntime")
    assert engine.precision == "fp32" and engine.backend == "onnxruntime"
    x = torch.rand(1, 3, 19, 12)
    assert np.abs(engine(x).numpy() - torch_fp32(model.network, x)).max() <= TOL


def test_cli_export_writes_a_loadable_file(tmp_path, capsys):
    weights = tmp_path / "tiny.safetensors"
    net = generator(TINY_BN)
    save_model(net, weights)
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(weights), "--onnx", str(out), "--opset", "17"]) == 0
    assert "dynamic" in capsys.readouterr().out
    x = torch.rand(1, 3, 9, 14)
    assert np.abs(OnnxSession(out)(x).numpy() - torch_fp32(net, x)).max() <= TOL
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_export_errors_are_one_line_and_keep_existing_output(tmp_path, capsys):
    existing = tmp_path / "keep.onnx"
    existing.write_bytes(b"old")
    assert main(["export", "surge-tiny", "--onnx", str(tmp_path / "missing" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "surge-tiny", "--onnx", str(tmp_path / "m.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert main(["export", "bicubic", "--onnx", str(existing)]) == 2
    assert existing.read_bytes() == b"old"
    assert main(["export", "surge-tiny", "--onnx", str(existing), "--opset", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "opset" in err
    assert existing.read_bytes() == b"old"


def _set5_lr(shared_datasets) -> list[torch.Tensor]:
    folder = shared_datasets / "benchmark" / "Set5" / "LR_bicubic_X4"
    images = []
    for path in sorted(folder.glob("*.png")):
        arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        images.append(torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous())
    assert len(images) == 5
    return images


@pytest.mark.slow
def test_onnxruntime_matches_torch_fp32_on_set5(shared_datasets):
    """Every Set5 LR image (five sizes) through the `surge upscale --backend onnxruntime` engine."""
    torch.manual_seed(0)
    model = load_model("surge-small", device="cpu")
    assert isinstance(model.network, SuRGeGenerator)
    engine = model._engine(backend="onnxruntime")
    for x in _set5_lr(shared_datasets):
        diff = np.abs(engine(x).numpy() - torch_fp32(model.network, x)).max()
        assert diff <= TOL, f"max |onnxruntime - torch| = {diff:.2e} on a {tuple(x.shape)} input"


def test_a_graph_that_only_runs_at_its_export_size_is_refused_up_front(tmp_path, capsys):
    """Issue 22: `--backend onnxruntime --model bicubic` ended in ONNX Runtime's MatMul traceback
    (the built-in bicubic's weight matrices are computed for the export size)."""
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 12, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--backend", "onnxruntime",
                 "--model", "bicubic", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("surge: error: bicubic") and "--backend torch" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
