"""The files of a training checkpoint (``modules.safetensors``, ``state.pt``) and publishing its
export as ``RUN_DIR/weights``."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import AvctError
from ..io_utils import atomic_folder
from ..weights.files import read_safetensors


MODULES_FILE = "modules.safetensors"
STATE_FILE = "state.pt"
STATE_FORMAT = "avct-train-state"
STATE_VERSION = 1


# ---- checkpoints ----------------------------------------------------------------------------------------
def plain_state(obj: Any) -> Any:
    """weights_only-safe copy: Counters/defaultdicts -> dict, numpy -> torch/Python."""
    if isinstance(obj, dict):
        return {k: plain_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain_state(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def load_scheduler(scheduler: Any, state: dict[str, Any]) -> None:
    live = scheduler.state_dict()
    scheduler.load_state_dict({k: Counter(v) if isinstance(live.get(k), Counter) and isinstance(v, dict) else v
                               for k, v in state.items()})


def module_tensors(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().to("cpu", copy=True).contiguous()
            for name, m in modules.items() for k, v in m.state_dict().items()}


def load_modules(path: Path, modules: dict[str, nn.Module]) -> None:
    tensors = read_safetensors(path, "training checkpoint")
    for name, module in modules.items():
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise AvctError(f"{path} does not match the {name} network of this config: {first}") from None


def publish_weights(src: Path, dst: Path) -> None:
    """Replace directory ``dst`` by a copy of ``src`` (never a half-written dst)."""
    with atomic_folder(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
