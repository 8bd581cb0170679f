"""The one way in for weights: :func:`load_models` recognises every source a user can name.

A source is ``None`` or ``"default"`` (the weights bundled with avct), a folder of avct weights
(``config.json``), an ``avct train`` run folder (its ``weights/``), a folder with the official
``generator.ckpt`` / ``audio2pose.ckpt``, one such file, or a list of those, merged (later ones add or
override networks).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

from ..errors import AvctError
from .bundled import resolve_checkpoint
from .files import read_tensors
from .networks import AvctModels, merge_models
from .official import is_generator_file, load_official
from .store import CONFIG_FILE, load_saved

Source = Union[str, os.PathLike, None]


def load_models(source: Source | Sequence[Source] = None) -> AvctModels:
    """The networks of ``source`` (see the module docstring), in eval mode."""
    if isinstance(source, (list, tuple)):
        return merge_models([load_models(s) for s in source or [None]])
    return _load_one(resolve_checkpoint(source))


def _load_one(path: Path) -> AvctModels:
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return load_saved(path)
        if (path / "weights" / CONFIG_FILE).is_file():  # an `avct train` run directory
            return load_saved(path / "weights")
        gen, a2p = path / "generator.ckpt", path / "audio2pose.ckpt"
        if gen.is_file() or a2p.is_file():
            return load_official(gen if gen.is_file() else None, a2p if a2p.is_file() else None)
        raise AvctError(f"{path} holds neither avct weights ({CONFIG_FILE}) nor the official "
                        "generator.ckpt / audio2pose.ckpt")
    if path.is_file():
        if path.name == CONFIG_FILE:
            return load_saved(path.parent)
        if path.suffix == ".safetensors":
            return load_saved(path.parent)
        if is_generator_file(set(read_tensors(path))):
            sibling = path.parent / "audio2pose.ckpt"
            return load_official(path, sibling if sibling.is_file() else None)
        return load_official(None, path)
    raise AvctError(f"checkpoint not found: {path}")
