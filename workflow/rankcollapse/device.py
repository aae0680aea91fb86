"""The device a job computes on, and the process settings that make its steps fast."""

from __future__ import annotations

import ctypes
import functools
import sys

import torch

# Where measures are computed whatever the training device (float64, same numbers anywhere).
CPU = torch.device("cpu")


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed the initialisation and return the generator that orders the batches."""
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    return torch.Generator(device=device).manual_seed(seed)


@functools.cache
def keep_freed_memory() -> None:
    """Have glibc keep freed memory in the heap up to 1 GiB, instead of handing each large
    block back to the OS on free (a step's gradients and activations are freed and allocated
    again every step; every hand-back costs page faults on the next step, a fifth of a CPU
    step's time at width 512). Linux only; elsewhere nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
