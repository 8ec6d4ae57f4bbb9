"""Data-parallel training under ``torchrun``: the process group, each rank's data and collectives.

``torchrun`` starts one process per rank and tells each its place in environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). ``start`` joins that
process group: gloo on CPU, nccl on CUDA. Without those variables nothing is started, and every
helper here acts for a world of one process, so plain ``python -m model.train`` runs as before.

``--batch-size`` is the global batch: each of W processes trains on B / W of its images, and
DistributedDataParallel averages the gradients, which is the gradient of the global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar, cast

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

# Ranks wait for rank 0 while it validates and draws the sample grid at each epoch's end (with
# the naive sampler on a big CPU model that takes minutes); gloo's default of 30 minutes is
# uncomfortably close on a busy machine, and nccl's default (10 minutes) is closer still.
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs, plots and sample grids."""
        return self.rank == 0

    @classmethod
    def current(cls) -> World:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def start(device: str) -> str:
    """Join torchrun's process group when launched by it; returns the device for this rank.

    On CUDA each process on a machine takes the GPU numbered by its ``LOCAL_RANK``.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if torch.device(device).type == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=PROCESS_GROUP_TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return device


def stop() -> None:
    """Leave the process group, if one was joined (a no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_global_batch(global_batch: int, world_size: int) -> int:
    """The per-process batch: ``global_batch / world_size``, which must be a whole number."""
    if global_batch % world_size:
        raise ValueError(
            f"the global batch size ({global_batch}) must be divisible by the number of processes "
            f"({world_size}): pass a --batch-size that is a multiple of {world_size}"
        )
    return global_batch // world_size


def epoch_batches(seed: int, epoch: int, size: int, global_batch: int, world: World) -> list[torch.Tensor]:
    """This rank's share of each of the epoch's global batches (a last partial batch is dropped).

    Global batch k is positions ``[k*B, (k+1)*B)`` of the epoch's permutation of the ``size``
    training images. DistributedSampler gives rank r the positions r, r+W, r+2W, ..., so the
    k-th slice of B/W of them is rank r's share of global batch k: the global batches, and so
    the training, do not depend on the number of processes, and a run resumed with another
    number continues at the same global batch. With one process these are the old batches:
    the seed ``seed * 100_003 + epoch`` is the one runs used before training was distributed.
    """
    per_rank = check_global_batch(global_batch, world.size)
    sampler: DistributedSampler[int] = DistributedSampler(
        cast(Dataset[int], range(size)),  # the sampler only asks for len()
        num_replicas=world.size,
        rank=world.rank,
        shuffle=True,
        seed=seed * 100_003,
        drop_last=True,
    )
    sampler.set_epoch(epoch)  # the sampler adds the epoch to the seed: a new order each epoch
    mine = torch.tensor(list(sampler), dtype=torch.long)
    steps = size // global_batch
    return list(mine[: steps * per_rank].split(per_rank))


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """The sums of ``values`` over all ranks, the same on every rank (``values`` for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return [float(v) for v in total.tolist()]


def from_main(obj: T) -> T:
    """Rank 0's ``obj`` on every rank; the others wait here for it.

    It travels pickled, which suits settings, a verdict or a checkpoint of a few tens of MB.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box: list[object] = [obj]
    dist.broadcast_object_list(box, src=0)
    return cast(T, box[0])
