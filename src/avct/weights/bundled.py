"""The weights that ship inside the package, used when no ``--checkpoint`` is given.

They are small-preset networks trained by this project's own trainers on the permissively usable clips
of its test data (recipe: ``configs/bundled/`` + ``scripts/train_bundled_weights.sh``; data, steps,
metrics and limits: ``MODEL_CARD.md`` beside them). The official checkpoints cannot be redistributed,
so these are what makes ``avct generate`` work right after installation, with nothing to download.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import AvctError

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "default_weights"
MODEL_CARD = DEFAULT_WEIGHTS_DIR / "MODEL_CARD.md"
# `--checkpoint default` / `--syncnet default` name the bundled files explicitly.
DEFAULT_NAME = "default"


def default_weights_dir() -> Path:
    """The bundled weights folder; a clear error if this installation lacks it."""
    if not (DEFAULT_WEIGHTS_DIR / "config.json").is_file():
        raise AvctError(f"the bundled default weights are missing from this installation ({DEFAULT_WEIGHTS_DIR}); "
                        "reinstall avct or pass --checkpoint (official checkpoints or your own weights)")
    return DEFAULT_WEIGHTS_DIR


def default_syncnet_dir() -> Path:
    """The bundled lip-sync discriminator (for ``avct evaluate --syncnet default``)."""
    if not (DEFAULT_WEIGHTS_DIR / "syncnet.json").is_file():
        raise AvctError(f"the bundled SyncNet is missing from this installation ({DEFAULT_WEIGHTS_DIR}); "
                        "pass --syncnet with syncnet_v2.model or a D_sync from `avct train syncnet`")
    return DEFAULT_WEIGHTS_DIR


def resolve_checkpoint(spec: str | Path | None) -> Path:
    """A --checkpoint value: None or ``default`` = the bundled weights, anything else a path as given."""
    if spec is None or str(spec) == DEFAULT_NAME:
        return default_weights_dir()
    return Path(spec)
