"""avct's own weights format: a folder with ``config.json`` and one safetensors file per network.

:func:`load_models` reads any supported source (this format, an ``avct train`` run folder, the official
files through :mod:`avct.weights.official`); :func:`save_models` writes this format. The networks keep
the official key names, so both formats map 1:1.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..config import ModelConfig
from ..errors import AvctError
from ..io_utils import atomic_write_text
from ..models.avct import AudioVisualCorrelationTransformer
from ..models.head_motion import HeadMotionPredictor
from ..models.keypoints import KeypointDetector
from ..models.lip_aperture import LipApertureNet
from ..models.renderer import OcclusionAwareGenerator
from .files import load_state_checked, read_format_json, read_safetensors, read_tensors, write_safetensors

FORMAT_NAME = "avct-weights"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
PAPER_COMPONENTS = ("keypoint_detector", "generator", "avct", "head_motion")
COMPONENTS = PAPER_COMPONENTS + ("lip_aperture",)


@dataclass
class AvctModels:
    """The networks (any may be None when a checkpoint only holds some) and their config.

    ``lip_aperture`` is optional everywhere (not in the paper; the official checkpoints have none):
    when present, generation opens the photo's mouth by its prediction (:mod:`avct.inference.mouth_opening`)."""

    config: ModelConfig
    keypoint_detector: KeypointDetector | None = None
    generator: OcclusionAwareGenerator | None = None
    avct: AudioVisualCorrelationTransformer | None = None
    head_motion: HeadMotionPredictor | None = None
    lip_aperture: LipApertureNet | None = None

    def components(self) -> dict[str, nn.Module]:
        return {n: getattr(self, n) for n in COMPONENTS if getattr(self, n) is not None}

    def to(self, *args, **kwargs) -> "AvctModels":
        for m in self.components().values():
            m.to(*args, **kwargs)
        return self

    def eval(self) -> "AvctModels":
        for m in self.components().values():
            m.eval().requires_grad_(False)
        return self

    def require(self, *names: str, source: str = "checkpoint") -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise AvctError(f"{source} lacks the {', '.join(missing)} weights needed here")


def merge_models(sources: list[AvctModels]) -> AvctModels:
    """One bundle from several (e.g. an AVCT run + a head-motion run): each network, with its own config
    section, comes from the last source that has it."""
    merged = AvctModels(sources[0].config)
    for models in sources:
        for name, module in models.components().items():
            setattr(merged, name, module)
            merged.config = dataclasses.replace(merged.config, **{name: getattr(models.config, name)})
    return merged


def build_component(name: str, config: ModelConfig) -> nn.Module:
    if name == "keypoint_detector":
        return KeypointDetector(config.keypoint_detector)
    if name == "generator":
        return OcclusionAwareGenerator(config.generator)
    if name == "avct":
        return AudioVisualCorrelationTransformer(config.avct)
    if name == "head_motion":
        return HeadMotionPredictor(config.head_motion)
    if name == "lip_aperture":
        return LipApertureNet(config.lip_aperture)
    raise ValueError(name)


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


def load_models(path: str | os.PathLike) -> AvctModels:
    """Any supported checkpoint: our directory, a directory with the official files, or a single file."""
    from .official import is_generator_file, load_official

    path = Path(path)
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
