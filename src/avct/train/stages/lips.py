"""Lip-aperture stage: speech -> how far apart the lips are, per frame (``avct.models.lip_aperture``).

Not in the paper: the bundled weights open the photo's mouth with it (model card). Any talking clips
serve, many speakers better than one: the target of frame i is the inner-lip aperture of the dlib
landmarks ``avct preprocess`` stored for it (:func:`avct.face.landmark_groups.aperture_curve`, the lip metric's
own definition), so what is trained is what is measured. An item is a window of ``seq_len`` frames:
its 4·seq_len feature rows, the clip's spectral mean (the network normalises by the whole utterance,
as at inference), the apertures and a mask of the frames with a face.
Exports the ``lip_aperture`` component only.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...data.dataset import TalkingHeadDataset
from ...errors import AvctError
from ...face.landmark_groups import aperture_curve
from ...models.lip_aperture import SPECTRAL, SPECTRAL_CHANNELS, LipApertureNet
from ...weights.files import load_state_checked
from ...weights import AvctModels, load_models, save_models
from ..config import LipsTrainConfig
from ..stage import AmpContext, Stage, StageContext, StepOutput

MIN_FACE_SHARE = 0.75   # a window needs a face (a finite aperture) in this share of its frames
BAND_SHIFT = 2          # augmentation: the fbank moved by up to this many bands (other vocal tracts)
BAND_MASK = 4           # augmentation: up to this many adjacent bands set to the clip's mean


class ApertureWindows(torch.utils.data.Dataset):
    """Windows of ``seq_len`` frames every ``stride`` frames of every clip.

    Item: rows (4·seq_len, 41) raw features, mean (26,) the clip's fbank mean, phonemes (seq_len,) ids,
    aperture (seq_len,) (0 where no face), mask (seq_len,) 1 where a face was found.

    ``augment``: the fbank of each item moved up or down by up to BAND_SHIFT bands (a longer or shorter
    vocal tract: the data has two dozen voices, users have any) and up to BAND_MASK adjacent bands hidden
    (SpecAugment), so the network cannot key on one voice's spectrum."""

    def __init__(self, data_dir: Path, seq_len: int, stride: int, augment: bool = True):
        self.data = TalkingHeadDataset(data_dir)
        self.seq_len, self.augment = seq_len, augment
        self.apertures: list[np.ndarray] = []
        self.means: list[np.ndarray] = []
        self.windows: list[tuple[int, int]] = []
        for c in range(len(self.data)):
            clip = self.data.clip(c)
            n = clip.usable_frames
            aperture = aperture_curve(list(np.asarray(clip.landmarks[:n], np.float64)))
            self.apertures.append(aperture)
            self.means.append(np.asarray(clip.feature_rows(0, n), np.float32).reshape(-1, 41)[:, SPECTRAL].mean(0))
            finite = np.concatenate([[0], np.cumsum(np.isfinite(aperture))])
            starts = np.arange(0, n - seq_len + 1, stride)
            keep = finite[starts + seq_len] - finite[starts] >= MIN_FACE_SHARE * seq_len
            self.windows += [(c, int(s)) for s in starts[keep]]
        if not self.windows:
            raise AvctError(f"no clip in {data_dir} has {seq_len} frames with a face in most of them "
                            "(lower seq_len or add longer clips)")

    def __len__(self) -> int:
        return len(self.windows)

    def spectral_spread(self) -> np.ndarray:
        """(26,) std of the mean-removed fbank channels over every clip (the network's input scale)."""
        centred = [np.asarray(self.data.clip(c).feature_rows(0, self.data.clip(c).usable_frames), np.float32)
                   .reshape(-1, 41)[:, SPECTRAL] - self.means[c] for c in range(len(self.data))]
        return np.concatenate(centred).std(0).clip(1e-3)

    def typical_spread(self) -> float:
        """The median over clips of each clip's aperture std: how much a speaker's lips typically move
        (``LipApertureConfig.typical_spread``)."""
        return float(np.median([np.nanstd(a) for a in self.apertures if np.isfinite(a).sum() > 1]))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c, start = self.windows[index]
        rows = np.array(self.data.clip(c).feature_rows(start, start + self.seq_len), np.float32).reshape(-1, 41)
        mean = self.means[c]
        if self.augment:
            rows, mean = self._augment(rows, mean)
        aperture = self.apertures[c][start:start + self.seq_len]
        mask = np.isfinite(aperture)
        phonemes = np.asarray(self.data.clip(c).phoneme_range(start, start + self.seq_len), np.int64)
        return {"rows": torch.from_numpy(rows), "mean": torch.from_numpy(mean), "phonemes": torch.from_numpy(phonemes),
                "aperture": torch.from_numpy(np.where(mask, aperture, 0.0).astype(np.float32)),
                "mask": torch.from_numpy(mask.astype(np.float32))}


    @staticmethod
    def _augment(rows: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Band shift and band mask of the fbank (NumPy's global RNG: the engine seeds it per item)."""
        shift = int(np.random.randint(-BAND_SHIFT, BAND_SHIFT + 1))
        index = np.clip(np.arange(SPECTRAL_CHANNELS) - shift, 0, SPECTRAL_CHANNELS - 1)
        fbank, mean = rows[:, SPECTRAL][:, index], mean[index]
        width = int(np.random.randint(0, BAND_MASK + 1))
        if width:
            first = int(np.random.randint(0, SPECTRAL_CHANNELS - width + 1))
            fbank[:, first:first + width] = mean[first:first + width]
        rows = rows.copy()
        rows[:, SPECTRAL] = fbank
        return rows, mean


def masked_curve_losses(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, T) curves and mask -> mean squared error, mean (1 − Pearson r), mean (std ratio − 1)²,
    each over the masked frames of each window (windows whose real curve is flat are left out of r)."""
    count = mask.sum(1).clamp_min(1)
    mse = ((predicted - target) ** 2 * mask).sum() / count.sum()

    def centred(x):
        return (x - (x * mask).sum(1, keepdim=True) / count[:, None]) * mask

    p, t = centred(predicted), centred(target)
    p_std, t_std = (p.pow(2).sum(1) / count).sqrt(), (t.pow(2).sum(1) / count).sqrt()
    moving = t_std > 1e-4
    r = (p * t).sum(1) / count / (p_std * t_std).clamp_min(1e-8)
    correlation = (1 - r[moving]).mean() if moving.any() else predicted.sum() * 0
    amplitude = ((p_std / t_std.clamp_min(1e-4) - 1) ** 2)[moving].mean() if moving.any() else predicted.sum() * 0
    return {"mse": mse, "correlation": correlation, "amplitude": amplitude}


class LipsStage(Stage):
    name = "lips"

    def __init__(self, ctx: StageContext):
        super().__init__(ctx)
        if not isinstance(ctx.config, LipsTrainConfig):
            raise AvctError("the lips stage needs a LipsTrainConfig")
        self.config: LipsTrainConfig = ctx.config
        self.model_config = self.config.model_config()
        self._data: ApertureWindows | None = None
        if ctx.data_dir is not None:  # how much the lips move is data, fixed before the first step
            self.model_config = replace(self.model_config, lip_aperture=replace(
                self.model_config.lip_aperture, typical_spread=self.dataset().typical_spread()))
        self.model = LipApertureNet(self.model_config.lip_aperture)
        if "lips" in ctx.init:  # fine-tune earlier weights
            models = load_models(ctx.init["lips"])
            models.require("lip_aperture", source=str(ctx.init["lips"]))
            load_state_checked(self.model, models.lip_aperture.state_dict(), f"{ctx.init['lips']} [lip_aperture]")
        elif ctx.data_dir is not None:  # the input scale is data too
            self.model.input_scale.copy_(torch.from_numpy(self.dataset().spectral_spread()))

    def trainable(self) -> dict[str, nn.Module]:
        return {"lip_aperture": self.model}

    def optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {"lip_aperture": torch.optim.AdamW(modules["lip_aperture"].parameters(), lr=cfg.lr, betas=cfg.betas,
                                                  weight_decay=cfg.weight_decay)}

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict:
        """Cosine decay to zero over the run (small data: a late low learning rate settles the fit)."""
        return {"lip_aperture": torch.optim.lr_scheduler.CosineAnnealingLR(optimizers["lip_aperture"], self.config.steps)}

    def dataset(self) -> ApertureWindows:
        if self._data is None:
            self._data = ApertureWindows(self.ctx.data_dir, self.config.seq_len, self.config.window_stride)
        return self._data

    def train_step(self, batch: dict[str, torch.Tensor], modules: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], amp: AmpContext) -> StepOutput:
        optimizer = optimizers["lip_aperture"]
        optimizer.zero_grad(set_to_none=True)
        with amp.autocast():  # every member on its own loss: (B, M, seq_len) -> (B·M, seq_len)
            predicted = modules["lip_aperture"].member_apertures(batch["rows"], batch["phonemes"], batch["mean"])
        members = predicted.shape[1]
        parts = masked_curve_losses(predicted.float().flatten(0, 1), batch["aperture"].repeat_interleave(members, 0),
                                    batch["mask"].repeat_interleave(members, 0))
        w = self.config.loss_weights
        total = w.mse * parts["mse"] + w.correlation * parts["correlation"] + w.amplitude * parts["amplitude"]
        amp.backward(total)
        amp.step(optimizer)
        return StepOutput(float(total.detach()), {k: float(v.detach()) for k, v in parts.items()})

    def export(self, modules: dict[str, nn.Module], out_dir: Path) -> None:
        save_models(AvctModels(self.model_config, lip_aperture=modules["lip_aperture"]), out_dir)


STAGE = LipsStage
