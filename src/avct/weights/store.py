"""avct's own weights format: a folder with ``config.json`` and one safetensors file per network.

:func:`save_models` writes it, :func:`load_saved` reads it back. The networks keep the official key
names, so this format and the official files (:mod:`avct.weights.official`) map 1:1. Users come in
through :func:`avct.weights.load_models`, which recognises every source.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import ModelConfig
from ..errors import AvctError
from ..io_utils import atomic_write_text
from .files import load_state_checked, read_format_json, read_safetensors, write_safetensors
from .networks import COMPONENTS, AvctModels, build_component

FORMAT_NAME = "avct-weights"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
# ---- our format ------------------------------------------------------------------------------------
def save_models(models: AvctModels, out_dir: str | os.PathLike, *, half: bool = False) -> Path:
    """Write safetensors per component + config.json (written last, atomically each); ``half`` stores
    float weights as fp16 (:func:`avct.weights.files.half_tensor`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name, module in models.components().items():
        write_safetensors(out / f"{name}.safetensors", module, {"format": FORMAT_NAME, "component": name}, half=half)
        names.append(name)
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "components": names, "model": models.config.to_dict()}
    atomic_write_text(out / CONFIG_FILE, json.dumps(meta, indent=1))
    return out


def load_saved(directory: str | os.PathLike) -> AvctModels:
    directory = Path(directory)
    meta = read_format_json(directory / CONFIG_FILE, FORMAT_NAME, FORMAT_VERSION)
    config = ModelConfig.from_dict(meta.get("model", {}))
    models = AvctModels(config)
    for name in meta.get("components", []):
        if name not in COMPONENTS:
            raise AvctError(f"{directory / CONFIG_FILE} names an unknown component {name!r}")
        path = directory / f"{name}.safetensors"
        state = read_safetensors(path, "weights")
        module = build_component(name, config)
        load_state_checked(module, state, str(path))
        setattr(models, name, module)
    return models.eval()
