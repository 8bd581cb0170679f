"""Weights: one way in (:func:`load_models`, any source a user can name), avct's own format
(:func:`save_models`), the SyncNet files, and the one safe file layer below them all
(:mod:`avct.weights.files`: safetensors, ``torch.load(weights_only=True)``, atomic writes).

Modules: ``networks`` (what a checkpoint holds, built from its config), ``store`` (avct's format),
``official`` (the authors' files), ``bundled`` (the weights shipped inside the package), ``syncnet``
(D_sync and syncnet_v2 files), ``loading`` (recognising a source), ``files`` (bytes on disk).

The names below are imported when first used: the command line reads the bundled weights' paths
(``avct.weights.bundled``) while it parses arguments, before torch is imported.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

_EXPORTS = {
    "load_models": "loading",
    "save_models": "store",
    "AvctModels": "networks", "merge_models": "networks", "build_component": "networks",
    "COMPONENTS": "networks", "PAPER_COMPONENTS": "networks",
    "load_syncnet": "syncnet", "load_syncnet_v2": "syncnet", "save_syncnet": "syncnet",
    "default_weights_dir": "bundled", "default_syncnet_dir": "bundled", "DEFAULT_NAME": "bundled",
}
__all__ = ["load_models", "save_models", "AvctModels", "merge_models", "build_component", "COMPONENTS",
           "PAPER_COMPONENTS", "load_syncnet", "load_syncnet_v2", "save_syncnet", "default_weights_dir",
           "default_syncnet_dir", "DEFAULT_NAME"]

if TYPE_CHECKING:
    from .bundled import DEFAULT_NAME, default_syncnet_dir, default_weights_dir
    from .loading import load_models
    from .networks import COMPONENTS, PAPER_COMPONENTS, AvctModels, build_component, merge_models
    from .store import save_models
    from .syncnet import load_syncnet, load_syncnet_v2, save_syncnet


__getattr__ = lazy_attributes(__name__, _EXPORTS)
