"""Data-parallel set-up through torch.distributed (launched by ``torchrun``).

gloo on CPU, NCCL on CUDA. Only rank 0 writes logs and checkpoints. The collectives the
generator's loss needs (:func:`gather_batch`, :func:`mean_across_ranks`) are plain identities in a
single process, so the trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: str = "auto") -> DistContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device in ("auto", "cuda") and torch.cuda.is_available() or device.startswith("cuda")
    if world_size <= 1:
        dev = torch.device("cuda" if want_cuda else "cpu") if device == "auto" else torch.device(device)
        return DistContext(device=dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown(ctx: DistContext, finished: bool = True) -> None:
    """Tear the process group down; ``finished``: every rank got here by the same normal path.

    A finished run meets at a barrier first, so no rank closes its connections while a peer is
    still inside the last collective: gloo's teardown is not collective, and a gloo thread whose
    peer vanished mid-operation throws outside Python (std::terminate, SIGABRT), so torchrun
    reports a completed run as failed. (The two-rank CPU test died once in CI with rank 1 aborted,
    its own message cut from the log; not reproduced here. The likeliest cause is this race.) A
    rank that failed skips the barrier: its peers may never arrive, and torchrun stops them.
    """
    if not (ctx.enabled and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def broadcast_flag(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if it is true on any (e.g. a stop signal received by one rank)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_batch(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The global batch: every rank's ``x`` concatenated in rank order, as one process would see it.

    Only this rank's slot is ``x`` itself and carries its gradient; the other ranks' slots are
    constants. (``torch.distributed.nn.functional.all_gather`` would send gradients back, but it
    is deprecated; a caller that needs the full gradient of a batch-level term scales its local
    part instead, see ``Trainer._generator_terms``.) Every rank's ``x`` must have the same shape.
    """
    if not ctx.enabled:
        return x
    local = x.detach().contiguous()
    parts = [torch.empty_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(parts, local)
    parts[ctx.rank] = x
    return torch.cat(parts)


def mean_across_ranks(values: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, torch.Tensor]:
    """Detached float32 means over the ranks of 0-d tensors, in one all_reduce.

    Every rank receives the same values, so decisions taken from them (dynamic loss weights, the
    non-finite-loss stop) are the same on every rank.
    """
    if not values:
        return {}
    names = list(values)
    stacked = torch.stack([values[k].detach().reshape(()).float() for k in names])
    if ctx.enabled:
        dist.all_reduce(stacked)
        stacked = stacked / ctx.world_size
    return {k: stacked[i] for i, k in enumerate(names)}
