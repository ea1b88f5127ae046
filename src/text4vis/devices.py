"""Where the computation runs: device choice, the precision rule, and the torchrun process group.

One place for each: `pick_device` (what `device=` means), `precision_name`/`autocast` (what
`precision=` computes in), `process_group` (join torchrun's group for the length of a run),
`device_name` (what a benchmark record calls the device).
"""
from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: the command line's parser reads PRECISIONS without loading it.
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # compute precision: auto = bf16 on GPUs that have it, else fp16


def pick_device(device: str = "auto") -> torch.device:
    """`auto`: this process's CUDA GPU (torchrun: LOCAL_RANK), else the CPU; otherwise the device named,
    checked against this machine (DeviceError naming `device=` if it is not here)."""
    import torch
    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")  # torchrun: one GPU per process
    what = f"device={device!r}"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"{what}: not a device name (cpu, cuda, cuda:1, ... or auto)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"{what}: no CUDA GPU is usable on this machine (use device='cpu')")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"{what}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{what}: Apple MPS is not available on this machine (use device='cpu')")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"{what}: text4vis runs on cpu, cuda or mps")
    return dev


def precision_name(device: torch.device, dtype: str = "auto") -> str:
    """What `autocast(device, dtype)` computes in: fp32 on the CPU; auto = bf16 where supported, else fp16."""
    import torch
    if dtype not in PRECISIONS:
        raise ValueError(f"precision {dtype!r}: choose one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        return "fp32"
    if dtype == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return dtype


def autocast(device: torch.device, dtype: str = "auto"):
    """bf16 autocast on GPUs that have it (fp16 otherwise), or the dtype asked for; fp32 on the CPU."""
    import torch
    name = precision_name(device, dtype)
    if name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if name == "bf16" else torch.float16)


# ----------------------------------------------------------------------------- torchrun

def is_dist() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def rank_world() -> tuple[int, int]:
    import torch.distributed as dist
    return (dist.get_rank(), dist.get_world_size()) if is_dist() else (0, 1)


def setup_distributed() -> tuple[int, int, torch.device]:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK: NCCL on GPUs, gloo on CPUs. Returns (rank, world, device)."""
    import torch
    import torch.distributed as dist
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    return rank, world, device


@contextlib.contextmanager
def process_group():
    """Join torchrun's process group (if launched under torchrun) for the length of the block; yields
    (rank, world, device). A group this call created is destroyed at the end, one made by the caller kept."""
    import torch.distributed as dist
    own = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    try:
        yield setup_distributed()
    finally:
        if own and dist.is_initialized():
            dist.destroy_process_group()


def device_name(device) -> str:
    """The GPU's name, or the CPU's with its cores and threads (the `device` of a benchmark record)."""
    import torch
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
