"""Shared fixtures: the `shared/` folder beside the repository and official-layout test checkpoints."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from support.shared_files import SHARED, require

PARITY = SHARED / "reference" / "parity"
DATA = SHARED / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared() -> Path:
    return require(SHARED)


@pytest.fixture(scope="session")
def parity(shared) -> Path:
    return shared / "reference" / "parity"


@pytest.fixture(scope="session")
def data(shared) -> Path:
    return shared / "data"


@pytest.fixture(scope="session")
def official_checkpoint_dir(tmp_path_factory) -> Path:
    """generator.ckpt + audio2pose.ckpt in the official layout, filled by the parity rule `qr`
    and written with torch.save, exactly as a user's downloaded checkpoints would look."""
    from avct.testing.official_layout import write_official_checkpoints

    return write_official_checkpoints(tmp_path_factory.mktemp("official"))


@pytest.fixture(scope="session")
def official_models(official_checkpoint_dir):
    """The four networks loaded through the same code path as a user's checkpoint."""
    from avct.weights import load_models

    return load_models(official_checkpoint_dir)


@pytest.fixture(scope="session")
def small_checkpoint_dir(tmp_path_factory) -> Path:
    """Randomly initialised `small` models saved in avct's own format (fast to load and run)."""
    from avct.weights import COMPONENTS, AvctModels, build_component, save_models
    from avct.config import small_config

    torch.manual_seed(0)
    config = small_config()
    models = AvctModels(config, **{name: build_component(name, config) for name in COMPONENTS})
    return save_models(models, tmp_path_factory.mktemp("small"))
