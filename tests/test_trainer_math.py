"""The trainer's maths, checked update by update against independent computations.

SGD replaces Adam where a test compares parameter updates (``p - lr * grad`` is exact), the
step logic itself is the trainer's. Tiny models and 16x16 HR crops: each test takes about a second
except the two-process data-parallel one.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from surge.errors import ConfigError
from surge.losses import divergence
from surge.training.config import ExperimentConfig
from surge.training.distributed import DistContext
from surge.training.trainer import Trainer, _lr_lambda

from host_data_helpers import HostData

BATCH = 4


def make_cfg(tmp_path: Path, **sections) -> ExperimentConfig:
    """A tiny GAN-stage config (BatchNorm generator, 16x16 HR); ``sections`` update its sections."""
    data = {
        "data": {"train_dirs": [str(tmp_path / "hr")], "hr_size": 16, "batch_size": BATCH, "val_dir": ""},
        "generator": {"width0": 4, "width1": 4, "blocks0": 1, "blocks1": 1, "head_kernel": 3,
                      "body_kernel": 3, "norm": "batch"},
        "critic": {"width": 4, "max_width": 8, "stages": 1, "pool_size": 2, "hidden": 8},
        "optim": {"lr_g": 0.05, "lr_d": 0.02},
        "loss": {"adversarial": True, "js": False, "gw": False, "l1": True},
        "train": {"stage": "gan", "steps": 20, "precision": "fp32", "seed": 3, "out_dir": str(tmp_path)},
    }
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    return ExperimentConfig.from_dict(data)


def batch(n: int = BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, 4, generator=g), torch.rand(n, 3, 16, 16, generator=g)


def use_sgd(trainer: Trainer) -> None:
    """Plain SGD with the trainer's own LR schedule: an update is exactly ``-lr * grad``."""
    cfg = trainer.cfg
    trainer.opt_g = torch.optim.SGD(trainer.g_module.parameters(), lr=cfg.optim.lr_g)
    trainer.sched_g = torch.optim.lr_scheduler.LambdaLR(trainer.opt_g, _lr_lambda(cfg))
    if trainer.d_module is not None:
        trainer.opt_d = torch.optim.SGD(trainer.d_module.parameters(), lr=cfg.optim.lr_d)
        trainer.sched_d = torch.optim.lr_scheduler.LambdaLR(trainer.opt_d, _lr_lambda(cfg))


def step(trainer: Trainer, lr: torch.Tensor, hr: torch.Tensor) -> dict:
    row = trainer.train_step(lr, hr)
    trainer.step += 1  # as Trainer.run does after each step
    return row


def assert_params(module: torch.nn.Module, expected: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    for name, p in module.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")


def sgd_update(module: torch.nn.Module, grads, lr: float) -> dict[str, torch.Tensor]:
    return {n: (p - lr * g).detach() for (n, p), g in zip(module.named_parameters(), grads)}


def load_params(module: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(values[name])


# --- the GAN step, update by update -----------------------------------------------------
def test_gan_steps_match_an_independent_computation_and_leave_the_critic_alone(tmp_path):
    cfg = make_cfg(tmp_path)
    trainer = Trainer(cfg, tmp_path / "run")
    use_sgd(trainer)
    ref_g, ref_d = copy.deepcopy(trainer.g_module), copy.deepcopy(trainer.d_module)
    lr, hr = batch()
    for t in range(2):
        # Critic: E[D(fake)] - E[D(real)] + 10 * E[(||grad D(x_hat)|| - 1)^2] on this step's SR, with
        # the penalty's eps a function of (seed, step, critic iteration).
        sr = ref_g(lr)
        eps = torch.from_numpy(np.random.default_rng([cfg.train.seed, 3, t, 0]).random(BATCH)).float()
        x_hat = (eps.view(-1, 1, 1, 1) * hr + (1 - eps.view(-1, 1, 1, 1)) * sr.detach()).requires_grad_(True)
        (g_x,) = torch.autograd.grad(ref_d(x_hat).sum(), x_hat, create_graph=True)
        gp = ((g_x.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss_d = ref_d(sr.detach()).mean() - ref_d(hr).mean() + 10 * gp
        grads_d = torch.autograd.grad(loss_d, list(ref_d.parameters()))
        lr_factor = 1.0  # constant schedule, no warm-up
        expected_d = sgd_update(ref_d, grads_d, cfg.optim.lr_d * lr_factor)
        load_params(ref_d, expected_d)
        # Generator: the only combined term (adv) has dynamic weight softmax([L_adv]) = 1, plus L1.
        adv = -ref_d(sr).mean()
        l1 = (sr - hr).abs().mean()
        grads_g = torch.autograd.grad(adv + l1, list(ref_g.parameters()))
        expected_g = sgd_update(ref_g, grads_g, cfg.optim.lr_g * lr_factor)
        load_params(ref_g, expected_g)

        row = step(trainer, lr, hr)

        assert row["loss_critic"] == pytest.approx(loss_d.item(), rel=1e-5)
        assert row["loss_adv"] == pytest.approx(adv.item(), rel=1e-5) and row["w_adv"] == 1.0
        assert row["loss_l1"] == pytest.approx(l1.item(), rel=1e-5)
        assert_params(trainer.d_module, expected_d)
        assert_params(trainer.g_module, expected_g)
        # The generator's step left no gradient in the critic (its grads are the critic step's) and
        # gave the critic back its requires_grad.
        for (name, p), g in zip(trainer.d_module.named_parameters(), grads_d):
            assert p.requires_grad, name
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
        for p, g in zip(trainer.g_module.parameters(), grads_g):
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
        # BatchNorm's running statistics moved once, as in the one reference forward.
        for (name, b), b_ref in zip(trainer.g_module.named_buffers(), ref_g.buffers()):
            torch.testing.assert_close(b, b_ref, rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("pixel", ["mse", "charbonnier"])
def test_the_pixel_term_uses_the_configured_function(tmp_path, pixel):
    cfg = make_cfg(tmp_path, loss={"adversarial": False, "pixel": pixel}, train={"stage": "psnr"})
    trainer = Trainer(cfg, tmp_path / "run")
    use_sgd(trainer)
    ref_g = copy.deepcopy(trainer.g_module)
    lr, _ = batch()
    sr = ref_g(lr)
    # HR within ~1e-3 of SR: where Charbonnier (eps 1e-3) and L1 differ most.
    hr = sr.detach() + 1e-3 * torch.randn(sr.shape, generator=torch.Generator().manual_seed(1))
    diff = sr - hr
    value = (diff * diff).mean() if pixel == "mse" else torch.sqrt(diff * diff + 1e-6).mean()
    expected_g = sgd_update(ref_g, torch.autograd.grad(value, list(ref_g.parameters())), cfg.optim.lr_g)
    row = step(trainer, lr, hr)
    assert row["loss_l1"] == pytest.approx(value.item(), rel=1e-5)
    assert row["loss_l1"] != pytest.approx(diff.abs().mean().item(), rel=0.05)
    assert_params(trainer.g_module, expected_g)


def test_one_generator_forward_per_step(tmp_path):
    trainer = Trainer(make_cfg(tmp_path, optim={"critic_steps": 2}), tmp_path / "run")
    calls = []
    trainer.g_module.register_forward_hook(lambda *_: calls.append(1))
    lr, hr = batch()
    for expected in (1, 2):
        step(trainer, lr, hr)
        assert len(calls) == expected


def test_critic_steps_update_the_critic_that_many_times_and_the_generator_once(tmp_path, monkeypatch):
    trainer = Trainer(make_cfg(tmp_path, optim={"critic_steps": 3}), tmp_path / "run")
    counts = {"g": 0, "d": 0}
    for key, opt in (("g", trainer.opt_g), ("d", trainer.opt_d)):
        real_step = opt.step
        monkeypatch.setattr(opt, "step", lambda *a, _s=real_step, _k=key, **kw: (counts.__setitem__(_k, counts[_k] + 1), _s(*a, **kw))[1])
    lr, hr = batch()
    step(trainer, lr, hr)
    assert counts == {"g": 1, "d": 3}
    step(trainer, lr, hr)
    assert counts == {"g": 2, "d": 6}


def test_critic_is_given_back_its_gradients_when_the_adversarial_term_fails(tmp_path, monkeypatch):
    from surge.losses import adversarial

    trainer = Trainer(make_cfg(tmp_path), tmp_path / "run")

    def broken(critic, fake):
        assert not any(p.requires_grad for p in critic.parameters())  # frozen while G's term is built
        raise RuntimeError("boom")

    monkeypatch.setattr(adversarial, "generator_adversarial_loss", broken)
    with pytest.raises(RuntimeError, match="boom"):
        step(trainer, *batch())
    assert all(p.requires_grad for p in trainer.d_module.parameters())


# --- optimiser settings -----------------------------------------------------------------
def test_lr_schedule_warmup_then_cosine_at_hand_computed_steps():
    cfg = ExperimentConfig.from_dict({
        "data": {"train_dirs": ["x"], "val_dir": ""},
        "optim": {"schedule": "cosine", "warmup_steps": 4, "min_lr_ratio": 0.1},
        "loss": {"adversarial": False, "js": False, "gw": False, "l1": True},
        "train": {"steps": 14},
    })
    f = _lr_lambda(cfg)
    # Warm-up (step + 1) / 4; then 0.1 + 0.9 * (1 + cos(pi * (step - 4) / 10)) / 2, floor 0.1.
    hand = {0: 0.25, 1: 0.5, 3: 1.0, 4: 1.0, 9: 0.55, 14: 0.1, 30: 0.1}
    assert {s: pytest.approx(f(s), abs=1e-12) for s in hand} == hand
    assert f(6) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.2)), abs=1e-12)


def test_trainer_applies_the_schedule_to_both_optimisers(tmp_path):
    trainer = Trainer(make_cfg(tmp_path, optim={"schedule": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.0},
                               train={"steps": 4}), tmp_path / "run")
    lr, hr = batch()
    seen = []
    for _ in range(4):
        seen.append((trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"]))
        step(trainer, lr, hr)
    # Factors: warm-up 1/2, 2/2; cosine over the 2 remaining steps: (1 + cos 0) / 2, (1 + cos pi/2) / 2.
    factors = [0.5, 1.0, 1.0, 0.5]
    assert seen == [(pytest.approx(0.05 * k), pytest.approx(0.02 * k)) for k in factors]


def test_grad_clip_bounds_the_generator_gradient_norm(tmp_path):
    clip = 1e-3
    cfg = make_cfg(tmp_path, optim={"grad_clip": clip})
    trainer = Trainer(cfg, tmp_path / "run")
    use_sgd(trainer)
    before = {n: p.detach().clone() for n, p in trainer.g_module.named_parameters()}
    ref_g, ref_d = copy.deepcopy(trainer.g_module), copy.deepcopy(trainer.d_module)
    lr, hr = batch()
    step(trainer, lr, hr)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.g_module.parameters()]))
    assert norm <= clip * (1 + 1e-5)
    # The unclipped gradient (recomputed here with the critic as the trainer updated it) was larger,
    # and the update is along it: -lr * clip * g / ||g||.
    load_params(ref_d, {n: p.detach() for n, p in trainer.d_module.named_parameters()})
    sr = ref_g(lr)
    grads = torch.autograd.grad(-ref_d(sr).mean() + (sr - hr).abs().mean(), list(ref_g.parameters()))
    full = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    assert full > 10 * clip
    for (name, p), g in zip(trainer.g_module.named_parameters(), grads):
        expected = before[name] - cfg.optim.lr_g * g * clip / full
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_ema_uses_the_warmup_decay_and_matches_parameters_by_name(tmp_path, device):
    # On CUDA the update is one multi-tensor kernel (torch._foreach_lerp_): the same values.
    cfg = make_cfg(tmp_path, optim={"ema_decay": 0.5})
    trainer = Trainer(cfg, tmp_path / "run", DistContext(device=torch.device(device)))
    ema = {n: p.detach().clone() for n, p in trainer.ema.named_parameters()}
    lr, hr = (t.to(device) for t in batch())
    for t, decay in enumerate([0.1, 2 / 11, 3 / 12]):  # min(0.5, (1 + t) / (10 + t))
        step(trainer, lr, hr)
        params = dict(trainer.g_module.named_parameters())
        ema = {n: decay * e + (1 - decay) * params[n].detach() for n, e in ema.items()}
        for name, e in trainer.ema.named_parameters():
            torch.testing.assert_close(e, ema[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")
        for (name, b), (name_g, b_g) in zip(trainer.ema.named_buffers(), trainer.g_module.named_buffers()):
            assert name == name_g and torch.equal(b, b_g)
    assert min(0.5, (1 + 20) / (10 + 20)) == 0.5  # later the configured decay takes over


# --- precision --------------------------------------------------------------------------
@pytest.mark.parametrize("precision, conv_dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_paths(tmp_path, precision, conv_dtype):
    trainer = Trainer(make_cfg(tmp_path, train={"precision": precision},
                               loss={"js": True, "gw": True}), tmp_path / "run")
    seen = {}
    trainer.g_module.out.register_forward_hook(lambda m, i, o: seen.__setitem__("g", o.dtype))
    trainer.d_module.features[0].register_forward_hook(lambda m, i, o: seen.__setitem__("d_conv", o.dtype))
    trainer.d_module.register_forward_hook(lambda m, i, o: seen.__setitem__("d_score", o.dtype))
    row = step(trainer, *batch())
    assert seen == {"g": conv_dtype, "d_conv": conv_dtype, "d_score": torch.float32}
    assert all(math.isfinite(v) for k, v in row.items() if isinstance(v, float))
    assert row["critic_wasserstein"] != 0.0  # bf16 scores used to round d_real - d_fake to 0
    assert all(p.dtype == torch.float32 for p in trainer.g_module.parameters())


# --- budget -----------------------------------------------------------------------------
def test_max_minutes_stops_after_the_step_that_spent_it_with_a_checkpoint(tmp_path):
    from surge.training.checkpoint import load_checkpoint

    (tmp_path / "hr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "hr" / f"{i}.png")
    cfg = make_cfg(tmp_path, train={"stage": "psnr", "steps": 50, "max_minutes": 1e-9},
                   loss={"adversarial": False})
    result = Trainer(cfg, tmp_path / "run").run()
    assert result.step == 1 and result.budget_spent and not result.interrupted
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1


# --- data parallelism -------------------------------------------------------------------
def test_gw_needs_three_images_in_the_global_batch(tmp_path):
    with pytest.raises(ConfigError, match=r"loss.gw needs data.batch_size >= 3 .*got 2"):
        make_cfg(tmp_path, data={"batch_size": 2}, loss={"gw": True})
    make_cfg(tmp_path, data={"batch_size": 3}, loss={"gw": True})
    make_cfg(tmp_path, data={"batch_size": 2}, loss={"gw": True, "gw_normalize": False})
    make_cfg(tmp_path, data={"batch_size": 2})  # without GW a batch of 2 is fine


# No BatchNorm: PyTorch's SyncBatchNorm needs GPUs, so on CPU each rank normalises its own images.
DDP_SECTIONS = {"loss": {"js": True, "gw": True}, "generator": {"norm": "none"}}
COMPARED = ("loss_critic", "critic_wasserstein", "critic_gp", "critic_d_real", "critic_d_fake",
            "loss_g", "loss_adv", "loss_js", "loss_gw", "loss_l1", "w_adv", "w_js", "w_gw", "w_l1")


def _two_steps(trainer: Trainer, lr, hr) -> dict:
    rows, grads = [], []
    for _ in range(2):
        rows.append(step(trainer, lr, hr))
        grads.append({n: p.grad.clone() for n, p in trainer.g_module.named_parameters()})
    params = {n: p.detach().clone() for n, p in trainer.g_module.named_parameters()}
    return {"rows": rows, "grads": grads, "params": params}


def _ddp_worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        trainer = Trainer(make_cfg(Path(tmp), **DDP_SECTIONS), Path(tmp) / "ddp", DistContext(rank=rank, world_size=world))
        lr, hr = batch()
        local = BATCH // world
        mine = slice(rank * local, (rank + 1) * local)
        out = _two_steps(trainer, lr[mine], hr[mine])
        with torch.no_grad():  # what the loss was before: GW of this rank's images alone
            out["gw_local"] = float(divergence.gromov_wasserstein_loss(lr[mine], trainer.g_module(lr[mine])))
        # A BatchNorm generator trains on CPU too (DDP refuses SyncBatchNorm there).
        bn = Trainer(make_cfg(Path(tmp)), Path(tmp) / "bn", DistContext(rank=rank, world_size=world))
        out["bn_row"] = step(bn, lr[mine], hr[mine])
        torch.save(out, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_give_the_losses_weights_and_gradients_of_one_process_with_the_global_batch(tmp_path):
    world = 2  # 2 images per rank: GW of a rank's own batch is exactly 0
    mp.spawn(_ddp_worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    single = _two_steps(Trainer(make_cfg(tmp_path, **DDP_SECTIONS), tmp_path / "one"), *batch())

    assert ranks[0]["gw_local"] == 0.0  # the degenerate per-rank value the gather avoids
    assert ranks[0]["bn_row"]["loss_g"] == ranks[1]["bn_row"]["loss_g"] and math.isfinite(ranks[0]["bn_row"]["loss_g"])
    for k in range(2):
        one, r0, r1 = single["rows"][k], ranks[0]["rows"][k], ranks[1]["rows"][k]
        assert one["loss_gw"] > 1e-4
        # Every rank logs and weighs with the same values: bitwise.
        assert {key: r0[key] for key in COMPARED} == {key: r1[key] for key in COMPARED}
        # ... which are those of one process, to float32 rounding.
        assert {key: r0[key] for key in COMPARED} == {key: pytest.approx(one[key], rel=1e-5, abs=1e-7) for key in COMPARED}
        for name, g in single["grads"][k].items():  # DDP's averaged gradient is the global batch's
            scale = g.abs().max().item() + 1e-12
            for r in ranks:
                torch.testing.assert_close(r["grads"][k][name], g, rtol=0, atol=1e-4 * scale,
                                           msg=lambda m: f"step {k + 1}, {name}: {m}")
    lr_g = make_cfg(tmp_path).optim.lr_g
    for name, p in single["params"].items():
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name])  # DDP keeps replicas identical
        # Adam divides each gradient component by its own magnitude, so a component within rounding
        # of 0 may move by a sizeable fraction of lr: compare to a small fraction of the two updates.
        torch.testing.assert_close(ranks[0]["params"][name], p, rtol=0, atol=1e-3 * lr_g)


# --- host syncs -------------------------------------------------------------------------
def psnr_step_config(tmp_path, precision="fp32") -> ExperimentConfig:
    """gpu-real-psnr's kind of step: no BatchNorm, bicubic global residual, L1, EMA (+ grad clip)."""
    return make_cfg(tmp_path, generator={"norm": "none", "global_residual": True, "output_activation": "none"},
                    loss={"adversarial": False}, optim={"ema_decay": 0.999, "grad_clip": 1.0},
                    train={"stage": "psnr", "precision": precision})


@pytest.mark.parametrize("gan", [False, True])
def test_host_data_reaches_a_step_only_through_upload(tmp_path, monkeypatch, gan):
    # On CUDA a tensor made from host numbers inside the step (torch.tensor(x, device=...),
    # torch.from_numpy(a).to(device)) is a copy from pageable memory that waits for the GPU;
    # upload's pinned, non-blocking copy does not. The CPU-side check of the cuda test below.
    import surge.training.trainer as trainer_module

    cfg = make_cfg(tmp_path) if gan else psnr_step_config(tmp_path)
    trainer = Trainer(cfg, tmp_path / "run")
    lr, hr = batch()
    step(trainer, lr, hr)  # the first step initialises lazily (Adam's state)
    with HostData(monkeypatch, trainer_module) as made:
        queued = trainer._queue_step(lr, hr)
    assert made.elsewhere == []
    assert made.uploads == (cfg.optim.critic_steps if gan else 0)  # the gradient penalty's mix
    assert math.isfinite(trainer._read_row(*queued)["loss_g"])


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_psnr_step_queues_all_its_work_before_it_waits_for_the_gpu(tmp_path, precision):
    # gpu-real-psnr's kind of step (no BatchNorm, bicubic global residual, L1, EMA): every kernel of
    # the step is queued without a host sync (CUDA's sync debug mode raises on one: an .item(), a
    # pageable host-to-device copy, a stream synchronize); the one read comes after, in _read_row.
    trainer = Trainer(psnr_step_config(tmp_path, precision), tmp_path / "run", DistContext(device=torch.device("cuda")))
    cl = torch.channels_last
    lr, hr = (t.cuda().contiguous(memory_format=cl) for t in batch())
    step(trainer, lr, hr)  # the first step initialises lazily (Adam's state, cuDNN's plans)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        queued = trainer._queue_step(lr, hr)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    row = trainer._read_row(*queued)
    assert set(row) == {"loss_g", "loss_l1", "w_l1"} and math.isfinite(row["loss_g"]) and row["w_l1"] == 1.0


@pytest.mark.parametrize("mode, expected", [("default", None), ("reduce-overhead", "reduce-overhead")])
def test_compile_mode_reaches_torch_compile(tmp_path, monkeypatch, mode, expected):
    # reduce-overhead: CUDA graphs of the compiled forward and backward; the real compile is
    # test_training's (CPU) and the device session's compiled throughput row (CUDA).
    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: calls.append(kw) or module)
    trainer = Trainer(make_cfg(tmp_path, train={"compile": True, "compile_mode": mode}), tmp_path / "run")
    assert calls == [{"dynamic": False, "mode": expected}]
    assert trainer._graphs is False  # graph-tree step marks are for CUDA only
    with pytest.raises(ConfigError, match="train.compile_mode"):
        make_cfg(tmp_path, train={"compile_mode": "max-autotune"})


@pytest.mark.cuda
@pytest.mark.parametrize("on", [True, False])
def test_cudnn_benchmark_follows_the_config_on_cuda(tmp_path, on):
    previous = torch.backends.cudnn.benchmark
    try:
        Trainer(make_cfg(tmp_path, train={"cudnn_benchmark": on}), tmp_path / "run", DistContext(device=torch.device("cuda")))
        assert torch.backends.cudnn.benchmark is on
    finally:
        torch.backends.cudnn.benchmark = previous


def test_cudnn_benchmark_is_left_alone_on_cpu(tmp_path):
    previous = torch.backends.cudnn.benchmark
    Trainer(make_cfg(tmp_path, train={"cudnn_benchmark": not previous}), tmp_path / "run")
    assert torch.backends.cudnn.benchmark is previous
