"""AVCT stage: the Audio-Visual Correlation Transformer with batched sequential training (paper §3, Eq. 2).

An item (BST) is T successive frames of one clip plus what the AVCT needs for each frame's 11-frame
window, built exactly as inference builds it (avct.inference.pipeline / avct.testing.per_frame): phoneme ids padded with
SIL (31), zero audio rows outside the clip, pose boxes of the clamped ground-truth poses. The AVCT runs
once per step on the T+10 per-position tokens and gathers the T windows (``SequenceAVCT``); the FROZEN
renderer (E_kd + E_r) draws the T frames from a reference frame of the same clip. Losses (Eq. 2):

    L = λ_seq·L_seq(Î_1:T)                                   LSGAN of D_seq on the T frames stacked on channels
      + λ_sync/(T−4)·Σ_{i=3}^{T−2} −log P_sync(Î^crop_i−2:i+2)   frozen D_sync, the real video's mouth boxes
      + 1/T·Σ_i [λ_v·L_vgg^mul(Î_i, I_i) + λ_eq^P·L_eq^K(k̂_i) + λ_eq^J·L_eq^J(ĵ_i)]

with Adam(lr 2e-5, weight decay 2e-7) for the AVCT and its own Adam for D_seq.

Choices the paper leaves open:

- Keypoint space in training. The paper applies relative motion transfer (Eq. 3) "in the inference
  stage"; in training the AVCT predicts the frame's keypoints directly and the renderer draws them from
  the reference: Î_i = E_r(I_r, k_r, k̂_i). (Relative transfer with a *random* reference cannot be
  trained against the real frames: it renders frame 1 in the reference's pose whatever the AVCT says.)
  A config with ``relative_motion: true`` (field read if present) trains with Eq. 3 instead, taking
  the sequence's first frame as the reference so that the targets stay reachable.
- Equivariance of *predicted* keypoints. FOMM's constraint with the AVCT on the untransformed side:
  k' , J' = E_kd(T(I_i)) (frozen detector on the randomly warped real frame),
      L_eq^K = mean|k̂_i − T(k')|,   L_eq^J = mean|I − ĵ_i⁻¹·∇T(k')·J'|,
  i.e. the AVCT's keypoints must agree with the detector's, seen through a random warp.
- "w/o Kp" ablation (``reference_image_instead_of_kp_features``): the decoder gets the reference image,
  anti-aliased to the feature-map size and mapped to the same channel count by one 3×3 conv
  (``ReferenceImageEncoder``), in place of E_kd's feature map. ``avct generate`` cannot run this variant
  (its pipeline feeds E_kd features); the export stores the encoder beside the weights.
- "w/o BST": an item is T independent random frames of one clip (each with its own window); no D_seq and
  no D_sync (both need successive frames; the paper's "w/o BST" also drops both).
- D_seq optimiser: Adam(lr_discriminator, betas (0.5, 0.999)) as FOMM's discriminators.
- Items avoid frames where the face was lost (their poses/mouth boxes are only interpolated).

Export: ``avct`` + copies of the frozen ``keypoint_detector`` and ``generator`` (one config.json), so
RUN_DIR/weights drives ``avct generate`` once a ``head_motion`` component is added (``--checkpoint`` twice,
or ``avct convert`` into one folder: each component with its own config section).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...weights.files import load_state_checked, write_safetensors
from ...weights import AvctModels, load_models, save_models
from ...weights import load_syncnet
from ...config import AVCTConfig, ModelConfig
from ...errors import AvctError
from ...models.avct import AudioVisualCorrelationTransformer, window_inputs
from ...models.blocks import AntiAliasInterpolation2d
from ...models.discriminators import TemporalDiscriminator
from ...models.syncnet import crop_boxes, sync_loss
from ...models.keypoints import Keypoints
from ...models.motion import relative_motion
from ...models.renderer import SourceEncoding
from ..config import AvctTrainConfig
from ..losses import (ImagePyramid, PerceptualPyramidLoss, PixelPyramidLoss, Transform, equivariance_losses,
                      lsgan_discriminator_loss, lsgan_generator_loss, perceptual_network)
from ..stage import AmpContext, Stage, StageContext, StepOutput
from ._clips import ClipArrays, clean_starts, frames_chw, read_clips
from ...media import IMAGE_SIZE

REFERENCE_ENCODER_FILE = "reference_encoder.safetensors"


# ---- networks ------------------------------------------------------------------------------------------
class ReferenceImageEncoder(nn.Module):
    """'w/o Kp' ablation: reference image (B, 3, 256, 256) → anti-alias ↓ to the feature-map size →
    conv 3×3 → (B, C, 64, 64), standing in for E_kd's feature map at the decoder input."""

    def __init__(self, channels: int, feature_size: int = 64):
        super().__init__()
        self.down = AntiAliasInterpolation2d(3, feature_size / IMAGE_SIZE)
        self.conv = nn.Conv2d(3, channels, kernel_size=3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(self.down(image))


class SequenceAVCT(nn.Module):
    """Training view of the AVCT: keypoints of T frames in one forward (one DDP call per step).

    Per-position tokens are computed once (as the inference pipeline does) and gathered into windows:
        enc_n = CNN(pose box_n ⊕ phoneme_n),  dec_n = CNN(audio_n ⊕ reference features)      n < N
        k̂_t, ĵ_t = head(transformer(enc[windows[t]], dec[windows[t]])[centre])                 t < T
    """

    def __init__(self, avct: AudioVisualCorrelationTransformer, reference_encoder: ReferenceImageEncoder | None = None):
        super().__init__()
        self.avct = avct
        self.reference_encoder = reference_encoder

    def forward(self, phonemes: torch.Tensor, audio: torch.Tensor, pose_boxes: torch.Tensor,
                reference: torch.Tensor, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """phonemes (B, N) long, audio (B, N, 4, 41), pose_boxes (B, N, 256, 256) 0..255, reference (B, C, 64, 64)
        E_kd features (or (B, 3, 256, 256) image with a reference encoder), windows (B, T, W) positions
        → value (B, T, K, 2), jacobian (B, T, K, 2, 2)."""
        b, n = phonemes.shape
        t, w = windows.shape[1:]
        fm = self.reference_encoder(reference) if self.reference_encoder is not None else reference
        enc = self.avct.encoder_tokens(phonemes.reshape(b * n), pose_boxes.reshape(b * n, *pose_boxes.shape[-2:]))
        fm = fm.unsqueeze(1).expand(b, n, *fm.shape[1:]).reshape(b * n, *fm.shape[1:])   # (B·N, C, 64, 64)
        dec = self.avct.decoder_tokens(audio.reshape(b * n, *audio.shape[-2:]), fm)
        d = enc.shape[-1]
        idx = windows.reshape(b, t * w, 1).expand(b, t * w, d)
        enc_w = torch.gather(enc.view(b, n, d), 1, idx).view(b * t, w, d)                # (B·T, W, D)
        dec_w = torch.gather(dec.view(b, n, d), 1, idx).view(b * t, w, d)
        kp = self.avct.head(self.avct.correlate(enc_w, dec_w))
        k = kp.value.shape[1]
        return kp.value.view(b, t, k, 2), kp.jacobian.view(b, t, k, 2, 2)


# ---- data ----------------------------------------------------------------------------------------------
class AvctSequences(torch.utils.data.Dataset):
    """Training items of the AVCT stage.

    BST (``successive``): one item per start frame s of every clip such that the face was found on all of
    frames s..s+T−1,
    N = T + 2w token positions s−w..s+T+w−1, window t = positions t..t+2w.
    No BST: one item per frame with a face: T random such frames of its clip, N = T·W positions (each
    frame's own window), window t = positions tW..tW+W−1.

    Item: frames (T, 3, 256, 256) uint8; reference (3, 256, 256) uint8 (a random frame of the clip, or
    the first frame of the item with ``reference_first``); phonemes (N,) int64 (SIL outside the clip);
    audio (N, 4, 41) float32 (zeros outside); pose_boxes (N, 256, 256) uint8 (0/255, poses clamped to
    the clip); windows (T, W) int64; mouth_boxes (T, 4) float32; frame_audio (T, 4, 41) float32."""

    def __init__(self, data_dir: Path, seq_len: int, num_w: int, successive: bool = True,
                 reference_first: bool = False):
        self.t, self.w, self.successive, self.reference_first = seq_len, num_w, successive, reference_first
        self.clips: list[ClipArrays] = []
        self.starts: list[np.ndarray] = []   # per clip: BST starts / no-BST frames, with the face on every frame
        for clip in read_clips(data_dir):
            starts = clean_starts(clip, seq_len if successive else 1)
            if len(starts):
                self.clips.append(clip)
                self.starts.append(starts)
        if not self.clips:
            raise AvctError(f"no clip in {data_dir} has {seq_len if successive else 1} successive usable frames "
                            "with a face (lower seq_len)")
        self.offsets = np.cumsum([0] + [len(s) for s in self.starts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c = int(np.searchsorted(self.offsets, index, side="right") - 1)
        clip, n, win = self.clips[c], self.clips[c].usable_frames, 2 * self.w + 1
        if self.successive:
            start = int(self.starts[c][index - int(self.offsets[c])])
            frames = np.arange(start, start + self.t)
            positions = np.arange(start - self.w, start + self.t + self.w)
            windows = np.arange(self.t)[:, None] + np.arange(win)[None, :]
        else:
            pool = self.starts[c]
            frames = np.sort(np.random.choice(pool, self.t, replace=len(pool) < self.t))
            positions = (frames[:, None] + np.arange(-self.w, self.w + 1)[None, :]).reshape(-1)
            windows = np.arange(self.t * win).reshape(self.t, win)
        rows = np.array(clip.feature_rows(0, n), np.float32)                           # (n, 4, 41)
        phonemes, audio, boxes = window_inputs(positions, n, clip.phoneme_ids, rows,
                                               np.asarray(clip.poses[:n], np.float64))
        boxes = boxes.astype(np.uint8)
        reference = int(frames[0]) if self.reference_first else int(np.random.randint(n))
        return {
            "frames": torch.from_numpy(frames_chw(clip, frames)),
            "reference": torch.from_numpy(frames_chw(clip, reference)),
            "phonemes": torch.from_numpy(phonemes),
            "audio": torch.from_numpy(audio),
            "pose_boxes": torch.from_numpy(boxes),
            "windows": torch.from_numpy(windows.astype(np.int64)),
            "mouth_boxes": torch.from_numpy(np.asarray(clip.mouth_boxes[frames], np.float32)),
            "frame_audio": torch.from_numpy(np.ascontiguousarray(rows[frames])),
        }


# ---- stage ---------------------------------------------------------------------------------------------
def _repeat(kp: Keypoints, times: int) -> Keypoints:
    """(B, K, ...) → (B·times, K, ...), each row repeated ``times`` times in a row."""
    return Keypoints(kp.value.repeat_interleave(times, 0),
                     None if kp.jacobian is None else kp.jacobian.repeat_interleave(times, 0))


class AvctStage(Stage):
    name = "avct"

    def __init__(self, ctx: StageContext):
        super().__init__(ctx)
        if not isinstance(ctx.config, AvctTrainConfig):
            raise AvctError("the avct stage needs an AvctTrainConfig")
        self.config: AvctTrainConfig = ctx.config
        cfg, w = self.config, self.config.loss_weights
        self.relative = cfg.relative_motion
        self.bst = not cfg.no_bst

        # frozen renderer (E_kd + E_r): an avct/renderer weights dir, official generator.ckpt or FOMM vox file
        if "renderer" not in ctx.init:
            raise AvctError("the avct stage renders through a trained renderer: pass --renderer (a renderer run, "
                            "avct weights dir or official generator.ckpt)")
        renderer = load_models(ctx.init["renderer"])
        renderer.require("keypoint_detector", "generator", source=str(ctx.init["renderer"]))
        self.keypoint_detector, self.generator = renderer.keypoint_detector, renderer.generator
        self.model_config = self._model_config(renderer.config)

        avct = AudioVisualCorrelationTransformer(self.model_config.avct)
        if "avct" in ctx.init:  # fine-tune earlier AVCT weights (e.g. the official ph2kp)
            init = load_models(ctx.init["avct"])
            init.require("avct", source=str(ctx.init["avct"]))
            load_state_checked(avct, init.avct.state_dict(), f"{ctx.init['avct']} [avct]")
        encoder = None
        if cfg.reference_image_instead_of_kp_features:
            a = self.model_config.avct
            encoder = ReferenceImageEncoder(a.feature_channels, a.feature_size)
        self.model = SequenceAVCT(avct, encoder)
        # ablations that cut an input leave its layers without gradients
        self.find_unused_parameters = cfg.no_phonemes or cfg.no_audio_in_decoder or (
            encoder is not None and cfg.no_kp_features_in_decoder)

        self.use_sync = self.bst and not cfg.no_dsync and w.sync > 0
        self.syncnet = None
        if self.use_sync:
            if "syncnet" not in ctx.init:
                raise AvctError("the avct stage's lip-sync loss needs a trained D_sync: pass --syncnet (a syncnet "
                                "run), or set no_dsync: true")
            self.syncnet = load_syncnet(ctx.init["syncnet"])
            if cfg.seq_len < self.syncnet.cfg.num_frames:
                raise AvctError(f"seq_len {cfg.seq_len} is shorter than D_sync's "
                                f"{self.syncnet.cfg.num_frames}-frame window")
        self.use_seq = self.bst and (w.seq_gan > 0 or w.discriminator_seq > 0)
        self.d_seq = None
        if self.use_seq:
            d = cfg.discriminator
            self.d_seq = TemporalDiscriminator(cfg.seq_len, d.scales, block_expansion=d.block_expansion,
                                               max_features=d.max_features, num_blocks=d.num_blocks, sn=d.sn)
            self.seq_pyramid = ImagePyramid(d.scales)
        self.perceptual = None
        if w.perceptual > 0 and any(w.perceptual_layers):
            self.perceptual = PerceptualPyramidLoss(perceptual_network(cfg), cfg.scales, w.perceptual_layers)
        self.pixel = PixelPyramidLoss(cfg.scales, w.pixel) if w.pixel > 0 else None
        # keypoint-only training (no image loss) skips the renderer entirely
        self.render = any(x is not None for x in (self.perceptual, self.pixel, self.syncnet)) or (
            self.use_seq and w.seq_gan > 0)

    def _model_config(self, renderer: ModelConfig) -> ModelConfig:
        """The config to export: the renderer's E_kd/E_r sections, the AVCT section of this run with its
        decoder input fitted to the renderer's feature map (channels = E_kd expansion + 3)."""
        own = self.config.model_config()
        kp = renderer.keypoint_detector
        channels = kp.block_expansion + kp.num_channels
        size = round(IMAGE_SIZE * kp.scale_factor)
        if size != own.avct.feature_size:
            raise AvctError(f"the renderer's keypoint features are {size}² but the AVCT expects "
                            f"{own.avct.feature_size}²")
        avct: AVCTConfig = dataclasses.replace(own.avct, feature_channels=channels, num_kp=kp.num_kp)
        return ModelConfig(keypoint_detector=renderer.keypoint_detector, generator=renderer.generator, avct=avct,
                           head_motion=own.head_motion)

    # -- contract --
    def trainable(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"avct": self.model}
        if self.d_seq is not None:
            modules["d_seq"] = self.d_seq
        return modules

    def frozen(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"keypoint_detector": self.keypoint_detector, "generator": self.generator}
        if self.syncnet is not None:
            out["syncnet"] = self.syncnet
        if self.perceptual is not None:
            out["perceptual"] = self.perceptual
        if self.pixel is not None:
            out["pixel"] = self.pixel
        if self.d_seq is not None:
            out["seq_pyramid"] = self.seq_pyramid
        return out

    def optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        opts = {"avct": torch.optim.Adam(modules["avct"].parameters(), lr=cfg.lr, betas=cfg.betas,
                                         weight_decay=cfg.weight_decay)}
        if "d_seq" in modules:
            opts["d_seq"] = torch.optim.Adam(modules["d_seq"].parameters(), lr=cfg.lr_discriminator, betas=(0.5, 0.999))
        return opts

    def dataset(self) -> torch.utils.data.Dataset:
        if self.ctx.data_dir is None:
            raise AvctError("the avct stage needs a dataset (--data)")
        return AvctSequences(self.ctx.data_dir, self.config.seq_len, self.model_config.avct.num_w,
                             successive=self.bst, reference_first=self.relative)

    def train_step(self, batch: dict[str, torch.Tensor], modules: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], amp: AmpContext) -> StepOutput:
        cfg, w = self.config, self.config.loss_weights
        real_seq = batch["frames"].float() / 255.0                                    # (B, T, 3, H, W)
        b, t = real_seq.shape[:2]
        real = real_seq.flatten(0, 1)                                                  # (B·T, 3, H, W)
        reference = batch["reference"].float() / 255.0                                # (B, 3, H, W)
        optimizers["avct"].zero_grad(set_to_none=True)
        with torch.no_grad():  # the reference through the frozen renderer: once per sequence
            detected = self.keypoint_detector.detect(reference)
            source = self.generator.encode_source(reference)
        parts: dict[str, torch.Tensor] = {}
        with amp.autocast():
            ref_input = reference if self.model.reference_encoder is not None else detected.feature_map
            value, jacobian = modules["avct"](batch["phonemes"], batch["audio"].float(), batch["pose_boxes"].float(),
                                              ref_input, batch["windows"])             # (B, T, K, 2), (B, T, K, 2, 2)
            kp_hat = Keypoints(value.float().flatten(0, 1), jacobian.float().flatten(0, 1))
            kp_ref = _repeat(detected.keypoints, t)                                    # (B·T, K, ...)
            if self.relative:  # Eq. 3 w.r.t. each sequence's first frame (= the reference here)
                first = Keypoints(value[:, :1].float().expand(-1, t, -1, -1).flatten(0, 1),
                                  jacobian[:, :1].float().expand(-1, t, -1, -1, -1).flatten(0, 1))
                kp_driving = relative_motion(kp_ref, kp_hat, first)
            else:
                kp_driving = kp_hat
            fake = None
            if self.render:
                enc = SourceEncoding(*(x.repeat_interleave(t, 0)                       # (B·T, ...)
                                       for x in (source.image, source.features, source.image_down)))
                fake = self.generator.render(enc, kp_ref, kp_driving)["prediction"]   # (B·T, 3, H, W)

            if self.perceptual is not None:
                parts["perceptual"] = w.perceptual * self.perceptual(fake, real)
            if self.pixel is not None:
                parts["pixel"] = self.pixel(fake, real)
            if w.equivariance_value > 0 or w.equivariance_jacobian > 0:
                transform = Transform(b * t, **dataclasses.asdict(cfg.transform), device=real.device)
                with torch.no_grad():
                    kp_warped = self.keypoint_detector(transform.transform_frame(real)).to(torch.float32)
                eq_value, eq_jacobian = equivariance_losses(kp_hat, kp_warped, transform, create_graph=False)
                if w.equivariance_value > 0:
                    parts["equivariance_value"] = w.equivariance_value * eq_value
                if w.equivariance_jacobian > 0 and eq_jacobian is not None:
                    parts["equivariance_jacobian"] = w.equivariance_jacobian * eq_jacobian
            if self.syncnet is not None:
                parts["sync"] = w.sync * self._sync_loss(fake.view(b, t, *fake.shape[1:]), batch)
            if self.d_seq is not None and w.seq_gan > 0:
                real_out, fake_out = self._discriminate(modules["d_seq"], real, fake, b, t)
                parts["seq_gan"] = w.seq_gan * lsgan_generator_loss(fake_out.predictions)
        total = sum(parts.values())
        amp.backward(total)
        amp.step(optimizers["avct"])
        scalars = {k: float(v.detach()) for k, v in parts.items()}
        if self.d_seq is not None and w.discriminator_seq > 0 and fake is not None:
            optimizers["d_seq"].zero_grad(set_to_none=True)  # drop the grads of the generator's pass
            with amp.autocast():
                real_out, fake_out = self._discriminate(modules["d_seq"], real, fake.detach(), b, t)
                d_loss = w.discriminator_seq * lsgan_discriminator_loss(real_out.predictions, fake_out.predictions)
            amp.backward(d_loss)
            amp.step(optimizers["d_seq"])
            scalars["discriminator_seq"] = float(d_loss.detach())
        return StepOutput(float(total.detach()), scalars)

    def _sync_loss(self, fake: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """−log P_sync over every 5-frame window of the generated sequence (frames 3..T−2 as centres).
        fake (B, T, 3, H, W); crops at the real video's mouth boxes; audio = the windows' 20 feature rows."""
        b, t = fake.shape[:2]
        f = self.syncnet.cfg.num_frames
        idx = torch.arange(t - f + 1, device=fake.device)[:, None] + torch.arange(f, device=fake.device)  # (T−4, 5)
        crops = crop_boxes(fake, batch["mouth_boxes"], self.syncnet.cfg.image_size)    # (B, T, 3, S, S)
        crops = crops[:, idx].flatten(0, 1)                                            # (B·(T−4), 5, 3, S, S)
        audio = batch["frame_audio"].float()[:, idx].flatten(0, 1).flatten(1, 2)       # (B·(T−4), 20, 41)
        return sync_loss(self.syncnet(crops, audio))

    def _discriminate(self, d_seq: nn.Module, real: torch.Tensor, fake: torch.Tensor, b: int, t: int):
        """D_seq on [real; fake] sequences, frames stacked on channels: (2B, 3T, h, w) per scale."""
        pyramid = self.seq_pyramid(torch.cat([real, fake]))
        stacked = {s: x.reshape(2 * b, t * x.shape[1], *x.shape[2:]) for s, x in pyramid.items()}
        return d_seq(stacked).split(b)

    def export(self, modules: dict[str, nn.Module], out_dir: Path) -> None:
        seq: SequenceAVCT = getattr(modules["avct"], "module", modules["avct"])
        models = AvctModels(self.model_config, keypoint_detector=self.keypoint_detector, generator=self.generator,
                            avct=seq.avct)
        save_models(models, out_dir)
        if seq.reference_encoder is not None:  # 'w/o Kp' ablation: not usable by `avct generate` as is
            write_safetensors(Path(out_dir) / REFERENCE_ENCODER_FILE, seq.reference_encoder,
                              {"format": "avct-ablation", "ablation": "reference_image_instead_of_kp_features"})
