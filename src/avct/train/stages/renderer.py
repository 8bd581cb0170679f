"""Renderer stage: keypoint detector E_kd + occlusion-aware generator E_r, FOMM's recipe (OFFICIAL.md C.2).

An item is a (source, driving) pair of frames of one clip; the detector finds keypoints on both and the
generator redraws the driving frame from the source and the two keypoint sets. Losses:

    L = Σ_s Σ_l w_l·mean|φ_l(ŷ_s) − φ_l(y_s)|                     perceptual pyramid (VGG-19 or Inception-v3)
      [+ λ_pix·Σ_s mean|ŷ_s − y_s|]                                    pixel pyramid (pixel > 0; not FOMM)
      + λ_val·mean|k_drv − T(k')| + λ_jac·mean|I − J_drv⁻¹·∇T·J'|    equivariance, k', J' = E_kd(T(driving))
      [+ λ_gan·Σ mean(1 − D(ŷ))² + Σ_i w_i·mean|D_i(y) − D_i(ŷ)|]     LSGAN + feature matching (generator_gan > 0)
      [+ λ_lm·mean|k_m − l_m|]       landmark prior: keypoints 0..K_m−1 of source and driving on their
                                      frames' dlib mouth landmarks (landmark_prior.weight > 0; not FOMM)

with Adam(lr 2e-4, betas (0.5, 0.999)) per network and MultiStepLR decays. The detector runs once on
[source, driving, warped driving] (one forward per step, as DDP needs); a GAN step calls the
discriminator once on [real, fake] for the generator's losses and once on [real, fake.detach()] for its
own. Exports ``keypoint_detector`` + ``generator`` in avct's weights format.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ...weights.files import load_state_checked
from ...weights import AvctModels, load_models, save_models
from ...errors import AvctError
from ...models.discriminators import MultiScaleDiscriminator
from ...face.head_pose import MIRROR_INDEX
from ...models.keypoints import KeypointDetector, Keypoints, pixels_to_keypoint_space
from ...models.renderer import OcclusionAwareGenerator
from ..config import AugmentationConfig, RendererTrainConfig
from ..losses import (ImagePyramid, PerceptualPyramidLoss, PixelPyramidLoss, Transform, equivariance_losses,
                      feature_matching_loss, landmark_prior_loss, lsgan_discriminator_loss, lsgan_generator_loss,
                      perceptual_network)
from ..stage import AmpContext, Stage, StageContext, StepOutput
from ._clips import ClipArrays, frames_chw, read_clips


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (or the module itself)."""
    return getattr(module, "module", module)


# ---- data ----------------------------------------------------------------------------------------------
def color_jitter(frames: np.ndarray, amount: float) -> np.ndarray:
    """The same random brightness/contrast/saturation/hue change on every frame (N, H, W, 3) float [0, 1],
    as torchvision's ColorJitter(amount, amount, amount, amount) in FOMM's augmentation (random order
    replaced by a fixed one). Uses NumPy's global RNG (seeded per item by the engine)."""
    if amount <= 0:
        return frames
    b, c, s = (np.random.uniform(max(0.0, 1 - amount), 1 + amount) for _ in range(3))
    h = np.random.uniform(-amount, amount)
    out = np.clip(frames * b, 0, 1)                                            # brightness
    grey = out @ np.array([0.299, 0.587, 0.114], np.float32)                   # (N, H, W)
    mean = grey.mean(axis=(1, 2), keepdims=True)[..., None]                   # (N, 1, 1, 1)
    out = (out - mean) * c + mean                                              # contrast
    out = np.clip(out, 0, 1)
    grey = (out @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    out = np.clip(grey + (out - grey) * s, 0, 1)                               # saturation
    if h:
        hsv = np.stack([cv2.cvtColor(f.astype(np.float32), cv2.COLOR_RGB2HSV) for f in out])
        hsv[..., 0] = (hsv[..., 0] + 360.0 * h) % 360.0                       # hue in degrees
        out = np.stack([cv2.cvtColor(f, cv2.COLOR_HSV2RGB) for f in hsv])
    return np.clip(out, 0, 1).astype(np.float32)


class FramePairs(torch.utils.data.Dataset):
    """Every usable frame of every clip once per epoch as the *driving* frame, with a random *source*
    frame of the same clip (FOMM samples two random frames of one video).

    Item: source, driving (3, 256, 256) float32 in [0, 1]; with ``landmarks`` (dlib indices, for the
    landmark prior) also source_landmarks, driving_landmarks (K_m, 2) float32 in the keypoints' [-1, 1]
    coordinates (NaN where the face was lost), flipped with the frames (a horizontal flip mirrors the
    points and swaps left and right landmarks, so index 48 stays the mouth corner on the image's left)."""

    def __init__(self, data_dir: Path, augmentation: AugmentationConfig | None = None,
                 landmarks: tuple[int, ...] = ()):
        self.clips: list[ClipArrays] = [c for c in read_clips(data_dir) if c.num_frames >= 2]
        if not self.clips:
            raise AvctError(f"no clip in {data_dir} has 2 or more frames")
        self.augmentation = augmentation
        self.landmarks = np.asarray(landmarks, dtype=np.int64)
        self.offsets = np.cumsum([0] + [c.num_frames for c in self.clips])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c = int(np.searchsorted(self.offsets, index, side="right") - 1)
        clip, driving = self.clips[c], index - int(self.offsets[c])
        source = int(np.random.randint(clip.num_frames - 1))
        source += source >= driving                                               # any frame but the driving one
        index = np.array([source, driving])
        pair = frames_chw(clip, index).astype(np.float32) / 255.0                 # (2, 3, H, W)
        marks = np.array(clip.landmarks[index], dtype=np.float64) if len(self.landmarks) else None  # (2, 68, 2) px
        aug = self.augmentation
        if aug is not None:
            if aug.flip_time and np.random.rand() < 0.5:
                pair = pair[::-1]
                if marks is not None:
                    marks = marks[::-1]
            if aug.flip_horizontal and np.random.rand() < 0.5:
                pair = pair[..., ::-1]
                if marks is not None:
                    marks = marks[:, MIRROR_INDEX]
                    marks[..., 0] = (pair.shape[-1] - 1) - marks[..., 0]
            if aug.jitter > 0:
                pair = np.moveaxis(color_jitter(np.moveaxis(pair, 1, -1), aug.jitter), -1, 1)
        pair = torch.from_numpy(np.ascontiguousarray(pair))
        item = {"source": pair[0], "driving": pair[1]}
        if marks is not None:
            h, w = pair.shape[-2:]
            chosen = torch.from_numpy(pixels_to_keypoint_space(marks[:, self.landmarks], w, h).astype(np.float32))
            item["source_landmarks"], item["driving_landmarks"] = chosen[0], chosen[1]
        return item


# ---- stage ---------------------------------------------------------------------------------------------
class RendererStage(Stage):
    name = "renderer"

    def __init__(self, ctx: StageContext):
        super().__init__(ctx)
        if not isinstance(ctx.config, RendererTrainConfig):
            raise AvctError("the renderer stage needs a RendererTrainConfig")
        self.config: RendererTrainConfig = ctx.config
        cfg = self.config
        self.model_config = cfg.model_config()
        self.keypoint_detector = KeypointDetector(self.model_config.keypoint_detector)
        self.generator = OcclusionAwareGenerator(self.model_config.generator)
        if "renderer" in ctx.init:  # fine-tune: official generator.ckpt, FOMM vox-*.pth.tar or an avct weights dir
            self._load_init(ctx.init["renderer"])
        w = cfg.loss_weights
        self.use_gan = w.generator_gan > 0
        self.use_equivariance = w.equivariance_value + w.equivariance_jacobian > 0
        self.discriminator = None
        if self.use_gan:
            d = cfg.discriminator
            self.discriminator = MultiScaleDiscriminator(
                d.scales, block_expansion=d.block_expansion, max_features=d.max_features, num_blocks=d.num_blocks,
                sn=d.sn, use_kp=d.use_kp, num_kp=self.model_config.keypoint_detector.num_kp,
                kp_variance=self.model_config.generator.dense_motion.kp_variance)
            self.disc_pyramid = ImagePyramid(d.scales)
        self.perceptual = None
        if any(w.perceptual):
            self.perceptual = PerceptualPyramidLoss(perceptual_network(cfg), cfg.scales, w.perceptual)
        self.pixel = PixelPyramidLoss(cfg.scales, w.pixel) if w.pixel > 0 else None
        self.landmark_prior = cfg.landmark_prior if cfg.landmark_prior.weight > 0 else None

    def _load_init(self, path: Path) -> None:
        models = load_models(path)
        models.require("keypoint_detector", "generator", source=str(path))
        for name, mine in (("keypoint_detector", self.keypoint_detector), ("generator", self.generator)):
            load_state_checked(mine, getattr(models, name).state_dict(), f"{path} [{name}]")

    # -- contract --
    def trainable(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"keypoint_detector": self.keypoint_detector, "generator": self.generator}
        if self.discriminator is not None:
            modules["discriminator"] = self.discriminator
        return modules

    def frozen(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {}
        if self.perceptual is not None:
            out["perceptual"] = self.perceptual
        if self.pixel is not None:
            out["pixel"] = self.pixel
        if self.use_gan:
            out["disc_pyramid"] = self.disc_pyramid
        return out

    def optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {name: torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
                for name, m in modules.items()}

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        cfg = self.config
        return {name: torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), gamma=cfg.lr_gamma)
                for name, opt in optimizers.items()}

    def dataset(self) -> torch.utils.data.Dataset:
        if self.ctx.data_dir is None:
            raise AvctError("the renderer stage needs a dataset (--data)")
        marks = self.landmark_prior.landmarks if self.landmark_prior is not None else ()
        return FramePairs(self.ctx.data_dir, self.config.augmentation, marks)

    def train_step(self, batch: dict[str, torch.Tensor], modules: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], amp: AmpContext) -> StepOutput:
        cfg, w = self.config, self.config.loss_weights
        source, driving = batch["source"].float(), batch["driving"].float()          # (B, 3, H, W)
        b = source.shape[0]
        kp_detector, generator = modules["keypoint_detector"], modules["generator"]
        for name in ("keypoint_detector", "generator"):
            optimizers[name].zero_grad(set_to_none=True)
        parts: dict[str, torch.Tensor] = {}
        with amp.autocast():
            images = [source, driving]
            if self.use_equivariance:
                transform = Transform(b, **dataclasses.asdict(cfg.transform), device=driving.device)
                images.append(transform.transform_frame(driving))
            kp_all = kp_detector(torch.cat(images)).to(torch.float32)               # one forward: (2B or 3B, K, ...)
            kp_source, kp_driving = kp_all[:b], kp_all[b:2 * b]
            prediction = generator(source, kp_source, kp_driving)["prediction"]     # (B, 3, H, W)
            if self.perceptual is not None:
                parts["perceptual"] = self.perceptual(prediction, driving)
            if self.pixel is not None:
                parts["pixel"] = self.pixel(prediction, driving)
            if self.use_gan:
                d_out = self._discriminate(modules["discriminator"], driving, prediction, kp_driving)
                real, fake = d_out.split(b)
                parts["generator_gan"] = w.generator_gan * lsgan_generator_loss(fake.predictions)
                if any(w.feature_matching):
                    parts["feature_matching"] = sum(feature_matching_loss(r, f, w.feature_matching)
                                                    for r, f in zip(real.feature_maps, fake.feature_maps))
            if self.landmark_prior is not None:
                parts["landmark_prior"] = self.landmark_prior.weight * self._landmark_term(batch, kp_source, kp_driving)
            if self.use_equivariance:
                value, jacobian = equivariance_losses(kp_driving, kp_all[2 * b:], transform)
                if w.equivariance_value:
                    parts["equivariance_value"] = w.equivariance_value * value
                if w.equivariance_jacobian and jacobian is not None:
                    parts["equivariance_jacobian"] = w.equivariance_jacobian * jacobian
        total = sum(parts.values())
        amp.backward(total)
        amp.step(optimizers["keypoint_detector"])
        amp.step(optimizers["generator"])
        scalars = {k: float(v.detach()) for k, v in parts.items()}
        if self.use_gan:
            optimizers["discriminator"].zero_grad(set_to_none=True)  # drop the grads of the generator's pass
            with amp.autocast():
                d_out = self._discriminate(modules["discriminator"], driving, prediction.detach(), kp_driving)
                real, fake = d_out.split(b)
                d_loss = w.discriminator_gan * lsgan_discriminator_loss(real.predictions, fake.predictions)
            amp.backward(d_loss)
            amp.step(optimizers["discriminator"])
            scalars["discriminator_gan"] = float(d_loss.detach())
        return StepOutput(float(total.detach()), scalars)

    def _landmark_term(self, batch: dict[str, torch.Tensor], kp_source: Keypoints, kp_driving: Keypoints) -> torch.Tensor:
        """Unweighted landmark prior: keypoints 0..K_m−1 of both frames against their landmarks."""
        k = len(self.landmark_prior.landmarks)
        value = torch.cat([kp_source.value[:, :k], kp_driving.value[:, :k]])
        target = torch.cat([batch["source_landmarks"], batch["driving_landmarks"]]).to(value.device)
        return landmark_prior_loss(value, target)

    def _discriminate(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, kp: Keypoints):
        """One discriminator call on [real; fake] at every scale (keypoints detached, as FOMM)."""
        pyramid = self.disc_pyramid(torch.cat([real, fake]))
        kp_value = kp.value.detach().repeat(2, 1, 1) if self.config.discriminator.use_kp else None
        return discriminator(pyramid, kp_value)

    def export(self, modules: dict[str, nn.Module], out_dir: Path) -> None:
        save_models(AvctModels(self.model_config, keypoint_detector=unwrap(modules["keypoint_detector"]),
                               generator=unwrap(modules["generator"])), out_dir)


STAGE = RendererStage
