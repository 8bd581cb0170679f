"""The CPU allocator setting the pipeline applies (devices.keep_large_allocations_in_heap): after it, a
block whose tensors exceed glibc's 32 MB mmap threshold reuses heap memory instead of page-faulting fresh
pages on every call. Measured in fresh processes (the setting is process-wide and permanent)."""
from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys, torch
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


def _probe(tune: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, "1" if tune else "0"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the setting is glibc's; elsewhere it is a documented no-op")
def test_large_tensors_stop_page_faulting_once_the_heap_keeps_them():
    default, tuned = _probe(False), _probe(True)
    assert tuned["tuned"] is True
    pages = 2 * 134e6 / 4096  # two >32 MB tensors a call: tens of thousands of fresh pages by default
    assert min(default["faults"]) > 0.5 * pages
    assert sorted(tuned["faults"])[1] < 0.01 * pages  # the median call: next to none
