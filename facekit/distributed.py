"""PyTorch's distributed engine as training uses it: torchrun sets the environment, gloo on CPU, NCCL on GPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Distributed:
    """This process's place in the job (a single process when not started by torchrun)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_env(cls, device: str = "auto") -> Distributed:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        dev = resolve_device(device)
        if world_size == 1:
            return cls(0, 1, dev)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        torch_dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return cls(torch_dist.get_rank(), torch_dist.get_world_size(), dev)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def mean(self, value: float) -> float:
        """The mean of `value` over all ranks."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(t)
        return float(t) / self.world_size

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
