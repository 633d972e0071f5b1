"""DistributedDataParallel helpers: read the ``torchrun`` environment, pick the backend and device.

Under ``torchrun --nproc_per_node N`` every process has ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
set; without them training is single-process. CPU uses the gloo backend, CUDA nccl.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``, and whether it
    initialised the process group itself (then :func:`cleanup` destroys it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else CPU.

    Raises:
        ValueError: ``"cuda"`` asked for on a machine without CUDA.
    """
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but CUDA is not available here; use --device cpu or auto")
    if device in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device == "auto":
        return torch.device("cpu")
    raise ValueError(f"device: expected auto, cpu or cuda; got {device!r}")


def setup(device: str = "auto") -> DistEnv:
    """Joins (or creates) the process group when ``WORLD_SIZE > 1`` and picks this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistEnv(device=dev)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        owns = True
        log.info("rank %d/%d joined the %s process group on %s", rank, world_size, backend, dev)
    return DistEnv(rank, world_size, local_rank, dev, owns)


def single_process(device: str = "auto") -> DistEnv:
    """The environment of a one-process run on ``device``.

    Raises:
        ValueError: under ``torchrun`` (``WORLD_SIZE > 1``): the caller must join the process group
            with :func:`setup` (or :func:`process_group`) and pass its environment.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        raise ValueError(
            f"env: this process is one of WORLD_SIZE={world_size} (torchrun); set up the process "
            f"group first (stnkit.experiments.train.distributed.setup) and pass its env"
        )
    return DistEnv(device=resolve_device(device))


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistEnv]:
    """:func:`setup` on entry, :func:`cleanup` on exit (also on errors and Ctrl-C)."""
    env = setup(device)
    try:
        yield env
    finally:
        cleanup(env)


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Sums ``values`` over all ranks (float64); identity when single-process."""
    if not env.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def cleanup(env: DistEnv) -> None:
    """Destroys the process group if :func:`setup` created it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()
