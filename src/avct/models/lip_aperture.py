"""Speech -> lip aperture: how far apart the lips are in each video frame, from the audio alone.

Not in the paper. The AVCT moves the lips only through the renderer's keypoints, and a renderer
trained on a few minutes of video on a CPU cannot show a mouth opening even when driven by a real
clip's own keypoints (model card, "Lip motion"). This network predicts the one quantity the lip
metric measures (:mod:`avct.eval.lips`): the inner-lip gap in units of the inter-ocular distance, per
25 fps frame. :mod:`avct.inference.mouth_opening` then opens the photo's mouth by that much.

Input: of the front-end's 41-d rows at 100 Hz (:mod:`avct.audio.features`), the 26 log-fbank channels
and the voiced flag. Not F0 in Hz (a property of the voice, not of the mouth), nor the MFCCs (a linear
transform of the same fbank; with them, held-out correlation dropped from 0.26 to 0.21 in a ridge
regression on the bundled data). The fbank has its mean over the whole utterance removed (microphone,
loudness and voice colour drop out) and is divided by ``input_scale`` (its spread over the training
data). The phonemes the front-end recognised (the AVCT's input too) say what the spectrum alone
cannot: /p b m/ close the lips, open vowels open them (held-out correlation 0.23 -> 0.34 with them in
the same ridge regression)::

    rows (B, T, 41) ─► fbank − utterance mean, ÷ scale; voiced − ½             (B, 27, T)     100 Hz
        ─► conv5 ─► GELU ─► conv5 ─► GELU                                      (B, W, T)
        ─► conv4, stride 4 (the 4 rows of a frame) ─► GELU                     (B, W, T/4)     25 fps
        ─► + linear(phoneme embedding)                                         (B, W, T/4)
        ─► residual dilated conv3 blocks (context ±(1+1+2+4+8) frames ≈ ±0.6 s) (B, W, T/4)
        ─► conv1                                                               (B, T/4)  aperture

With ``members`` = M > 1 the network is M such networks side by side: every convolution after the first
is grouped (M groups of W channels), so the copies share only their input, and the aperture is the
mean of their M outputs. Trained each on its own loss (:mod:`avct.train.stages.lips`), they are an
ensemble in one module; M = 1 is the plain network above, with the same parameter names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LipApertureConfig
from ..media import ROWS_PER_FRAME

SPECTRAL = slice(13, 39)  # the 26 log-fbank channels of a feature row
SPECTRAL_CHANNELS = 26
VOICED = 40               # the voiced flag (index 39 is F0 in Hz, not used)


def spectral_mean(rows: torch.Tensor) -> torch.Tensor:
    """(B, T, 41) feature rows -> (B, 26) mean of the fbank channels over the utterance."""
    return rows[..., SPECTRAL].mean(dim=-2)


class LipApertureNet(nn.Module):
    def __init__(self, cfg: LipApertureConfig):
        super().__init__()
        self.cfg = cfg
        m = cfg.members
        w = cfg.width * m          # all members' channels, member k's in [k·width, (k+1)·width)
        self.register_buffer("input_scale", torch.ones(SPECTRAL_CHANNELS))
        self.conv_in = nn.Conv1d(SPECTRAL_CHANNELS + 1, w, 5, padding=2)   # shared input: M convs in one
        self.conv_rows = nn.Conv1d(w, w, 5, padding=2, groups=m)
        self.to_frames = nn.Conv1d(w, w, ROWS_PER_FRAME, stride=ROWS_PER_FRAME, groups=m)
        dim = cfg.phoneme_dim * m
        self.phoneme_embedding = nn.Embedding(cfg.num_phonemes, dim) if cfg.phoneme_dim else None
        self.from_phonemes = nn.Conv1d(dim, w, 1, groups=m) if cfg.phoneme_dim else None
        self.blocks = nn.ModuleList(nn.Conv1d(w, w, 3, padding=d, dilation=d, groups=m) for d in cfg.dilations)
        self.head = nn.Conv1d(w, m, 1, groups=m)

    def normalize(self, rows: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 41) raw rows -> (B, 27, T) network input; ``mean`` (B, 26): the whole utterance's
        spectral mean when ``rows`` is a window of it (training), else the mean of ``rows``."""
        mean = spectral_mean(rows) if mean is None else mean
        spectral = (rows[..., SPECTRAL] - mean[:, None]) / self.input_scale
        voiced = rows[..., VOICED:VOICED + 1] - 0.5
        return torch.cat([spectral, voiced], dim=-1).transpose(1, 2)

    def forward(self, rows: torch.Tensor, phonemes: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 4·N, 41) feature rows, (B, N) phoneme ids -> (B, N) aperture of each frame (inter-ocular
        units): the members' mean."""
        return self.member_apertures(rows, phonemes, mean).mean(dim=1)

    def member_apertures(self, rows: torch.Tensor, phonemes: torch.Tensor,
                         mean: torch.Tensor | None = None) -> torch.Tensor:
        """Same inputs -> (B, M, N) every member's apertures (what training fits, one loss each)."""
        drop = self.cfg.dropout if self.training else 0.0
        x = self.normalize(rows, mean)
        x = F.gelu(self.conv_rows(F.gelu(self.conv_in(x))))
        x = self.to_frames(x)
        if self.phoneme_embedding is not None:
            x = x + self.from_phonemes(self.phoneme_embedding(phonemes).transpose(1, 2))
        x = F.dropout(F.gelu(x), drop, self.training)
        for block in self.blocks:
            x = x + F.dropout(F.gelu(block(x)), drop, self.training)
        return self.head(x)                                                     # (B, M, N)

    @torch.inference_mode()
    def predict(self, rows: torch.Tensor, phonemes: torch.Tensor) -> torch.Tensor:
        """(4·N, 41) rows and (N,) phoneme ids of a whole utterance -> (N,) apertures, never below 0.

        The prediction's swings about its own average are scaled to ``typical_spread``, the training
        speakers' typical amount of lip motion: the network's timing is kept, its amount is not. Why:
        how much a person moves the lips is their own (it varies about fourfold between the training
        speakers), and the network cannot hear it. In two-fold cross-speaker validation on the training
        clips its own spread per utterance did not follow the real one (it correlated negatively), and the
        typical spread (each fold's own) put the amplitude near the real one for about twice as many clips
        as its own spread did (``scripts/lip_validation.py``; figures in the bundled weights' model card,
        "Lip motion").
        Weights without ``typical_spread`` keep the members' typical spread (the mean of M members
        moves less than any of them, as averaging cancels what they do not share)."""
        n = min(rows.shape[0] // ROWS_PER_FRAME, phonemes.shape[0])
        members = self.member_apertures(rows[None, :n * ROWS_PER_FRAME].float(), phonemes[None, :n].long())[0]  # (M, N)
        mean = members.mean(dim=0)
        target = self.cfg.typical_spread or (members.std(dim=1).mean() if len(members) > 1 else 0.0)
        if target and n > 1 and (spread := mean.std()) > 0:
            centre = mean.mean()
            mean = centre + (mean - centre) * (target / spread)
        return mean.clamp_min(0.0)
