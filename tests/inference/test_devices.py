"""Precision choice: ``auto`` takes bf16 only where the device computes it natively, because on CPUs
without AVX-512-BF16/AMX PyTorch emulates bf16 convolutions far slower than fp32."""
import pytest
import torch

from avct.inference import devices
from avct.errors import AvctError, AvctNotice

CPU = torch.device("cpu")


@pytest.mark.parametrize("native,expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(devices, "native_bf16", lambda device: native)
    assert devices.resolve_precision("auto", CPU) == expected


def test_emulated_bf16_is_honoured_with_a_notice(monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    with pytest.warns(AvctNotice, match="no native bf16"):
        assert devices.resolve_precision("bf16", CPU) == torch.bfloat16


def test_native_bf16_is_silent(monkeypatch, recwarn):
    monkeypatch.setattr(devices, "native_bf16", lambda device: True)
    assert devices.resolve_precision("bf16", CPU) == torch.bfloat16
    assert not [w for w in recwarn if issubclass(w.category, AvctNotice)]


def test_native_bf16_agrees_with_the_cpu_flags():
    """On Linux the kernel lists the instructions: oneDNN's bf16 kernels need AVX-512 at least, and
    AVX-512-BF16 or AMX always gives them."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    if {"avx512_bf16", "amx_bf16"} & flags:
        assert devices.native_bf16(CPU)
    if "avx512f" not in flags:
        assert not devices.native_bf16(CPU)


@pytest.mark.parametrize("name,message", [("fp8", "unknown precision 'fp8'; use auto, fp32, bf16, fp16"),
                                          ("fp16", "fp16 is not supported on the CPU")])
def test_bad_precisions_are_one_line_errors(name, message):
    with pytest.raises(AvctError, match=message):
        devices.resolve_precision(name, CPU)
