"""The networks a checkpoint holds (:class:`AvctModels`) and how each is built from its config.

Builders apart from loaders (as audiocraft keeps them): every file format (:mod:`avct.weights.store`,
:mod:`avct.weights.official`) builds its networks here, then fills them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from ..config import ModelConfig
from ..errors import AvctError
from ..models.avct import AudioVisualCorrelationTransformer
from ..models.head_motion import HeadMotionPredictor
from ..models.keypoints import KeypointDetector
from ..models.lip_aperture import LipApertureNet
from ..models.renderer import OcclusionAwareGenerator

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
