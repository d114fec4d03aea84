"""Process-group set-up for ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m reslab train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment. The
trainer then joins the process group (NCCL on CUDA, gloo on CPU), each rank trains on its
shard of every global batch, gradients are averaged by DDP, and rank 0 alone writes files
and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from reslab.errors import ConfigError
from reslab.utils import resolve_device


@dataclass
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its device, and whether it set up the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place (a no-op on one process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (e.g. a signal reached one of them)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"environment variable WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1); else one process.

    device: ``"auto"`` gives rank ``r`` the GPU ``LOCAL_RANK`` when CUDA is available, else the
    CPU; ``"cpu"`` forces gloo on CPU.
    """
    world_size = env_world_size()
    if world_size <= 1:
        return DistInfo(device=resolve_device(device))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    requested = resolve_device(device)
    if requested.type == "cuda":
        index = requested.index if requested.index is not None and device not in ("auto", "cuda") else local_rank
        if index >= torch.cuda.device_count():
            raise ConfigError(f"rank {rank} wants cuda:{index} but only {torch.cuda.device_count()} GPU(s) are visible; "
                              "start at most one process per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(index)
        resolved = torch.device("cuda", index)
        backend = "nccl"
    else:
        resolved = torch.device("cpu")
        backend = "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        owns = True
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                    device=resolved, owns_group=owns)
