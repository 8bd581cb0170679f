"""Device and precision selection: CPU by default, CUDA/MPS when present, never hard-coded."""
from __future__ import annotations

import os

import torch

from ..errors import AvctError, notice
from .options import PRECISION_CHOICES

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
assert PRECISION_CHOICES == ("auto", *PRECISIONS)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 convolutions natively. Why it matters: on a CPU without
    AVX-512-BF16 or AMX (e.g. AVX2-only EPYCs) oneDNN has no bf16 kernels and PyTorch falls back to an
    emulated im2col path that is far *slower* than fp32 (docs/performance.md, "Runtimes")."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto``: CUDA, then MPS, then the CPU; under torchrun (``LOCAL_RANK`` set) each process its own
    GPU, ``cuda:LOCAL_RANK`` (modulo the GPUs present), so that N processes share N GPUs."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            local_rank = os.environ.get("LOCAL_RANK", "")
            if local_rank.isdigit():
                return torch.device(f"cuda:{int(local_rank) % torch.cuda.device_count()}")
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
    """``auto``: bf16 where the device computes it natively (visually identical, and faster), else fp32.
    An explicit ``bf16`` is honoured, with a notice where it is emulated (and so slower than fp32)."""
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    try:
        dtype = PRECISIONS[name]
    except KeyError:
        raise AvctError(f"unknown precision {name!r}; use {', '.join(PRECISION_CHOICES)}") from None
    if dtype == torch.float16 and device.type == "cpu":
        raise AvctError("fp16 is not supported on the CPU; use bf16 (fast on CPUs with AVX-512-BF16/AMX) or fp32")
    if dtype == torch.bfloat16 and device.type == "cpu" and not native_bf16(device):
        notice("this CPU has no native bf16 (AVX-512-BF16 or AMX): bf16 is emulated and slower than fp32 here; "
               "use --precision auto or fp32")
    return dtype


def render_threads(device: torch.device, concurrent_calls: bool = True) -> tuple[int, int]:
    """(worker threads, intra-op threads each) for rendering batches of frames side by side;
    ``concurrent_calls``: whether the renderer may be called from two threads at once (eager torch; not
    one OpenVINO request, nor a compiled graph).

    Why: on a CPU, two renderer threads with half the intra-op threads each spend less CPU on the same
    frames than one with all of them (each operation split in two pays a barrier, and the waiting half
    spins), which leaves more of the cores to the compositor and the encoder beside them (measured in
    docs/performance.md, "Two renderer threads"). Elsewhere, or where the renderer
    allows one call at a time, one worker with the process' own threads."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or not concurrent_calls:
        return 1, threads
    workers = 2 if threads >= 2 else 1
    return workers, max(1, threads // workers)


_HEAP_TUNED = False


def keep_large_allocations_in_heap(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc serve CPU tensors of up to ``limit_bytes`` from its heap and keep freed memory for reuse.

    Why: glibc hands every allocation above 32 MB a fresh ``mmap`` and unmaps it on free, so a renderer
    batch whose activations exceed that (8 frames at 128² × 128 channels already do) page-faults and
    zeroes those pages again on every call, a sizeable share of CPU inference time (docs/performance.md,
    "Allocator"). Raising the mmap and
    trim thresholds makes the process keep its high-water mark instead (the pipeline streams in bounded
    chunks, so that mark stays flat). Process-wide, done once; a no-op away from glibc. Returns whether
    it took effect."""
    global _HEAP_TUNED
    if _HEAP_TUNED:
        return True
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, ctypes.c_int(limit_bytes)) == 1
        ok = ok and libc.mallopt(m_trim_threshold, ctypes.c_int(2 * limit_bytes - 1)) == 1
    except (OSError, AttributeError):
        return False
    _HEAP_TUNED = ok
    return ok
