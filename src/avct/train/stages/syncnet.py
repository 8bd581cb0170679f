"""Lip-sync discriminator stage: D_sync (SyncNet) on one speaker's videos (paper §3, Eq. 1).

An item is a 5-frame window centred on frame c: the mouth crops of frames c−2..c+2 (boxes from
``mouth_boxes.npy``) and 20 rows of acoustic features. With probability ``negative_ratio`` the audio is
taken from another window of the same clip, at least ``min_negative_offset`` frames away (label 0),
else from the same frames (label 1). Loss: BCE(P_sync, label), P_sync = cosine similarity of the
embeddings. Adam at a fixed lr (paper: 1e-4, no schedule).

Export (``RUN_DIR/weights``): ``syncnet.safetensors`` + ``syncnet.json`` (see
``avct.weights.syncnet.save_syncnet``); ``load_syncnet(dir)`` reads it back for the AVCT stage
(frozen D_sync) and for evaluation (AVOff/AVConf from ``embed_video`` / ``embed_audio``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import AvctError
from ...models.syncnet import SYNCNET_PRESETS, SyncNet, SyncNetConfig, crop_boxes, sync_bce
from ...weights import load_syncnet, save_syncnet
from ..config import SyncNetTrainConfig
from ..stage import AmpContext, Stage, StageContext, StepOutput
from ._clips import ClipArrays, clean_starts, frames_chw, read_clips

__all__ = ["SyncNetStage", "SyncWindows", "load_syncnet", "syncnet_config"]


def syncnet_config(config: SyncNetTrainConfig) -> SyncNetConfig:
    """Widths from the model preset (official | small), window and crop size from the training config."""
    base = SYNCNET_PRESETS.get(config.model, SYNCNET_PRESETS["official"])
    return dataclasses.replace(base, num_frames=config.window, image_size=config.image_size)


class SyncWindows(torch.utils.data.Dataset):
    """Every window centre of every clip once per epoch, positive or negative at random.

    Item: crops (W, 3, S, S) float32 in [0, 1]; audio (W·4, 41) float32; label () float32 (1 = in sync)."""

    def __init__(self, data_dir: Path, window: int, image_size: int, negative_ratio: float, min_offset: int):
        self.half, self.window = window // 2, window
        self.image_size, self.negative_ratio, self.min_offset = image_size, negative_ratio, min_offset
        self.clips: list[ClipArrays] = []
        self.centres: list[np.ndarray] = []   # per clip: centres of windows with the face on every frame
        for clip in read_clips(data_dir):
            centres = clean_starts(clip, window) + self.half
            if len(centres):
                self.clips.append(clip)
                self.centres.append(centres)
        if not self.clips:
            raise AvctError(f"no clip in {data_dir} has {window} successive usable frames with a face")
        self.offsets = np.cumsum([0] + [len(c) for c in self.centres])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def audio_rows(self, clip: ClipArrays, centre: int) -> np.ndarray:
        """(W·4, 41): the feature rows of frames centre−2..centre+2."""
        rows = clip.feature_rows(centre - self.half, centre + self.half + 1)          # (W, 4, 41)
        return np.array(rows, np.float32).reshape(-1, rows.shape[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c = int(np.searchsorted(self.offsets, index, side="right") - 1)
        clip, centres = self.clips[c], self.centres[c]
        centre = int(centres[index - int(self.offsets[c])])
        label, audio_centre = 1.0, centre
        if np.random.rand() < self.negative_ratio:
            far = centres[np.abs(centres - centre) >= self.min_offset]   # at least min_offset frames away
            if len(far):
                label, audio_centre = 0.0, int(np.random.choice(far))
        idx = np.arange(centre - self.half, centre + self.half + 1)
        frames = torch.from_numpy(frames_chw(clip, idx)).float() / 255.0                   # (W, 3, H, W)
        boxes = torch.from_numpy(np.asarray(clip.mouth_boxes[idx], np.float32))             # (W, 4)
        return {"crops": crop_boxes(frames, boxes, self.image_size),                        # (W, 3, S, S)
                "audio": torch.from_numpy(self.audio_rows(clip, audio_centre)),            # (W·4, 41)
                "label": torch.tensor(label, dtype=torch.float32)}


class SyncNetStage(Stage):
    name = "syncnet"

    def __init__(self, ctx: StageContext):
        super().__init__(ctx)
        if not isinstance(ctx.config, SyncNetTrainConfig):
            raise AvctError("the syncnet stage needs a SyncNetTrainConfig")
        self.config: SyncNetTrainConfig = ctx.config
        self.model = SyncNet(syncnet_config(self.config))
        if "syncnet" in ctx.init:  # continue from an earlier D_sync
            init = load_syncnet(ctx.init["syncnet"])
            if init.cfg != self.model.cfg:
                raise AvctError(f"--syncnet {ctx.init['syncnet']} has another shape than this config's SyncNet")
            self.model.load_state_dict(init.state_dict())

    def trainable(self) -> dict[str, nn.Module]:
        return {"syncnet": self.model}

    def optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {"syncnet": torch.optim.Adam(modules["syncnet"].parameters(), lr=cfg.lr, betas=cfg.betas,
                                            weight_decay=cfg.weight_decay)}

    def dataset(self) -> torch.utils.data.Dataset:
        if self.ctx.data_dir is None:
            raise AvctError("the syncnet stage needs a dataset (--data)")
        cfg = self.config
        return SyncWindows(self.ctx.data_dir, cfg.window, cfg.image_size, cfg.negative_ratio, cfg.min_negative_offset)

    def train_step(self, batch: dict[str, torch.Tensor], modules: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], amp: AmpContext) -> StepOutput:
        optimizer = optimizers["syncnet"]
        optimizer.zero_grad(set_to_none=True)
        label = batch["label"].float()
        with amp.autocast():
            p_sync = modules["syncnet"](batch["crops"].float(), batch["audio"].float())    # (B,) in [0, 1]
        loss = sync_bce(p_sync, label)
        amp.backward(loss)
        amp.step(optimizer)
        p = p_sync.detach().float()
        scalars = {"accuracy": float(((p > 0.5).float() == label).float().mean())}
        if (label > 0.5).any():
            scalars["p_sync_positive"] = float(p[label > 0.5].mean())
        if (label < 0.5).any():
            scalars["p_sync_negative"] = float(p[label < 0.5].mean())
        return StepOutput(float(loss.detach()), scalars)

    def export(self, modules: dict[str, nn.Module], out_dir: Path) -> None:
        save_syncnet(getattr(modules["syncnet"], "module", modules["syncnet"]), out_dir)


STAGE = SyncNetStage
