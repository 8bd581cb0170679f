"""Training-test fixtures: the tiny real dataset (tests/support/tiny_dataset.py) and one CPU thread."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support.tiny_dataset import VIDEO, build_tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset(data, tmp_path_factory) -> Path:
    """DATASET dir: 2 clips x 50 frames, all usable, the face found on every frame."""
    return build_tiny_dataset(data / "video" / VIDEO, tmp_path_factory.mktemp("tiny_dataset"))


@pytest.fixture(autouse=True)
def one_thread():
    """The test networks are tiny: one thread is fastest, and on a busy shared CPU two threads made
    each step ~4x slower (OpenMP barriers waiting for a descheduled thread)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
