"""Typed model configuration with the `official` and `small` presets.

The official values come from the release's ``vox-256.yaml`` and ``audio2kp.yaml`` (OFFICIAL.md A.9);
`small` keeps every shape relation but shrinks widths so that CPU training and tests are quick.
A config round-trips through plain dicts (stored as JSON beside our safetensors weights).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import AvctError


@dataclass(frozen=True)
class KeypointDetectorConfig:
    num_kp: int = 10
    num_channels: int = 3
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    scale_factor: float = 0.25
    estimate_jacobian: bool = True
    pad: int = 0


@dataclass(frozen=True)
class DenseMotionConfig:
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01


@dataclass(frozen=True)
class GeneratorConfig:
    num_kp: int = 10
    num_channels: int = 3
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)


@dataclass(frozen=True)
class AVCTConfig:
    """Audio-Visual Correlation Transformer (official name ``ph2kp`` / Audio2kpTransformer)."""

    num_kp: int = 10
    num_w: int = 5                 # window = 2·num_w + 1 frames
    embedding_dim: int = 256       # phoneme embedding, reshaped to a 16×16 map
    num_phonemes: int = 41
    feature_channels: int = 35     # keypoint-detector feature map channels (= kp expansion + 3)
    feature_size: int = 64         # keypoint-detector feature map resolution
    block_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    max_positions: int = 20
    # Ablation switches of the paper (training); all on = the full model.
    use_phonemes: bool = True
    use_audio: bool = True
    use_kp_features: bool = True


@dataclass(frozen=True)
class HeadMotionConfig:
    """Head-motion predictor (official ``audio2poseLSTM``): ResNet-34 embeddings + 2-layer LSTM."""

    layers: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    embedding_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    # De-normalisation bounds of the 6 outputs [Rx, Ry, Rz (rad), Tx, Ty, Tz (mm)].
    pose_min: tuple[float, ...] = (-0.6, -0.6, -0.6, -128.0, -128.0, 128.0)
    pose_max: tuple[float, ...] = (0.6, 0.6, 0.6, 128.0, 128.0, 384.0)


@dataclass(frozen=True)
class LipApertureConfig:
    """Speech -> lip aperture per frame (not in the paper; :mod:`avct.models.lip_aperture`).

    Input: the 26 log-fbank channels and the voiced flag of the feature rows (100 Hz), and each
    frame's phoneme as a ``phoneme_dim``-d embedding (0: no phonemes). ``width`` channels;
    ``dilations``: the 25 fps residual blocks' dilations (context ±(1 + sum) frames); ``dropout``: on
    the hidden channels while training; ``members``: independently initialised copies of the network
    run side by side (grouped convolutions), each trained on its own loss, the prediction their mean
    (an ensemble: less of any one copy's fit to the training voices). ``typical_spread``: how much a
    speaker's lips move over an utterance (std of the aperture) in the training clips, their median;
    set by ``avct train lips`` from its data, 0 in weights trained before it existed
    (:meth:`avct.models.lip_aperture.LipApertureNet.predict` says why)."""

    width: int = 48
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    dropout: float = 0.2
    phoneme_dim: int = 16
    num_phonemes: int = 41
    members: int = 1
    typical_spread: float = 0.0


@dataclass(frozen=True)
class ModelConfig:
    keypoint_detector: KeypointDetectorConfig = field(default_factory=KeypointDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    avct: AVCTConfig = field(default_factory=AVCTConfig)
    head_motion: HeadMotionConfig = field(default_factory=HeadMotionConfig)
    lip_aperture: LipApertureConfig = field(default_factory=LipApertureConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        try:
            return _from_dict(cls, data)
        except (TypeError, ValueError) as e:
            raise AvctError(f"invalid model config: {e}") from None


def _from_dict(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        ftype = fields[name].type
        sub = _SUBCONFIGS.get(ftype) if isinstance(ftype, str) else None
        if sub is not None:
            kwargs[name] = _from_dict(sub, value)
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


_SUBCONFIGS = {
    "KeypointDetectorConfig": KeypointDetectorConfig,
    "DenseMotionConfig": DenseMotionConfig,
    "GeneratorConfig": GeneratorConfig,
    "AVCTConfig": AVCTConfig,
    "HeadMotionConfig": HeadMotionConfig,
    "LipApertureConfig": LipApertureConfig,
}


def official_config() -> ModelConfig:
    return ModelConfig()


def small_config() -> ModelConfig:
    """~20× fewer parameters, same structure: for CPU training, tests and the bundled demo weights."""
    return ModelConfig(
        keypoint_detector=KeypointDetectorConfig(block_expansion=16, max_features=256),
        generator=GeneratorConfig(block_expansion=32, max_features=256, num_bottleneck_blocks=3,
                                  dense_motion=DenseMotionConfig(block_expansion=32, max_features=256)),
        avct=AVCTConfig(feature_channels=19, block_channels=(16, 32, 64, 128, 256), d_model=256,
                        nhead=4, num_encoder_layers=3, num_decoder_layers=3, dim_feedforward=512),
        head_motion=HeadMotionConfig(layers=(1, 1, 1, 1), widths=(32, 64, 128, 256), embedding_dim=128,
                                     hidden_size=128),
    )


PRESETS = {"official": official_config, "small": small_config}


def model_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise AvctError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}") from None
