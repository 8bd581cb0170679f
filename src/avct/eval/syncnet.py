"""AVOff / AVConf: the reference scoring procedure around ``syncnet_v2`` (:mod:`avct.models.syncnet`).

The numbers only mean something when computed the way the field computes them
(``shared/reference/syncnet/README.md``; ``syncnet_python``'s ``SyncNetInstance.evaluate``):

* video at 25 fps, face crops 224x224 BGR 0..255 (no normalisation), clips of 5 frames ``i..i+4``;
* audio 16 kHz mono → ``python_speech_features.mfcc(audio, 16000)`` (13 x T at 100 Hz), computed on the
  whole signal and then cut into windows of MFCC frames ``4i .. 4i+19``;
* for ``0 <= i < min(frames, floor(samples / 640)) - 5``: embeddings ``v_i`` (video) and ``a_i`` (audio);
* for offsets ``-15..15``: ``dist[i, k] = ||v_i - a_{i+k-15} + 1e-6||`` (``pairwise_distance``; audio
  zero-padded at both ends), ``mdist = mean_i dist[i]``;
* AVOff = ``15 - argmin(mdist)``, LSE-D = ``min(mdist)``, AVConf = LSE-C = ``median(mdist) - min(mdist)``;
  per-frame confidence ``median(mdist) - dist[i, argmin]``, median-filtered over 9 frames.

Any embedder works as long as it has ``embed_video(clips)`` and ``embed_audio(windows)`` (the
:class:`SyncEmbedder` protocol). By default ``clips`` is a float tensor (N, 3, 5, 224, 224) BGR 0..255 and
``windows`` (N, 1, 13, 20) MFCC — syncnet_v2's inputs; an embedder trained on other inputs also defines
``make_clips(crops, starts, mouths)`` and/or ``make_windows(samples, starts)`` to build them from RGB
224x224 crops (+ per-frame mouth boxes in crop pixels) and 16 kHz samples — as :class:`DsyncEmbedder`
does for the D_sync of ``avct train syncnet``.

User weights are loaded with ``torch.load(weights_only=True)``: a plain state dict of tensors with
exactly syncnet_v2's keys and shapes, nothing else (no pickled code is ever executed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal

from ..errors import AvctError
from ..media import SAMPLES_PER_FRAME, SAMPLE_RATE

__all__ = ["SyncEmbedder", "SyncResult", "DsyncEmbedder", "load_embedder",
           "mfcc_features", "sync_scores", "score_sync", "default_make_clips", "default_make_windows", "VSHIFT",
           "CLIP_FRAMES"]

VSHIFT = 15
CLIP_FRAMES = 5
MFCC_PER_FRAME = 4       # 100 Hz / 25 fps
MFCC_WINDOW = 20         # 0.2 s = 5 video frames
CONF_MEDIAN_KERNEL = 9


@runtime_checkable
class SyncEmbedder(Protocol):
    """What the scorer needs: two embedding functions into one space where in-sync pairs are close."""

    def embed_video(self, clips: Any) -> torch.Tensor: ...

    def embed_audio(self, windows: Any) -> torch.Tensor: ...


class DsyncEmbedder:
    """Adapter for the D_sync of ``avct train syncnet`` (:class:`avct.models.discriminators.SyncNet`).

    Its inputs differ from syncnet_v2's: 5 RGB mouth crops in [0, 1] (square around the mouth landmarks,
    as the training data's ``mouth_boxes``) and 20 rows of avct's 41-d acoustic features; its embeddings
    are unit-norm, so its distances (and AVConf) are on another scale than syncnet_v2's — compare them
    only with each other.
    """

    def __init__(self, model: Any) -> None:
        self.model = model.eval() if hasattr(model, "eval") else model
        self.cfg = model.cfg

    def make_clips(self, crops: np.ndarray, starts: Sequence[int], mouths: np.ndarray | None = None) -> torch.Tensor:
        from ..models.syncnet import crop_boxes

        if mouths is None:
            raise AvctError("D_sync scoring needs mouth boxes (face landmarks) for every frame")
        n = self.cfg.num_frames
        idx = np.asarray(starts)[:, None] + np.arange(n)[None, :]
        frames = torch.from_numpy(np.ascontiguousarray(crops[idx])).permute(0, 1, 4, 2, 3).float() / 255.0
        boxes = torch.from_numpy(np.asarray(mouths, dtype=np.float32)[idx])
        return crop_boxes(frames, boxes, self.cfg.image_size)

    def make_windows(self, samples: np.ndarray, starts: Sequence[int]) -> torch.Tensor:
        from ..audio.features import acoustic_features

        feats = acoustic_features(np.asarray(samples, dtype=np.float64))
        rows, rpf = self.cfg.audio_rows, self.cfg.rows_per_frame
        out = np.zeros((len(starts), rows, feats.shape[1]), dtype=np.float32)
        for k, i in enumerate(starts):
            w = feats[rpf * i:rpf * i + rows]
            out[k, :len(w)] = w
        return torch.from_numpy(out)

    @torch.inference_mode()
    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        return self.model.embed_video(clips.to(p.device, p.dtype)).float().cpu()

    @torch.inference_mode()
    def embed_audio(self, windows: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        return self.model.embed_audio(windows.to(p.device, p.dtype)).float().cpu()


def load_embedder(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncEmbedder:
    """``--syncnet PATH``: a syncnet_v2 state-dict file, or a D_sync directory from ``avct train syncnet``."""
    from ..weights.syncnet import load_syncnet, load_syncnet_v2

    path = Path(path)
    if path.is_dir() or path.name.endswith(".json"):
        return DsyncEmbedder(load_syncnet(path).to(device))
    return load_syncnet_v2(path, device=device)


# ---- inputs --------------------------------------------------------------------------------------


def mfcc_features(samples: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """(13, T) MFCC at 100 Hz, exactly ``python_speech_features.mfcc(audio, 16000)`` transposed."""
    import python_speech_features

    return np.asarray(python_speech_features.mfcc(np.asarray(samples), rate), dtype=np.float64).T


def default_make_windows(samples: np.ndarray, starts: Sequence[int]) -> torch.Tensor:
    """syncnet_v2 audio input for clips starting at video frames ``starts``: (N, 1, 13, 20) MFCC."""
    mfcc = mfcc_features(samples)
    out = np.zeros((len(starts), 1, mfcc.shape[0], MFCC_WINDOW), dtype=np.float32)
    for n, i in enumerate(starts):
        w = mfcc[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_WINDOW]
        out[n, 0, :, :w.shape[1]] = w
    return torch.from_numpy(out)


def default_make_clips(crops: np.ndarray, starts: Sequence[int], mouths: np.ndarray | None = None) -> torch.Tensor:
    """syncnet_v2 video input: (N, 3, 5, 224, 224) float BGR 0..255 from (T, 224, 224, 3) RGB uint8."""
    idx = np.asarray(starts)[:, None] + np.arange(CLIP_FRAMES)[None, :]
    clips = crops[idx][..., ::-1]  # (N, 5, H, W, 3) BGR
    return torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).float()


# ---- scoring maths -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """SyncNet scores of one video.

    ``offset`` (AVOff) > 0: the audio *leads* the video by that many frames (a sound is heard before the
    mouth makes it); < 0: the audio lags.
    """

    offset: int               # AVOff, frames (→ 0 is best)
    confidence: float         # AVConf = LSE-C
    min_dist: float           # LSE-D
    mdist: np.ndarray         # (2 vshift + 1,) mean distance per offset (offset = vshift - index)
    frame_conf: np.ndarray    # (N,) per-clip confidence, median-filtered over 9 clips
    frames: int               # number of clips scored


def _calc_pdist(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> torch.Tensor:
    """(N, 2 vshift + 1) distances of video i to audio i - vshift .. i + vshift (zero-padded)."""
    win = 2 * vshift + 1
    padded = F.pad(audio, (0, 0, vshift, vshift))
    windows = padded.unfold(0, win, 1).permute(0, 2, 1)[: len(video)]  # (N, win, D)
    return F.pairwise_distance(video[:, None, :].expand_as(windows), windows)


def sync_scores(video_emb: torch.Tensor | np.ndarray, audio_emb: torch.Tensor | np.ndarray,
                vshift: int = VSHIFT) -> SyncResult:
    """The reference offset/confidence from per-clip embeddings (same length N, row i = clip i)."""
    v = torch.as_tensor(np.asarray(video_emb), dtype=torch.float32)
    a = torch.as_tensor(np.asarray(audio_emb), dtype=torch.float32)
    if v.ndim != 2 or v.shape != a.shape or len(v) == 0:
        raise ValueError(f"need two (N, D) embedding arrays of equal shape, got {tuple(v.shape)}, {tuple(a.shape)}")
    dists = _calc_pdist(v, a, vshift)             # (N, win)
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    median = torch.median(mdist)                  # torch's lower median, as the reference
    fconf = (median - dists[:, minidx]).numpy().astype(np.float64)
    fconf = signal.medfilt(fconf, kernel_size=CONF_MEDIAN_KERNEL)
    return SyncResult(offset=int(vshift - int(minidx)), confidence=float(median - minval),
                      min_dist=float(minval), mdist=mdist.numpy().astype(np.float64), frame_conf=fconf,
                      frames=len(v))


def score_sync(crops: np.ndarray, samples: np.ndarray, embedder: SyncEmbedder, batch_size: int = 20,
               vshift: int = VSHIFT, mouths: np.ndarray | None = None) -> SyncResult | None:
    """Score a 25 fps face-crop sequence (T, 224, 224, 3) RGB uint8 against its 16 kHz audio.

    ``mouths``: optional (T, 4) mouth boxes in crop pixels, for embedders that look at the mouth only.
    None when the video is too short for a single 5-frame clip.
    """
    n = min(len(crops), int(np.floor(len(samples) / SAMPLES_PER_FRAME))) - CLIP_FRAMES
    if n <= 0:
        return None
    starts = list(range(n))
    make_clips = getattr(embedder, "make_clips", default_make_clips)
    make_windows = getattr(embedder, "make_windows", default_make_windows)
    windows = make_windows(samples, starts)
    video, audio = [], []
    with torch.inference_mode():
        for b in range(0, n, batch_size):
            batch = starts[b:b + batch_size]
            clips = make_clips(crops, batch, mouths)
            video.append(torch.as_tensor(embedder.embed_video(clips)).float().cpu())
            audio.append(torch.as_tensor(embedder.embed_audio(windows[b:b + batch_size])).float().cpu())
    return sync_scores(torch.cat(video), torch.cat(audio), vshift=vshift)
