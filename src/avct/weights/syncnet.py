"""SyncNet weight files: the D_sync that ``avct train syncnet`` writes (``syncnet.safetensors`` +
``syncnet.json``) and a user's ``syncnet_v2.model`` for the AVOff/AVConf metrics. Read through the one safe
loader (:mod:`avct.weights.files`)."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Mapping

import torch

from ..errors import AvctError
from ..io_utils import atomic_write_text
from ..models.syncnet import SyncNet, SyncNetConfig, SyncNetV2
from .files import load_state_checked, read_format_json, read_safetensors, read_tensors, unwrap_state_dict, write_safetensors

SYNCNET_FORMAT = "avct-syncnet"
SYNCNET_VERSION = 1
SYNCNET_WEIGHTS = "syncnet.safetensors"
SYNCNET_CONFIG = "syncnet.json"


def save_syncnet(model: SyncNet, out_dir: str | os.PathLike, *, half: bool = False) -> Path:
    """``syncnet.safetensors`` (state dict) + ``syncnet.json`` (format, config, input contract), atomically;
    ``half`` stores float weights as fp16 (:func:`avct.weights.files.half_tensor`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / SYNCNET_WEIGHTS, model, {"format": SYNCNET_FORMAT}, half=half)
    cfg = model.cfg
    meta = {
        "format": SYNCNET_FORMAT, "version": SYNCNET_VERSION, "config": dataclasses.asdict(cfg),
        "inputs": {
            "video": f"(B, {cfg.num_frames}, 3, {cfg.image_size}, {cfg.image_size}) RGB float in [0, 1]: mouth "
                     "crops of frames c-2..c+2 (mouth_boxes.npy boxes, avct.models.discriminators.crop_boxes)",
            "audio": f"(B, {cfg.audio_rows}, {cfg.audio_dim}) avct 41-d acoustic features (100 Hz), rows "
                     f"{cfg.rows_per_frame}(c-2) .. {cfg.rows_per_frame}(c+3)-1 for the same frames",
        },
        "output": "P_sync = cosine similarity of the 512-d embeddings, in [0, 1] (1 = in sync)",
    }
    atomic_write_text(out / SYNCNET_CONFIG, json.dumps(meta, indent=1))
    return out


def load_syncnet(path: str | os.PathLike) -> SyncNet:
    """A SyncNet written by ``save_syncnet``: its directory (e.g. a syncnet run's weights dir, or the run
    dir itself when it has ``weights/``) or its ``syncnet.json``. Returned in eval mode, frozen."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not (path / SYNCNET_CONFIG).is_file() and (path / "weights" / SYNCNET_CONFIG).is_file():
        path = path / "weights"
    if not (path / SYNCNET_CONFIG).is_file():
        raise AvctError(f"no SyncNet at {path}: {SYNCNET_CONFIG} not found")
    meta = read_format_json(path / SYNCNET_CONFIG, SYNCNET_FORMAT, SYNCNET_VERSION, "avct SyncNet config")
    model = SyncNet(SyncNetConfig.from_dict(meta.get("config", {})))
    state = read_safetensors(path / SYNCNET_WEIGHTS, "SyncNet weights")
    load_state_checked(model, state, str(path / SYNCNET_WEIGHTS))
    return model.eval().requires_grad_(False)


def load_syncnet_v2(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNetV2:
    """A user's ``syncnet_v2.model``: a plain state dict with exactly the syncnet_v2 keys and shapes."""
    state = unwrap_state_dict(read_tensors(path, "SyncNet weights"))
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AvctError(f"SyncNet weights {path} are not a plain state dict of tensors")
    state = {k.removeprefix("module.").removeprefix("__S__."): v for k, v in state.items()}
    model = SyncNetV2()
    load_state_checked(model, state, f"{path} is not a syncnet_v2 state dict: it")
    return model.eval().requires_grad_(False).to(device)
