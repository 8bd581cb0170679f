"""The official AVCT and FOMM checkpoints, imported (OFFICIAL.md A.8).

``generator.ckpt`` = {kp_detector, generator, ph2kp}, ``audio2pose.ckpt`` = {generator: audio2poseLSTM},
FOMM ``vox-*.pth.tar`` = {kp_detector, generator, ...}. Read through :func:`avct.weights.files.read_tensors`
(``torch.load(weights_only=True)``): a file that needs arbitrary unpickling is refused. The networks keep
the official key names, so the official layout and avct's own format map 1:1.
"""
from __future__ import annotations

import os

from ..config import ModelConfig, official_config
from ..errors import AvctError
from .files import load_state_checked, read_tensors
from .networks import AvctModels, build_component

# component -> (official file, key inside it)
OFFICIAL_SOURCES = {
    "keypoint_detector": ("generator.ckpt", "kp_detector"),
    "generator": ("generator.ckpt", "generator"),
    "avct": ("generator.ckpt", "ph2kp"),
    "head_motion": ("audio2pose.ckpt", "generator"),
}


def load_official(generator_ckpt: str | os.PathLike | None, audio2pose_ckpt: str | os.PathLike | None,
                  config: ModelConfig | None = None) -> AvctModels:
    """Official AVCT files (either may be None). A FOMM vox-256 file works as ``generator_ckpt`` too:
    it provides the keypoint detector and generator only."""
    config = config or official_config()
    models = AvctModels(config)
    files = {"generator.ckpt": generator_ckpt, "audio2pose.ckpt": audio2pose_ckpt}
    loaded = {name: read_tensors(path) for name, path in files.items() if path is not None}
    for component, (file_name, key) in OFFICIAL_SOURCES.items():
        ckpt = loaded.get(file_name)
        if ckpt is None or key not in ckpt:
            continue
        module = build_component(component, config)
        load_state_checked(module, ckpt[key], f"{files[file_name]} [{key}]")
        setattr(models, component, module)
    for file_name, ckpt in loaded.items():
        wanted = {k for f, k in OFFICIAL_SOURCES.values() if f == file_name}
        if not wanted & set(ckpt):
            raise AvctError(f"{files[file_name]} is not an AVCT/FOMM checkpoint: top-level keys "
                            f"{', '.join(map(str, list(ckpt)[:6])) or '(none)'}; expected {', '.join(sorted(wanted))}")
    return models.eval()


def is_generator_file(keys) -> bool:
    """Whether a single official file's top-level keys are those of ``generator.ckpt`` (or FOMM's)."""
    return "ph2kp" in keys or "kp_detector" in keys
