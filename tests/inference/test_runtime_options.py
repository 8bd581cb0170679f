"""RuntimeOptions, the one type for how a Pipeline runs: validation, the command line's flags (shared by
generate, batch and serve), ``--official`` and the device chosen under torchrun."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from avct.cli import build_parser
from avct.cli.generate import generate_options
from avct.cli.options import runtime_options
from avct.errors import AvctError
from avct.inference.devices import resolve_device
from avct.inference.options import GenerateOptions, RuntimeOptions

GENERATE = ["generate", "--image", "face.png", "--audio", "speech.wav", "-o", "out.mp4"]


def test_defaults_and_normalised_values():
    assert RuntimeOptions() == RuntimeOptions(device="auto", precision="fp32", batch_size=8, compile=False,
                                              backend="auto", threads=None)
    chosen = RuntimeOptions(device="CPU", precision=" BF16 ", batch_size="4", threads="2", compile="false")
    assert (chosen.device, chosen.precision, chosen.batch_size, chosen.threads, chosen.compile) == \
        ("cpu", "bf16", 4, 2, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        chosen.batch_size = 2


@pytest.mark.parametrize("values, message", [
    ({"precision": "int4"}, "unknown precision 'int4'; use auto, fp32, bf16, fp16"),
    ({"backend": "tensorrt"}, "unknown backend 'tensorrt'; use auto, torch, openvino, openvino-int8"),
    ({"batch_size": 0}, "batch_size must be between 1 and 1024, got 0"),
    ({"threads": "many"}, "threads must be a whole number, got 'many'"),
    ({"compile": True, "backend": "openvino"}, "--compile is for the torch backend"),
])
def test_mistyped_values_are_one_line(values, message):
    with pytest.raises(AvctError, match=message.replace("(", r"\(")):
        RuntimeOptions(**values)


@pytest.mark.parametrize("command", [GENERATE, ["batch", "rows.csv", "-o", "out"], ["serve"]])
def test_every_command_that_loads_networks_reads_the_same_flags(command):
    args = build_parser().parse_args([*command, "--device", "cpu", "--precision", "bf16", "--batch-size", "3",
                                      "--threads", "1", "--backend", "torch", "--compile"])
    assert runtime_options(args) == RuntimeOptions(device="cpu", precision="bf16", batch_size=3, threads=1,
                                                   backend="torch", compile=True)
    assert runtime_options(build_parser().parse_args(command)) == RuntimeOptions()


def test_official_is_the_papers_output_in_one_switch():
    args = build_parser().parse_args([*GENERATE, "--official"])
    assert generate_options(args) == GenerateOptions(render="classic", f0="official") == GenerateOptions.official()
    assert runtime_options(args, official=True) == RuntimeOptions(precision="fp32", backend="torch") \
        == RuntimeOptions.official()
    assert runtime_options(build_parser().parse_args([*GENERATE, "--official", "--device", "cpu"]),
                           official=True).device == "cpu"  # what it does not fix stays the user's


@pytest.mark.parametrize("clash", [["--render", "sharp"], ["--f0", "fast"], ["--precision", "bf16"],
                                   ["--backend", "openvino-int8"]])
def test_official_refuses_a_choice_that_contradicts_it(clash):
    args = build_parser().parse_args([*GENERATE, "--official", *clash])
    with pytest.raises(AvctError, match=f"--official is the paper's exact output; it cannot go with {' '.join(clash)}"):
        generate_options(args)


def test_auto_device_under_torchrun_without_a_gpu_is_the_cpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_device_under_torchrun_is_the_process_own_gpu(monkeypatch):
    """Each of N processes its own GPU, cuda:LOCAL_RANK modulo the GPUs present (no GPU needed to check
    the choice: torch.device does not touch the driver)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda:1")
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("auto") == torch.device("cuda")
