"""Data-parallel training under ``torchrun``: process-group setup and the few collectives used.

``torchrun --nproc_per_node=K`` starts K copies of a command with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. Without them (a plain ``nas-sr`` call)
everything here is a single-process no-op, so the training code has one path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nas_sr.device import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, logs and writes checkpoints."""
        return self.rank == 0


def setup(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun set up (gloo on CPU, NCCL on GPU) and pick the device."""
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device
    if device.type == "cuda":  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size()), device


def teardown(d: Dist, ok: bool = True) -> None:
    """Leave the process group. After a clean run every rank first waits for the others, so
    none tears gloo down (and exits) while a peer is still finishing its last collective."""
    if d.enabled and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def all_sum(d: Dist, values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over all processes (in place)."""
    if d.enabled:
        dist.all_reduce(values)
    return values


@contextmanager
def main_first(d: Dist) -> Iterator[None]:
    """Rank 0 runs the block before the others (e.g. builds a cache file they then read)."""
    if d.enabled and not d.is_main:
        dist.barrier()
    yield
    if d.enabled and d.is_main:
        dist.barrier()


def check_same(d: Dist, value: str, hint: str) -> None:
    """Fail on every rank when the processes disagree on ``value`` (e.g. the run folder)."""
    if not d.enabled:
        return
    values: list[str | None] = [None] * d.world_size
    dist.all_gather_object(values, value)
    if len(set(values)) > 1:
        raise RuntimeError(f"the {d.world_size} processes disagree: {values}; {hint}")
