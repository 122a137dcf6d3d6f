"""The two-stage SuRGe trainer: PSNR pre-training (L1) and adversarial fine-tuning.

One step of the ``gan`` stage (one generator forward, ``SR = G(x)``):
1. critic: ``E[D(SR)] - E[D(y)] + lambda * GP`` on the detached SR (``optim.critic_steps`` times);
2. generator: the enabled terms (adversarial, JS, GW, L1) of the same SR combined by dynamic
   softmax-of-loss weights or fixed weights (``[loss]``), logged every step.
With data parallelism every logged value and every dynamic weight is the global batch's,
identical on every rank, and the gradients are those of one process with the global batch.
The ``psnr`` stage has no critic and trains L1 (plus any enabled divergence term).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from surge import __version__
from surge.atomic import atomic_output, is_temp_file_of
from surge.data.pairs import PairDataset, StepSampler, load_training_pairs
from surge.data.torch_degradations import upload
from surge.errors import ModelFileError, SurgeError
from surge.losses import adversarial, divergence, pixel
from surge.losses.combine import generator_objective, running_state
from surge.models.critic import Critic
from surge.models.files import lineage_of, load_model_file, save_model, total_steps
from surge.models.generator import SuRGeGenerator
from surge.training.checkpoint import atomic_torch_save, load_checkpoint, rng_state, set_rng_state
from surge.training.config import ExperimentConfig
from surge.training.distributed import DistContext, broadcast_flag, gather_batch, mean_across_ranks
from surge.training.precision import device_name, resolve_precision, runtime_record
from surge.training.validation import check_val_set
from surge.training.logger import RunLog

log = logging.getLogger("surge.train")


class TrainingDiverged(SurgeError):
    """A loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    best_psnr: float | None
    interrupted: bool  # by a signal (exit 130); a spent time budget is a normal end
    budget_spent: bool = False


def _parent_lineage(init_from: str | None) -> list[dict]:
    """The provenance of the weights a run starts from, and of theirs: steps add up along the chain."""
    if not init_from:
        return []
    try:
        return lineage_of(init_from)
    except ModelFileError as exc:  # a resumed run whose start file has since gone: say so, never guess
        return [{"init_from": init_from, "unavailable": str(exc)}]


def _paired_tensors(ema: torch.nn.Module, model: torch.nn.Module) -> tuple[list, list, list, list]:
    """(EMA parameters, model parameters, EMA buffers, model buffers), paired by name (never a
    silent positional mismatch), detached. Made once: loading a state copies into these tensors."""
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    ema_params, ema_buffers = list(ema.named_parameters()), list(ema.named_buffers())
    return ([e for _, e in ema_params], [params[n].detach() for n, _ in ema_params],
            [e for _, e in ema_buffers], [buffers[n] for n, _ in ema_buffers])


def _lr_lambda(cfg: ExperimentConfig):
    o, total = cfg.optim, cfg.train.steps

    def factor(step: int) -> float:
        if o.warmup_steps and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        t = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


def _valued(term: torch.Tensor, value: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """``value`` in the forward pass, ``grad_scale`` times ``term``'s gradient in the backward pass."""
    return value.to(term.dtype) + grad_scale * (term - term.detach())


class Trainer:
    def __init__(self, cfg: ExperimentConfig, run_dir: Path, ctx: DistContext | None = None, resume: bool = False):
        self.cfg, self.run_dir, self.ctx = cfg, Path(run_dir), ctx or DistContext()
        self.device = self.ctx.device
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed + self.ctx.rank)
        self.gan = cfg.train.stage == "gan"
        self.generator = SuRGeGenerator(cfg.generator)
        if cfg.train.init_from and not resume:
            self._init_generator(Path(cfg.train.init_from))
        self.critic = Critic(cfg.critic) if self.gan and cfg.loss.needs_critic else None
        self._wrap_parallel()
        self._compile()
        self._graphs = cfg.train.compile and cfg.train.compile_mode == "reduce-overhead" and self.device.type == "cuda"
        o = cfg.optim
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=o.lr_g, betas=o.betas)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, _lr_lambda(cfg))
        self.opt_d = self.sched_d = None
        if self.critic is not None:
            self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=o.lr_d, betas=o.betas)
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, _lr_lambda(cfg))
        self.ema = copy.deepcopy(self.g_module).eval().requires_grad_(False) if o.ema_decay else None
        self._ema_pairs = _paired_tensors(self.ema, self.g_module) if self.ema is not None else None
        self.precision = resolve_precision(cfg.train.precision, self.device, warn=self.ctx.is_main)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None
        self.step, self.best_psnr, self.wall_before = 0, None, 0.0
        self.loss_scales = running_state(cfg.loss)  # "dynamic-invariant" weighting's running scales
        # What the model files record about themselves (see provenance()); a resumed run keeps its
        # checkpoint's, which stays exact where the init_from file is not at hand (another machine).
        self._lineage = _parent_lineage(cfg.train.init_from) if not resume else None
        if resume:
            self._restore(load_checkpoint(self.run_dir / "last.pt"))
        if self._lineage is None:
            self._lineage = _parent_lineage(cfg.train.init_from)
        self._stop_requested = False
        self._scored: tuple[int, float] | None = None  # (step, validation PSNR-Y) of the latest validation
        self._model_file_step: int | None = None  # step at which last.safetensors was last written

    # --- set-up -----------------------------------------------------------------------
    def _init_generator(self, path: Path) -> None:
        module, _ = load_model_file(path)
        if not isinstance(module, SuRGeGenerator) or module.config != self.cfg.generator:
            raise SurgeError(f"{path}: init_from weights do not match the [generator] config of this experiment")
        self.generator.load_state_dict(module.state_dict())

    def _wrap_parallel(self) -> None:
        self.generator.to(self.device)
        if self.critic is not None:
            self.critic.to(self.device)
        self.g_module, self.d_module = self.generator, self.critic
        if not self.ctx.enabled:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.cfg.generator.norm == "batch" and self.device.type == "cuda":
            self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
            self.g_module = self.generator
        elif self.cfg.generator.norm == "batch" and self.ctx.is_main:
            # DDP refuses SyncBatchNorm on CPU (ValueError at start-up), so gloo runs keep BatchNorm.
            log.warning("data-parallel training on CPU: PyTorch's SyncBatchNorm needs GPUs, so BatchNorm "
                        "statistics are each process's own (%d images), not the global batch's",
                        self.cfg.data.batch_size // self.ctx.world_size)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.generator = DDP(self.generator, device_ids=ids)
        if self.critic is not None:
            self.critic = DDP(self.critic, device_ids=ids)

    def _compile(self) -> None:
        """train.compile: the generator's training calls through torch.compile (inductor).

        Only the generator: the critic's gradient penalty differentiates twice (create_graph),
        which compiled graphs do not support. ``g_module`` stays the plain module, so checkpoints,
        EMA and validation see the same weights and names as an eager run.
        """
        if self.cfg.train.compile:
            mode = self.cfg.train.compile_mode
            self.generator = torch.compile(self.generator, dynamic=False, mode=None if mode == "default" else mode)

    def _autocast(self):
        p = self.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # --- state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "surge_version": __version__,
            "step": self.step,
            "best_psnr": self.best_psnr,
            "wall_seconds": self.wall_before + (time.time() - self._t0 if hasattr(self, "_t0") else 0.0),
            "config": json.loads(json.dumps(self.cfg.to_dict())),  # plain lists/dicts: weights_only-loadable
            "generator": self.g_module.state_dict(),
            "critic": self.d_module.state_dict() if self.d_module is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict() if self.sched_d is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state(),
            "loss_scales": self.loss_scales.state_dict() if self.loss_scales is not None else None,
            "lineage": self._lineage,
        }

    def _restore(self, state: dict) -> None:
        self.g_module.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.d_module is not None:
            self.d_module.load_state_dict(state["critic"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.best_psnr = state["step"], state["best_psnr"]
        self.wall_before = state.get("wall_seconds", 0.0)
        set_rng_state(state["rng"])
        if self.loss_scales is not None and state.get("loss_scales"):
            self.loss_scales.load_state_dict(state["loss_scales"])
        if isinstance(state.get("lineage"), list):
            self._lineage = state["lineage"]

    def inference_generator(self) -> SuRGeGenerator:
        return self.ema if self.ema is not None else self.g_module

    def provenance(self, tag: str = "last") -> dict:
        """What a weights file says about itself, and only itself.

        ``tag`` (last/best) and ``steps`` (this run's step when written); ``val_psnr_y``: the
        validation score of these very weights at this step (None if they were not validated);
        ``config``, ``wall_seconds``, ``init_from``; ``lineage``: the provenance of every file this
        run descends from (oldest first), so ``total_steps`` is the sum along the chain.
        """
        scored_step, score = self._scored or (None, None)
        provenance = {
            "tag": tag,
            "config": self.cfg.to_dict(),
            "init_from": self.cfg.train.init_from or None,
            "lineage": self._lineage,
            "val_set": Path(self.cfg.data.val_dir).name if self.cfg.data.val_dir else None,
            "experiment": self.cfg.train.name,
            "stage": self.cfg.train.stage,
            "steps": self.step,
            "batch_size": self.cfg.data.batch_size,
            "hr_size": self.cfg.data.hr_size,
            "training_data": [Path(d).name for d in self.cfg.data.train_dirs],
            "degradation": self.cfg.to_dict()["data"]["degradation"],  # None: bicubic LR
            "wall_seconds": round(self.wall_before + time.time() - self._t0),
            "val_psnr_y": score if scored_step == self.step else None,
            "ema": bool(self.ema is not None),
            "surge_version": __version__,
            "precision": self.precision,
            "trained_on": device_name(self.device),
            "loss": self.cfg.to_dict()["loss"],
        }
        provenance["total_steps"] = total_steps(provenance)
        return provenance

    def save(self, tag: str = "last") -> None:
        if not self.ctx.is_main:
            return
        atomic_torch_save(self.state_dict(), self.run_dir / f"{tag}.pt")
        self._save_model_file(tag)

    def _save_model_file(self, tag: str) -> None:
        save_model(self.inference_generator(), self.run_dir / f"{tag}.safetensors", provenance=self.provenance(tag))
        if tag == "last":
            self._model_file_step = self.step

    # --- the step ---------------------------------------------------------------------
    def _gp_mix(self, critic_iter: int, local: int) -> torch.Tensor:
        """The gradient penalty's eps for this rank's ``local`` samples, shape (local, 1, 1, 1).

        A pure function of (seed, step, critic iteration), drawn for the global batch and sliced
        per rank: N ranks use the eps one process would, a resumed run those of an uninterrupted
        one, and the global RNG is not touched.
        """
        rng = np.random.default_rng([self.cfg.train.seed, 3, self.step, critic_iter])
        eps = rng.random(local * self.ctx.world_size)[self.ctx.rank * local:(self.ctx.rank + 1) * local]
        # pinned and non-blocking: a plain copy to CUDA would wait for the GPU at every critic update
        return upload(eps.astype(np.float32), self.device).view(-1, 1, 1, 1)

    def _critic_step(self, hr: torch.Tensor, sr: torch.Tensor) -> dict:
        """``optim.critic_steps`` critic updates against ``sr``, this step's generator output, detached."""
        fake = sr.detach().float()
        for i in range(self.cfg.optim.critic_steps):
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                loss, stats = adversarial.critic_loss(self.critic, hr, fake, gp_weight=self.cfg.loss.gp_weight,
                                                      mix=self._gp_mix(i, fake.shape[0]))
            self._backward_and_step(loss, self.opt_d, self.d_module)
        # 0-d tensors, read with the rest of the step's values (train_step's one copy)
        return mean_across_ranks({"loss_critic": loss, **{f"critic_{k}": v for k, v in stats.items()}}, self.ctx)

    @contextlib.contextmanager
    def _critic_frozen(self):
        """The generator's step must not leave gradients in the critic; restored even on error."""
        self.d_module.requires_grad_(False)
        try:
            yield
        finally:
            self.d_module.requires_grad_(True)

    def _generator_terms(self, lr, hr, sr) -> dict[str, torch.Tensor]:
        """The enabled generator terms, each valued on the global batch (the same on every rank).

        With data parallelism each term's gradient is this rank's share of the global term's, so
        DDP's average of the ranks' gradients is what one process with the global batch gets.
        adv, JS and L1 are means of per-image values: the mean of the ranks' means is the global
        mean. GW compares the geometry of the whole batch (with 2 images per rank it would be 0,
        see ``divergence.gromov_wasserstein_loss``), so it is computed on the gathered batch; each
        rank's gradient then reaches its own images only, and DDP divides the sum of the ranks'
        gradients by the world size, hence the local gradient is scaled by it.
        """
        lc, ctx = self.cfg.loss, self.ctx
        active = lc.active_terms()
        sr32 = sr.float()
        terms: dict[str, torch.Tensor] = {}
        if "adv" in active:
            with self._critic_frozen():
                terms["adv"] = adversarial.generator_adversarial_loss(self.d_module, sr)
        if "js" in active:
            terms["js"] = divergence.js_divergence(sr32, hr, mode=lc.js_mode, temperature=lc.js_temperature, bins=lc.js_bins)
        if "gw" in active:
            terms["gw"] = divergence.gromov_wasserstein_loss(gather_batch(lr, ctx), gather_batch(sr32, ctx),
                                                             normalize=lc.gw_normalize)
        if "l1" in active:
            terms["l1"] = pixel.PIXEL_LOSSES[lc.pixel](sr32, hr)
        if not ctx.enabled:
            return terms
        values = mean_across_ranks(terms, ctx)
        return {k: _valued(t, values[k], ctx.world_size if k == "gw" else 1) for k, t in terms.items()}

    def _backward_and_step(self, loss, opt, module) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.grad_clip)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict:
        """One optimisation step; returns its logged values (losses, weights, critic statistics).

        Raises :class:`TrainingDiverged` when a loss is not finite. The check reads the step's values
        in one device-to-host copy after all of the step's work is queued: a check between forward
        and backward made the host wait for the forward before it could queue the backward, an idle
        gap on a GPU every step. The diverged step has then updated the weights in memory, but
        nothing of it is saved: the run stops before the checkpoint that would follow it.
        """
        row, total, terms, weights = self._queue_step(lr, hr)
        return self._read_row(row, total, terms, weights)

    def _queue_step(self, lr: torch.Tensor, hr: torch.Tensor):
        """The step's work, without waiting for the device (a GAN step waits once more: the
        dynamic-invariant loss weights are computed on the host from the critic's estimate)."""
        row: dict = {}
        if self._graphs:
            # A new iteration for CUDA graph trees: the previous step's graph outputs may be
            # overwritten (nothing of them is kept), and its backward is not still pending.
            torch.compiler.cudagraph_mark_step_begin()
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            # The step's only generator forward: the critic trains on its detached output (a
            # second, no-grad forward cost ~13% of a step and updated BatchNorm's statistics twice).
            sr = self.generator(lr)
        if self.critic is not None:
            row.update(self._critic_step(hr, sr))
        with self._autocast():
            terms = self._generator_terms(lr, hr, sr)
            # The critic's Wasserstein estimate: the offset-free signal of the adversarial term.
            signals = {"adv": row["critic_wasserstein"]} if "critic_wasserstein" in row else None
            total, weights = generator_objective(terms, self.cfg.loss, scales=self.loss_scales, signals=signals)
        self._backward_and_step(total, self.opt_g, self.g_module)
        self.sched_g.step()
        if self.sched_d is not None:
            self.sched_d.step()
        self._update_ema()
        return row, total, terms, weights

    def _read_row(self, row: dict, total, terms: dict, weights: dict) -> dict:
        names = [*row, "loss_g", *(f"loss_{k}" for k in terms), *(f"w_{k}" for k in weights)]
        tensors = [*row.values(), total, *terms.values(), *weights.values()]
        values = torch.stack([t.detach().reshape(()).float() for t in tensors]).tolist()  # the one sync
        row = dict(zip(names, values))
        self._check_finite(row, list(terms))
        return row

    def _check_finite(self, row: dict, terms: list[str]) -> None:
        checked = {k: row[f"loss_{k}"] for k in terms}
        if "loss_critic" in row:
            checked["critic"] = row["loss_critic"]
        bad = [k for k, v in checked.items() if not math.isfinite(v)]
        if bad or not math.isfinite(row["loss_g"]):
            raise TrainingDiverged(
                f"non-finite loss at step {self.step + 1} ({', '.join(bad) or 'total'}: "
                f"{json.dumps({k: checked[k] for k in bad} or row['loss_g'])}); stopped, last good checkpoint kept in "
                f"{self.run_dir / 'last.pt'}"
            )

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # Warm-up (as in timm/ultralytics): early on, the average must not be dominated by the
        # untrained initial weights, so the effective decay grows from ~0.1 to ema_decay.
        d = min(self.cfg.optim.ema_decay, (1 + self.step) / (10 + self.step))
        ema_params, params, ema_buffers, buffers = self._ema_pairs
        # One multi-tensor kernel on CUDA instead of a launch per tensor (~140 for the paper-size
        # generator); on CPU it is the same per-tensor lerp, bit for bit.
        torch._foreach_lerp_(ema_params, params, 1 - d)
        if ema_buffers:  # BatchNorm statistics; generators without BatchNorm have none
            torch._foreach_copy_(ema_buffers, buffers)

    def mixing_row(self) -> dict:
        w = self.g_module.mixing_weights()
        f0, f1 = w.values()
        return {"mix_mu": f0[0], "mix_nu": f0[1], "mix_alpha": f1[0], "mix_beta": f1[1], "mix_gamma": f1[2]}

    # --- validation -------------------------------------------------------------------
    def validate(self) -> float | None:
        val_dir = self.cfg.data.val_dir
        if not val_dir or not self.ctx.is_main:
            return None
        from surge.training.validation import validate_psnr

        net = self.inference_generator()
        was_training = net.training
        net.eval()
        # The checkpoint of this step is written before validation: validation must leave the
        # random stream as it found it, or a resumed run would differ from an uninterrupted one.
        cuda = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda):
                return validate_psnr(net, Path(val_dir), device=self.device)
        finally:
            net.train(was_training)

    # --- the loop ---------------------------------------------------------------------
    def _loader(self, start_step: int):
        cfg = self.cfg
        images, lr_images, report = load_training_pairs(
            list(cfg.data.train_dirs), list(cfg.data.lr_dirs) or None, cfg.data.hr_size
        )
        if self.ctx.is_main:
            log.info(report.summary())
        if cfg.data.pipeline == "device":
            from surge.data.device_pairs import DeviceBatches

            batches = DeviceBatches(images, cfg.data.hr_size, self.device, seed=cfg.train.seed, augment=cfg.data.augment,
                                    degradation=cfg.data.degradation, rank=self.ctx.rank, world_size=self.ctx.world_size)
            # data.workers processes draw each batch's plan (crops, kernels); the pixels are made here.
            return batches.steps(start_step, cfg.train.steps, cfg.data.batch_size, workers=cfg.data.workers), report
        dataset = PairDataset(images, cfg.data.hr_size, seed=cfg.train.seed, augment=cfg.data.augment,
                              lr_images=lr_images, degradation=cfg.data.degradation)
        sampler = StepSampler(start_step, cfg.train.steps, cfg.data.batch_size, self.ctx.rank, self.ctx.world_size)
        return torch.utils.data.DataLoader(
            dataset, batch_size=sampler.local, sampler=sampler, num_workers=cfg.data.workers,
            persistent_workers=cfg.data.workers > 0, drop_last=False,
            # Its own generator: creating the iterator must not draw from the global RNG,
            # or a resumed run's random stream (e.g. the GP's eps) would shift by one draw.
            generator=torch.Generator().manual_seed(cfg.train.seed),
        ), report

    def _on_signal(self, signum, frame) -> None:
        self._stop_requested = True

    def run(self) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        if ctx.is_main and cfg.data.val_dir:  # fail now, not at the first validation hours later
            check_val_set(Path(cfg.data.val_dir))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if ctx.is_main:
            self._remove_stale_temp_files()
        runlog = RunLog(self.run_dir / "log.csv", resume_step=self.step) if ctx.is_main else None
        loader, report = self._loader(self.step)
        if runlog is not None:
            self._record_runtime()
            if self.step == 0:
                _write_json(self.run_dir / "config.json", cfg.to_dict())
                _write_json(self.run_dir / "data.json", report.__dict__)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._t0 = time.time()
        self.generator.train()
        if self.critic is not None:
            self.critic.train()
        bar = tqdm(total=cfg.train.steps, initial=self.step, desc=cfg.train.name, unit="step",
                   disable=not ctx.is_main, dynamic_ncols=True, file=sys.stderr)
        interrupted = budget_spent = False
        try:
            for lr, hr in loader:
                # channels_last inputs make every conv run NHWC (weights stay contiguous, so the
                # saved files are unchanged): ~10% faster per step on CPU, more on GPUs.
                cl = torch.channels_last
                lr = lr.to(self.device, non_blocking=True).contiguous(memory_format=cl)
                hr = hr.to(self.device, non_blocking=True).contiguous(memory_format=cl)
                t_step = time.time()
                row = self.train_step(lr, hr)
                self.step += 1
                bar.update(1)
                if runlog is not None and (self.step % cfg.train.log_every == 0 or self.step == 1):
                    row = {"step": self.step, "seconds": round(time.time() - t_step, 4),
                           "lr_g": self.sched_g.get_last_lr()[0], **row, **self.mixing_row()}
                    bar.set_postfix(loss=f"{row['loss_g']:.4f}")
                    runlog.log(row)
                # Checkpoint first: a validation that crashes must not lose the steps since the last one.
                ckpt_now = self.step % cfg.train.ckpt_every == 0 or self.step == cfg.train.steps
                if ckpt_now:
                    self.save("last")
                if self.step % cfg.train.val_every == 0 or self.step == cfg.train.steps:
                    self._validate_and_keep_best(runlog, bar, last_saved=ckpt_now)
                over_budget = cfg.train.max_minutes and time.time() - self._t0 > 60 * cfg.train.max_minutes
                if broadcast_flag(ctx, self._stop_requested or bool(over_budget)):
                    interrupted, budget_spent = not over_budget, bool(over_budget)
                    self.save("last")
                    if over_budget:  # a budgeted run ends like a finished one: validated, best kept
                        self._validate_and_keep_best(runlog, bar, last_saved=True)
                    if ctx.is_main:
                        why = "time budget reached" if over_budget else "stop requested"
                        bar.write(f"{why}: stopped at step {self.step}; checkpoint saved, resume with --resume {self.run_dir}", file=sys.stderr)
                    break
        finally:
            bar.close()
            for s, h in previous.items():
                signal.signal(s, h)
            if runlog is not None:
                runlog.close()
        return TrainResult(self.run_dir, self.step, self.best_psnr, interrupted, budget_spent)

    def _validate_and_keep_best(self, runlog, bar, last_saved: bool = False) -> None:
        psnr = self.validate()
        if psnr is None:
            return
        bar.write(f"step {self.step}: validation PSNR-Y {psnr:.3f} dB", file=sys.stderr)
        runlog.log({"step": self.step, "val_psnr_y": round(psnr, 4)})
        self._scored = (self.step, psnr)
        if self._model_file_step == self.step:  # last.safetensors of this step was written before its score
            self._save_model_file("last")
        if self.best_psnr is None or psnr > self.best_psnr:
            self.best_psnr = psnr
            self.save("best")
            if last_saved:  # last.pt of this step was written before validation: give it the new best
                atomic_torch_save(self.state_dict(), self.run_dir / "last.pt")

    def _remove_stale_temp_files(self) -> None:
        # A run killed mid-write (SIGKILL) leaves atomic_output's temp files; the targets are
        # intact. Only names this program generates: other *.tmp files may be the user's.
        for path in self.run_dir.iterdir():
            if is_temp_file_of(path, RUN_FILES):
                path.unlink(missing_ok=True)

    def _record_runtime(self) -> None:
        """Append this process's precision and machine to runtime.json (a resumed run may move)."""
        record = runtime_record(self.cfg.train.precision, self.precision, self.device, self.step, self.ctx.world_size)
        log.info("precision %s (train.precision = %s) on %s", self.precision, self.cfg.train.precision,
                 record["device_name"])
        path = self.run_dir / "runtime.json"
        try:
            history = json.loads(path.read_text()) if path.exists() and self.step else []
        except (OSError, ValueError):
            history = []  # an unreadable record must not stop a run; it is rewritten whole
        history = [r for r in history if isinstance(r, dict) and r.get("start_step", 0) < self.step]
        _write_json(path, [*history, record])


# Files a run writes into its folder (through atomic_output, whose temp names derive from these).
RUN_FILES = ("last.pt", "best.pt", "last.safetensors", "best.safetensors", "log.csv", "config.json",
             "data.json", "runtime.json")


def _write_json(path: Path, data) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2))
