"""The CPU allocator setting the pipeline applies (devices.keep_large_allocations_in_heap): after it, a
block whose tensors exceed glibc's 32 MB mmap threshold reuses heap memory instead of page-faulting fresh
pages on every call. Measured in fresh processes (the setting is process-wide and permanent), each with one
intra-op thread and an environment without allocator or threading variables: glibc gives every thread
its own arena (whose heaps are at most 64 MB, so a worker thread's large buffer is mmapped afresh
whatever the setting), and a variable such as MALLOC_ARENA_MAX or OMP_NUM_THREADS inherited from an
earlier test would change what is measured."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys, torch
torch.set_num_threads(1)
from avct.inference.devices import keep_large_allocations_in_heap
from avct.models.blocks import UpBlock2d
tuned = keep_large_allocations_in_heap() if sys.argv[1] == "1" else False
torch.manual_seed(0)
up = UpBlock2d(128, 64).eval()
x = torch.randn(8, 128, 128, 128)  # fp32: packed output 136 MB, the interleaved image 134 MB
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode():
        up(x)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(), faults()  # warm-up: the heap grows to its high-water mark
print(json.dumps({"tuned": tuned, "faults": [faults() for _ in range(3)]}))
"""


def _clean_environment() -> dict[str, str]:
    """This process's environment without the variables that change glibc's allocator or the thread pools."""
    prefixes = ("MALLOC_", "GLIBC_TUNABLES", "OMP_", "MKL_", "KMP_", "LD_PRELOAD", "DNNL_", "ONEDNN_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _probe(tune: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, "1" if tune else "0"], capture_output=True, text=True,
                         check=True, env=_clean_environment())
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the setting is glibc's; elsewhere it is a documented no-op")
def test_large_tensors_stop_page_faulting_once_the_heap_keeps_them():
    default, tuned = _probe(False), _probe(True)
    assert tuned["tuned"] is True
    pages = 2 * 134e6 / 4096  # two >32 MB tensors a call: tens of thousands of fresh pages by default
    assert min(default["faults"]) > 0.5 * pages
    assert sorted(tuned["faults"])[1] < 0.01 * pages  # the median call: next to none
