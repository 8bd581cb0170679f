"""Head-motion predictor stage (paper §3 "Head Motion Predictor"; official audio2poseLSTM).

E_h learns one speaker's head motion from audio. An item is a window of ``seq_len`` frames of a clip:
the pose box of its first pose (the "reference"), the 4x41 audio chunks of its first seq_len-1 frames
and its seq_len true poses, normalised to the predictor's [-1, 1] range (inverse of
``HeadMotionPredictor.denormalize``). Exactly as in inference, output row 0 comes from the pose box
alone and row t >= 1 after audio chunk t-1. Loss: L1 over the sequence plus the paper's extra L1 on
row 0, which anchors the predicted sequence at the reference pose (relative motion transfer needs
that). Exports the ``head_motion`` component only; a later merge combines it with the other runs.
Data: ``avct.data.dataset.TalkingHeadDataset`` (poses.npy, features.npy, landmarks for lost frames).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...weights.files import load_state_checked
from ...weights import AvctModels, load_models, save_models
from ...data.dataset import TalkingHeadDataset
from ...errors import AvctError
from ...face.pose_box import draw_pose_box
from ...models.head_motion import HeadMotionPredictor
from ..config import HeadMotionTrainConfig
from ..stage import AmpContext, Stage, StageContext, StepOutput


def normalize_poses(poses: np.ndarray, pose_min: tuple[float, ...], pose_max: tuple[float, ...]) -> np.ndarray:
    """[Rx, Ry, Rz (rad), Tx, Ty, Tz (mm)] -> the predictor's [-1, 1] units (inverse of denormalize)."""
    lo, hi = np.asarray(pose_min, np.float64), np.asarray(pose_max, np.float64)
    return ((np.asarray(poses, np.float64) - lo) / (hi - lo) * 2 - 1).astype(np.float32)


class PoseSequences(torch.utils.data.Dataset):
    """Every window of ``seq_len`` usable frames in which the face was found on every frame (the
    poses of lost frames are only interpolated), starting every ``stride`` frames.

    Item: pose_box (1, 256, 256) values 0/255, audio (seq_len-1, 4, 41) raw features,
    poses (seq_len, 6) normalised targets."""

    def __init__(self, data_dir: Path, seq_len: int, stride: int, pose_min: tuple[float, ...],
                 pose_max: tuple[float, ...]):
        self.data = TalkingHeadDataset(data_dir)
        self.seq_len, self.pose_min, self.pose_max = seq_len, pose_min, pose_max
        self.windows: list[tuple[int, int]] = []
        for c in range(len(self.data)):
            clip = self.data.clip(c)
            n = clip.usable_frames
            lost = np.concatenate([[0], np.cumsum(~clip.face_found[:n])])
            starts = np.arange(0, n - seq_len + 1, stride)
            self.windows += [(c, int(s)) for s in starts[lost[starts + seq_len] == lost[starts]]]
        if not self.windows:
            raise AvctError(f"no clip in {data_dir} has {seq_len} consecutive usable frames with a detected face "
                            "(lower seq_len or add longer clips)")

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c, start = self.windows[index]
        clip, n = self.data.clip(c), self.seq_len
        poses = np.asarray(clip.pose_range(start, start + n), np.float64)
        audio = np.array(clip.feature_rows(start, start + n - 1), np.float32)   # (n-1, 4, 41)
        return {
            "pose_box": torch.from_numpy(draw_pose_box(poses[0]))[None],
            "audio": torch.from_numpy(audio),
            "poses": torch.from_numpy(normalize_poses(poses, self.pose_min, self.pose_max)),
        }


class HeadMotionStage(Stage):
    name = "headmotion"

    def __init__(self, ctx: StageContext):
        super().__init__(ctx)
        if not isinstance(ctx.config, HeadMotionTrainConfig):
            raise AvctError("the headmotion stage needs a HeadMotionTrainConfig")
        self.config: HeadMotionTrainConfig = ctx.config
        self.model_config = self.config.model_config()
        self.model = HeadMotionPredictor(self.model_config.head_motion)
        if "headmotion" in ctx.init:  # fine-tune earlier weights (any checkpoint avct can load)
            models = load_models(ctx.init["headmotion"])
            models.require("head_motion", source=str(ctx.init["headmotion"]))
            load_state_checked(self.model, models.head_motion.state_dict(), f"{ctx.init['headmotion']} [head_motion]")

    def trainable(self) -> dict[str, nn.Module]:
        return {"head_motion": self.model}

    def optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {"head_motion": torch.optim.Adam(modules["head_motion"].parameters(), lr=cfg.lr, betas=cfg.betas,
                                                weight_decay=cfg.weight_decay)}

    def dataset(self) -> torch.utils.data.Dataset:
        hm = self.model_config.head_motion
        return PoseSequences(self.ctx.data_dir, self.config.seq_len, self.config.window_stride,
                             hm.pose_min, hm.pose_max)

    def losses(self, predicted: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """predicted/target (B, seq_len, 6) normalised poses -> weighted total and its parts."""
        w = self.config.loss_weights
        sequence = F.l1_loss(predicted, target)
        first = F.l1_loss(predicted[:, 0], target[:, 0])
        return {"total": w.pose * sequence + w.first_pose * first, "l1_sequence": sequence, "l1_first": first}

    def train_step(self, batch: dict[str, torch.Tensor], modules: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], amp: AmpContext) -> StepOutput:
        optimizer = optimizers["head_motion"]
        optimizer.zero_grad(set_to_none=True)
        with amp.autocast():
            predicted = modules["head_motion"](batch["pose_box"], batch["audio"])  # (B, seq_len, 6)
        losses = self.losses(predicted.float(), batch["poses"])
        amp.backward(losses["total"])
        amp.step(optimizer)
        return StepOutput(float(losses["total"].detach()),
                          {"l1_sequence": float(losses["l1_sequence"].detach()),
                           "l1_first": float(losses["l1_first"].detach())})

    def export(self, modules: dict[str, nn.Module], out_dir: Path) -> None:
        save_models(AvctModels(self.model_config, head_motion=modules["head_motion"]), out_dir)


STAGE = HeadMotionStage
