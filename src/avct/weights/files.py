"""Reading and writing weight files, safely, in one place.

Every file of weights avct reads goes through :func:`read_tensors`: safetensors files by their suffix,
anything else through ``torch.load(weights_only=True)``, so that no pickled code is ever executed
(a file that would need it is refused with one clear line). :func:`load_state_checked` puts a state
dict into a network with one clear line on any key or shape mismatch; :func:`write_safetensors` writes
one network (optionally as fp16) atomically, :func:`write_tensors` and :func:`write_state` a training
checkpoint's tensors and state; :func:`read_format_json` reads the JSON beside them.
"""
from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import AvctError
from ..io_utils import atomic_path


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else e.__class__.__name__


def read_tensors(path: str | os.PathLike, what: str = "checkpoint", *, mmap: bool = True) -> dict:
    """The dict a weights file holds (``what`` names it in errors): a ``.safetensors`` file, or a PyTorch
    file read with ``torch.load(weights_only=True)`` (memory-mapped unless ``mmap=False``: state that
    will be updated in place); never executes pickled code."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path, what)
    if not path.is_file():
        raise AvctError(f"{what} not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise AvctError(f"refusing {what} {path}: it contains pickled Python objects that would need code "
                            "execution to load, not a plain state dict of tensors; re-save its state dicts "
                            "with torch.save") from None
        raise AvctError(f"not a PyTorch {what}: {path} ({first_line(e)})") from None
    except Exception as e:  # a corrupt file can make the unpickler fail in many ways; none is our bug
        raise AvctError(f"not a readable PyTorch {what}: {path} ({first_line(e)})") from None
    if not isinstance(obj, dict):
        raise AvctError(f"{what} {path} holds a {type(obj).__name__}, expected a dict of state dicts")
    return obj


def read_safetensors(path: str | os.PathLike, what: str = "weights") -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise AvctError(f"cannot read {what} {path}: {first_line(e)}") from None


def unwrap_state_dict(state: Mapping) -> Mapping:
    """``{"state_dict": {...}}`` (how some training scripts save) -> the inner state dict."""
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        return state["state_dict"]
    return state


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    """DataParallel/DDP checkpoints prefix every key with ``module.``."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state_checked(module: nn.Module, state: Mapping, what: str) -> None:
    """load_state_dict with one clear line on any key or shape mismatch."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AvctError(f"{what} is not a state dict of tensors")
    state = strip_prefix(dict(state))
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) e.g. {', '.join(unexpected[:3])}")
        raise AvctError(f"{what} does not match the {type(module).__name__} layout: {'; '.join(parts)}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise AvctError(f"{what} does not match the {type(module).__name__} layout: {k} has shape "
                            f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")
    for k in expected:  # a NaN or infinite weight would make every frame garbage, silently
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()):
            raise AvctError(f"{what} holds a non-finite weight (NaN or infinity) in {k}")
    module.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()})


def half_tensor(value: torch.Tensor) -> torch.Tensor:
    """fp32 -> fp16 for storage, unless a value would overflow fp16 (kept fp32 then); other dtypes unchanged.
    Loading casts back to the network's dtype, so half-stored weights halve the file size at ~1e-3 relative
    error."""
    if value.dtype != torch.float32:
        return value
    half = value.half()
    return half if bool(torch.isfinite(half).all()) or not bool(torch.isfinite(value).all()) else value


def write_safetensors(path: Path, module: nn.Module, metadata: dict[str, str], *, half: bool = False) -> None:
    """A network's state dict as one safetensors file, atomically; ``half``: float weights as fp16
    (:func:`half_tensor`)."""
    write_tensors(path, {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}, metadata,
                  half=half)


def write_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str], *,
                  half: bool = False) -> None:
    """Named tensors (CPU, contiguous) as one safetensors file, atomically (:func:`read_safetensors`
    reads it back)."""
    from safetensors.torch import save_file

    if half:
        tensors = {k: half_tensor(v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata=metadata)


def write_state(path: Path, state: dict) -> None:
    """A dict of tensors and plain Python values (a training run's optimiser, scheduler and random
    state), atomically, in the form :func:`read_tensors` loads with ``weights_only=True``."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_format_json(path: Path, format_name: str, version: int, what: str = "avct weights config") -> dict:
    """The JSON beside a set of safetensors: checked to be ours (``what`` names it in errors) and not
    from a newer avct."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AvctError(f"cannot read {path}: {first_line(e)}") from None
    except RecursionError:
        raise AvctError(f"cannot read {path}: nested too deeply") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise AvctError(f"{path} is not an {what}")
    if meta.get("version", 0) > version:
        raise AvctError(f"{path} was written by a newer avct ({format_name} version {meta['version']}); upgrade avct")
    return meta
