"""Device-side training batches (surge.data.device_pairs, surge.data.torch_degradations) against the
CPU reference pipeline (surge.data.pairs, surge.data.degradations), on the CPU."""

import dataclasses

import numpy as np
import pytest
import torch

from surge.data.degradations import DegradationConfig, add_poisson_noise, filter2d, gaussian_kernel, resize, sinc_kernel
from surge.data.device_pairs import DeviceBatches
from surge.data.pairs import PairDataset
from surge.data.torch_degradations import (
    BatchDegrader, filter_batch, gaussian_noise, poisson_noise, reflect_index, resize_batch,
)
from surge.errors import ConfigError, DatasetError
from surge.training.config import ExperimentConfig, load_config

from host_data_helpers import HostData
from script_loader import load_script
from training_helpers import write_tiny_config

lr_stats = load_script("benchmarks/device_lr_stats.py")

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"
PSNR_LOSS = {"loss": {"l1": True, "adversarial": False, "js": False, "gw": False}}


def images(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((70 + 7 * i, 64 + 5 * i, 3)) * 255).astype(np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def natural_crops():
    """64 px crops of natural photos (scikit-image), uint8 HxWx3: those of benchmarks/device_lr_stats.py."""
    return lr_stats.natural_crops(160)


def to_batch(arrs):
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255


# --- the batch sampler ----------------------------------------------------------------


@pytest.mark.parametrize("augment", [True, False])
def test_hr_crops_are_the_loaders(augment):
    imgs = images()
    dev = DeviceBatches(imgs, 32, seed=3, augment=augment)
    ref = PairDataset(imgs, 32, seed=3, augment=augment)
    for step in (0, 2, 3):  # crosses an epoch (5 images, batch 4)
        lr, hr = dev.batch(step, 4)
        for i in range(4):
            ref_lr, ref_hr = ref[step * 4 + i]
            assert torch.equal(hr[i], ref_hr)
            # The loader's uint8 MATLAB resize rounds after each axis; the device's rounds once.
            assert float((lr[i] - ref_lr).abs().max()) <= 1 / 255 + 1e-6
            assert torch.equal(lr[i] * 255, torch.round(lr[i] * 255))


def test_batches_are_a_function_of_seed_and_step():
    cfg = load_config(REPO_CONFIGS / "gpu-real-psnr.toml").data.degradation
    imgs = images()
    for degradation in (None, cfg):
        a = DeviceBatches(imgs, 32, seed=3, degradation=degradation)
        b = DeviceBatches(imgs, 32, seed=3, degradation=degradation)  # a fresh object: no hidden state carried
        lr7, hr7 = a.batch(7, 8)
        a.batch(1, 8)
        assert all(torch.equal(x, y) for x, y in zip(a.batch(7, 8), b.batch(7, 8)))
        assert all(torch.equal(x, y) for x, y in zip((lr7, hr7), b.batch(7, 8)))
        lr8, hr8 = a.batch(8, 8)
        assert not torch.equal(hr7, hr8) and not torch.equal(lr7, lr8)
        other = DeviceBatches(imgs, 32, seed=4, degradation=degradation)
        assert not torch.equal(other.batch(7, 8)[0], lr7)


def test_prefetching_gives_the_same_batches_and_stops_cleanly():
    cfg = load_config(REPO_CONFIGS / "gpu-real-psnr.toml").data.degradation
    dev = DeviceBatches(images(), 32, seed=2, degradation=cfg)
    plain, ahead = list(dev.steps(3, 7, 4, prefetch=0)), list(dev.steps(3, 7, 4, prefetch=2))
    assert len(plain) == len(ahead) == 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(plain, ahead))
    it = dev.steps(0, 10**6, 4)
    next(it)
    it.close()  # a training loop that stops early must not leave the producer thread running
    assert not any(t.name == "surge-device-batches" and t.is_alive() for t in __import__("threading").enumerate())


def test_a_failing_batch_raises_in_the_training_loop(monkeypatch):
    with pytest.raises(DatasetError, match="not divisible"):
        list(DeviceBatches(images(), 32, world_size=2).steps(0, 3, 5))
    dev = DeviceBatches(images(), 32, seed=2)
    made = dev.make

    def fails_at_step_2(plan):
        if plan.step == 2:
            raise DatasetError("made up failure at step 2")
        return made(plan)

    monkeypatch.setattr(dev, "make", fails_at_step_2)
    for workers in (0, 2):
        got = []
        with pytest.raises(DatasetError, match="step 2"):
            for batch in dev.steps(0, 5, 4, prefetch=1, workers=workers):
                got.append(batch)
        assert len(got) == 2


def test_a_plan_failing_in_a_worker_process_raises_in_the_training_loop(monkeypatch):
    from surge.data.device_pairs import BatchPlanner

    planned = BatchPlanner.plan

    def fails_at_step_1(self, step, global_batch):
        if step == 1:
            raise DatasetError("made up failure while planning step 1")
        return planned(self, step, global_batch)

    monkeypatch.setattr(BatchPlanner, "plan", fails_at_step_1)  # before the workers fork: they inherit it
    with pytest.raises(Exception, match="planning step 1"):
        list(DeviceBatches(images(), 32, seed=2).steps(0, 4, 4, workers=2))


@pytest.mark.parametrize("degraded", [False, True])
def test_plans_drawn_by_worker_processes_give_the_same_batches(degraded):
    # The plan (numpy draws) may come from other processes; the pixels must not notice.
    cfg = load_config(REPO_CONFIGS / "gpu-real-psnr.toml").data.degradation if degraded else None
    dev = DeviceBatches(images(), 32, seed=6, degradation=cfg)
    here = list(dev.steps(4, 11, 4, prefetch=0))
    for prefetch in (0, 1):
        there = list(dev.steps(4, 11, 4, prefetch=prefetch, workers=2))
        assert len(there) == len(here) == 7
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(here, there))
    assert all(torch.equal(a, b) for a, b in zip(dev.batch(9, 4), here[5]))


def test_a_plan_holds_every_random_choice_and_pickles():
    import pickle

    cfg = load_config(REPO_CONFIGS / "gpu-real-psnr.toml").data.degradation
    dev = DeviceBatches(images(), 32, seed=6, degradation=cfg)
    plan = pickle.loads(pickle.dumps(dev.plan(3, 8)))
    lr, hr = dev.make(plan)
    assert all(torch.equal(a, b) for a, b in zip((lr, hr), dev.batch(3, 8)))
    assert plan.degradation is not None and len(plan.degradation.clean) == len(plan.images) == 8


def test_ranks_take_their_slice_of_the_global_batch():
    imgs = images()
    whole = DeviceBatches(imgs, 32, seed=1).batch(5, 8)[1]
    parts = [DeviceBatches(imgs, 32, seed=1, rank=r, world_size=2).batch(5, 8)[1] for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)


# --- the operators against the CPU reference ------------------------------------------


def test_filter_batch_is_the_reference_filter():
    rng = np.random.default_rng(0)
    x = rng.random((3, 20, 13, 3)).astype(np.float32)
    kernels = [gaussian_kernel(7, 1.3), None, sinc_kernel(21, 1.2)]  # 21 > 13: reflected twice, as numpy does
    out = filter_batch(torch.from_numpy(x).permute(0, 3, 1, 2), kernels).permute(0, 2, 3, 1).numpy()
    for i, k in enumerate(kernels):
        expected = x[i] if k is None else filter2d(x[i], k)
        np.testing.assert_allclose(out[i], expected, atol=2e-6)


def test_reflect_index_is_numpys():
    for n, p in ((5, 2), (5, 9), (1, 3), (2, 5)):
        np.testing.assert_array_equal(reflect_index(n, p, "cpu").numpy(), np.pad(np.arange(n), p, mode="reflect"))


def test_resize_batch_per_sample_mode():
    rng = np.random.default_rng(1)
    x = rng.random((4, 24, 24, 3)).astype(np.float32)
    modes, aa = ["area", "bilinear", "bicubic", "bicubic"], np.array([False, True, False, True])
    out = resize_batch(torch.from_numpy(x).permute(0, 3, 1, 2), (10, 14), modes, aa).permute(0, 2, 3, 1).numpy()
    for i in range(4):
        np.testing.assert_allclose(out[i], resize(x[i], (10, 14), modes[i], bool(aa[i])), atol=1e-6)


def test_noise_levels():
    x = torch.full((4, 3, 64, 64), 0.5)
    gen = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.01, 0.02, 0.04, 0.04])
    gray = torch.tensor([False, False, False, True])
    out = gaussian_noise(x, sigma, gray, gen) - 0.5
    np.testing.assert_allclose(out.flatten(1).std(1).numpy(), sigma.numpy(), rtol=0.05)
    assert torch.equal(out[3, 0], out[3, 1]) and not torch.equal(out[2, 0], out[2, 1])
    # Poisson against the reference at a photon count of 2 (two distinct levels) and of 256 (a ramp).
    for img in (torch.full((2, 3, 64, 64), 0.5),
                torch.linspace(0, 1, 64).repeat(2, 3, 64, 1)):
        img[:, :, 0, 0] = 0.0
        out = poisson_noise(img, torch.tensor([1.0, 1.0]), torch.tensor([False, True]), gen) - img
        hwc = img[0].permute(1, 2, 0).numpy()
        for i, gray in enumerate((False, True)):
            ref = add_poisson_noise(hwc, np.random.default_rng(i), 1.0, gray) - hwc
            assert abs(float(out[i].var()) / float(ref.var()) - 1) < 0.1
            assert abs(float(out[i].mean()) - float(ref.mean())) < 0.01
        assert torch.equal(out[1, 0], out[1, 2]) and not torch.equal(out[0, 0], out[0, 2])


# --- LR statistics: torch pipeline vs the CPU reference -------------------------------


# Measured (docs/results/device-data.md; these 160 crops of 64 px, batches of 4, seeds 0-3): the
# mean PSNR-to-bicubic of the two pipelines differed by -0.27..+0.50 dB and the medians by
# -0.52..+0.50 dB, per-sample spreads 3.7-5.2 dB, spread ratio 0.91-1.20. Bounds: 1 dB, 1 dB, 0.75-1.35.
# The clean share is left out here (clean_prob = 0): it is exact bicubic, checked by the tests above.
@pytest.mark.parametrize("config", ["gpu-real-psnr.toml", None])
def test_lr_statistics_match_the_reference(natural_crops, config):
    cfg = load_config(REPO_CONFIGS / config).data.degradation if config else DegradationConfig()
    cfg = dataclasses.replace(cfg, clean_prob=0.0)
    ref, dev = lr_stats.lr_statistics(natural_crops, cfg, seed=0)
    print(f"{config}: reference {ref.mean():.2f} +- {ref.std():.2f}, torch {dev.mean():.2f} +- {dev.std():.2f}")
    assert 20 < ref.mean() < 35  # degraded, not clean, LR
    assert abs(dev.mean() - ref.mean()) < 1.0
    assert abs(np.median(dev) - np.median(ref)) < 1.0
    assert 0.75 < dev.std() / ref.std() < 1.35


def test_clean_share(natural_crops):
    cfg = dataclasses.replace(DegradationConfig(), clean_prob=0.5)
    hr = to_batch(natural_crops[:64])
    lr = BatchDegrader(cfg)(hr, np.random.default_rng(0), torch.Generator().manual_seed(0))
    bic = torch.floor(BatchDegrader(cfg).bicubic(hr, (16, 16)).clamp(0, 1) * 255 + 0.5) / 255
    clean = [bool(torch.equal(lr[i], bic[i])) for i in range(64)]
    assert 20 <= sum(clean) <= 44


# --- configuration and the trainer --------------------------------------------------


def test_pipeline_switch_is_checked():
    assert ExperimentConfig.from_dict(PSNR_LOSS).data.pipeline == "loader"
    with pytest.raises(ConfigError, match="data.pipeline"):
        ExperimentConfig.from_dict({"data": {"pipeline": "gpu"}, **PSNR_LOSS})
    with pytest.raises(ConfigError, match="lr_dirs"):
        ExperimentConfig.from_dict({"data": {"pipeline": "device", "train_dirs": ["a"], "lr_dirs": ["b"]}, **PSNR_LOSS})
    cfg = ExperimentConfig.from_dict({"data": {"pipeline": "device"}, **PSNR_LOSS})
    assert cfg.data.pipeline == "device"


def _config(tmp_path, hr, steps):
    """PSNR steps on the device pipeline, a checkpoint every step; the file tmp_path/tiny{steps}.toml."""
    return write_tiny_config(tmp_path / f"tiny{steps}.toml", hr, steps=steps, out=tmp_path / "runs",
                             data={"pipeline": "device"})


def _losses(run_dir):
    import csv

    with (run_dir / "log.csv").open() as f:
        return [(r["step"], r["loss_g"]) for r in csv.DictReader(f) if r.get("loss_g")]


def _train_dir(tmp_path):
    from PIL import Image

    hr = tmp_path / "hr"
    hr.mkdir()
    for i, im in enumerate(images(4)):
        Image.fromarray(im).save(hr / f"{i}.png")
    return hr


@pytest.mark.parametrize("degraded", [False, True])
def test_trainer_with_the_device_pipeline_resumes_exactly(tmp_path, degraded, device="cpu"):
    from surge.training.distributed import init_distributed
    from surge.training.trainer import Trainer

    hr = _train_dir(tmp_path)
    overrides = [f"train.device={device}"] + (["data.degradation.clean_prob=0.25"] if degraded else [])

    def cfg(steps, workers=0):
        return load_config(_config(tmp_path, hr, steps), [*overrides, f"data.workers={workers}"])

    def ctx():
        return init_distributed(device)

    whole = Trainer(cfg(5), tmp_path / "whole", ctx()).run()
    assert whole.step == 5
    # The split run's plans come from a worker process: the same batches, so the same losses.
    Trainer(cfg(2, workers=1), tmp_path / "split", ctx()).run()
    Trainer(cfg(5, workers=1), tmp_path / "split", ctx(), resume=True).run()
    assert _losses(tmp_path / "split") == _losses(tmp_path / "whole")
    assert len(_losses(tmp_path / "whole")) == 5


@pytest.mark.parametrize("recipe", ["real-world", "bicubic"])
def test_making_a_batch_takes_host_data_only_through_upload(monkeypatch, recipe):
    # On CUDA a tensor made from host data (a list index, torch.tensor, from_numpy(...).to(device))
    # is a pageable copy that waits for the stream; upload's pinned copy does not. On CPU: every
    # tensor that make() creates from host data must come through upload (the plan is numpy).
    import surge.data.device_pairs as device_pairs
    import surge.data.torch_degradations as torch_degradations

    degradation = None
    if recipe == "real-world":
        degradation = dataclasses.replace(load_config(REPO_CONFIGS / "gpu-real-psnr.toml").data.degradation,
                                          clean_prob=0.25)
    batches = DeviceBatches(images(), 32, seed=5, degradation=degradation)
    for step in range(4):  # constants cached on first use
        batches.batch(step, 8)
    plans = [batches.plan(step, 8) for step in range(4, 16)]
    with HostData(monkeypatch, torch_degradations, device_pairs) as made:
        for plan in plans:
            batches.make(plan)
    assert made.elsewhere == [] and made.uploads > 0


# --- CUDA (skipped without a GPU; not yet run on one) ---------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
def test_cuda_batches_match_the_cpu_ones():
    cfg = load_config(REPO_CONFIGS / "gpu-real-psnr.toml").data.degradation
    imgs = images()
    for degradation in (None, cfg):
        on_cpu = DeviceBatches(imgs, 32, seed=5, degradation=degradation)
        on_gpu = DeviceBatches(imgs, 32, "cuda", seed=5, degradation=degradation)
        lr_c, hr_c = on_cpu.batch(3, 8)
        lr_g, hr_g = on_gpu.batch(3, 8)
        assert torch.equal(hr_g.cpu(), hr_c)  # same crops everywhere
        assert torch.equal(on_gpu.batch(3, 8)[0], lr_g)  # reproducible on the device
        ahead = next(iter(on_gpu.steps(3, 4, 8, prefetch=1)))  # the side-stream path
        assert torch.equal(ahead[0], lr_g) and torch.equal(ahead[1], hr_g)
        if degradation is None:  # bicubic: float rounding may move a level at most
            assert float((lr_g.cpu() - lr_c).abs().max()) <= 1 / 255 + 1e-6


@pytest.mark.cuda
@cuda
def test_cuda_jpeg_matches_cpu():
    x = torch.rand(4, 3, 40, 56) * 255
    q = torch.tensor([30, 50, 75, 95])
    from surge.data.torch_jpeg import jpeg_levels

    a, b = jpeg_levels(x, q), jpeg_levels(x.cuda(), q.cuda()).cpu()
    assert float((a - b).abs().gt(1).float().mean()) < 1e-3  # rounding ties may differ by one level


@pytest.mark.cuda
@cuda
def test_cuda_training_with_the_device_pipeline(tmp_path):
    # Not an exact-resume test: CUDA's conv backward may reorder sums between runs; the batches'
    # reproducibility on CUDA is test_cuda_batches_match_the_cpu_ones.
    import math

    from surge.training.distributed import init_distributed
    from surge.training.trainer import Trainer

    path = _config(tmp_path, _train_dir(tmp_path), 3)
    cfg = load_config(path, ["train.device=cuda", "data.degradation.clean_prob=0.25"])
    result = Trainer(cfg, tmp_path / "run", init_distributed("cuda")).run()
    losses = _losses(tmp_path / "run")
    assert result.step == 3 and len(losses) == 3 and all(math.isfinite(float(v)) for _, v in losses)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("recipe", ["real-world", "bicubic"])
def test_cuda_batches_are_made_without_waiting_for_the_gpu(recipe):
    # The prefetch thread queues a batch's kernels while the GPU trains: a host sync there (an index
    # list copied from pageable memory, an .item()) makes it wait for everything queued before.
    # CUDA's sync debug mode warns on each; after a warm-up (cached constants) there must be none.
    import warnings

    degradation = None
    if recipe == "real-world":
        degradation = dataclasses.replace(load_config(REPO_CONFIGS / "gpu-real-psnr.toml").data.degradation,
                                          clean_prob=0.25)  # the clean/degraded split too
    on_gpu = DeviceBatches(images(), 32, "cuda", seed=5, degradation=degradation)
    for step in range(4):
        on_gpu.batch(step, 8)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for step in range(4, 16):
                on_gpu.batch(step, 8)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert not syncs, f"{len(syncs)} host syncs while making 12 batches, first: {syncs[0]}"
