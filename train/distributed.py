"""Distributed training under torchrun: the process group, ranks, and agreeing on a failure.

Every function here imports torch only when called, so that the gate (which
runs before torch is imported) and the single-process path can use
:func:`rank`, :func:`world_size` and :func:`world_size_env` freely.
"""

from __future__ import annotations

import os
from typing import Any

from audit.errors import InputError
from train.gate import Refused

__all__ = ["agree", "barrier", "init_distributed", "rank", "sync_epoch", "torch_dist", "world_size",
           "world_size_env"]

_NO_TORCH = "pip install torch==2.13.0 and pip install 'bidsaudit[train]'"


def world_size_env() -> int:
    """``$WORLD_SIZE`` as torchrun sets it (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise InputError(None, "WORLD_SIZE is not an integer", field="WORLD_SIZE",
                         got=repr(os.environ.get("WORLD_SIZE"))) from None


def init_distributed(device: str) -> Any:
    """Join torchrun's process group: NCCL on CUDA (one GPU per local rank), gloo on CPU."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise InputError(None, "training needs PyTorch, which is not installed", expected=_NO_TORCH) from None
    if not dist.is_available():
        raise InputError(None, "this PyTorch build has no torch.distributed",
                         expected="a build with it, or one process")
    cuda = device != "cpu" and torch.cuda.is_available() and not device.startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist


def agree(failure: BaseException | None, what: str) -> None:
    """Every rank learns whether any rank failed; each raises its own error, or says another rank failed."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([0 if failure is None else (2 if isinstance(failure, InputError) else 1)])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if failure is not None:
        raise failure
    if int(flag.item()):
        if int(flag.item()) == 2:
            raise InputError(None, f"another rank could not pass {what} (its message is above)")
        raise Refused(f"another rank stopped at {what}", ["see rank 0's message"])


def torch_dist() -> Any:
    """``torch.distributed`` (imported on call)."""
    import torch.distributed as dist

    return dist


def rank() -> int:
    """This process's rank under torchrun (0 without a process group)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    import torch.distributed as dist

    if world_size() > 1:
        dist.barrier()


def sync_epoch(model: Any, total: float, count: int, device: Any) -> tuple[float, int]:
    """Sum the epoch's loss over ranks; give every rank rank 0's buffers (BatchNorm statistics)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    for buf in model.buffers():
        dist.broadcast(buf, 0)
    return float(t[0]), int(t[1])
