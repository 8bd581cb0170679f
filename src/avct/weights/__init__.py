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

from ..lazy import lazy_attributes

_EXPORTS = {
    "load_models": "loading",
    "save_models": "store",
    "AvctModels": "networks", "merge_models": "networks", "build_component": "networks",
    "COMPONENTS": "networks", "PAPER_COMPONENTS": "networks",
    "load_syncnet": "syncnet", "load_syncnet_v2": "syncnet", "save_syncnet": "syncnet",
    "default_weights_dir": "bundled", "default_syncnet_dir": "bundled", "DEFAULT_NAME": "bundled",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy_attributes(__name__, _EXPORTS)
