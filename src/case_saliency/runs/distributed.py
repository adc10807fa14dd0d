"""Ranks of a run started by ``torchrun`` (PyTorch's own launcher and rendezvous): which process
this is, its device, and the few collectives a run needs (agree on a value, a barrier, a sum).

A run is distributed when ``WORLD_SIZE`` > 1 in the environment (torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); the process group is created on
first use with NCCL where every rank has a GPU of its own, else gloo. Nothing assumes one node: ranks meet
through torchrun's rendezvous (``--standalone``, or ``--nnodes``/``--rdzv-endpoint`` across nodes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` among ``world`` processes, and its ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Ranks:
    """The ranks torchrun gives this process (a single process without torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise ValueError(f"WORLD_SIZE/RANK/LOCAL_RANK are not integers ({error}); start runs with torchrun") \
            from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return Ranks(rank, world, local)


def default_device() -> str:
    """``cuda:LOCAL_RANK`` where CUDA exists (each rank on its own GPU), else ``cpu``."""
    if torch.cuda.is_available():
        ranks = from_env()
        return f"cuda:{ranks.local_rank % torch.cuda.device_count()}"
    return "cpu"


class Group:
    """The run's process group: created (and destroyed by ``close``) when a run is distributed and no
    group exists yet; a no-op for a single process."""

    def __init__(self, ranks: Ranks, device: torch.device):
        self.ranks = ranks
        self.device = device
        self._owned = False
        if not ranks.distributed:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            # NCCL where every rank of the node has a GPU of its own; otherwise gloo (CPU ranks, or ranks
            # sharing a GPU, which NCCL refuses). Only small control messages pass through the group.
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ranks.world))
            own_gpus = device.type == "cuda" and torch.cuda.device_count() >= local_world
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if own_gpus else "gloo")
            self._owned = True
        if dist.get_world_size() != ranks.world or dist.get_rank() != ranks.rank:
            raise RuntimeError(f"the process group (rank {dist.get_rank()} of {dist.get_world_size()}) disagrees "
                               f"with RANK={ranks.rank}, WORLD_SIZE={ranks.world}")

    def _tensor_device(self) -> torch.device:
        import torch.distributed as dist

        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def share(self, value: Any, source: int = 0) -> Any:
        """``value`` of rank ``source``, on every rank (a picklable object)."""
        if not self.ranks.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.ranks.rank == source else None]
        dist.broadcast_object_list(box, src=source, device=self._tensor_device())
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.ranks.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.ranks.world
        dist.all_gather_object(out, value)
        return out

    def total(self, value: int) -> int:
        """The sum of an integer over the ranks."""
        if not self.ranks.distributed:
            return value
        import torch.distributed as dist

        tensor = torch.tensor([int(value)], dtype=torch.long, device=self._tensor_device())
        dist.all_reduce(tensor)
        return int(tensor.item())

    def barrier(self) -> None:
        if self.ranks.distributed:
            import torch.distributed as dist

            if dist.get_backend() == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def close(self) -> None:
        if self._owned:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._owned = False
