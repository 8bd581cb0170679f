"""Device and precision selection: CPU by default, CUDA/MPS when present, never hard-coded."""
from __future__ import annotations

import torch

from .errors import AvctError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | None = "auto") -> torch.device:
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AvctError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AvctError(f"device {name} requested but CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AvctError(f"device {name} requested but MPS is not available on this machine")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    try:
        dtype = PRECISIONS[name]
    except KeyError:
        raise AvctError(f"unknown precision {name!r}; use {', '.join(PRECISIONS)}") from None
    if dtype == torch.float16 and device.type == "cpu":
        raise AvctError("fp16 is not supported on the CPU; use bf16 (fast on CPUs with AVX-512-BF16/AMX) or fp32")
    return dtype
