"""Write deterministic checkpoints in the official AVCT file layout (for tests and benchmarks)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..weights.official import OFFICIAL_SOURCES
from ..weights.networks import build_component
from ..config import ModelConfig, official_config
from .weight_fill import filled_state_dict


def write_official_checkpoints(directory: str | Path, config: ModelConfig | None = None) -> Path:
    """generator.ckpt {kp_detector, generator, ph2kp} + audio2pose.ckpt {generator}, weights by rule `qr`."""
    config = config or official_config()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}
    for component, (file_name, key) in OFFICIAL_SOURCES.items():
        files.setdefault(file_name, {})[key] = filled_state_dict(build_component(component, config))
    for file_name, content in files.items():
        torch.save(content, directory / file_name)
    return directory
