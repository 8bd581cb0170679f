"""The AVCT's per-frame tokens of one job, every frame's computed once, by whichever thread needs it first.

Why: the AVCT reads windows of 2·5 frames around each frame, so the chunks a job is rendered in
(:func:`avct.inference.schedule.chunk_bounds`) each computed their neighbours' edge tokens again (920
token pairs for a 750-frame video in 17 chunks). And the decoder's tokens need only the speech features
and the photo, not the phonemes, so a job can compute them while the recogniser is still running
(:meth:`avct.inference.stages.Stages.decoder_tokens_ahead`), on a core that would otherwise wait.

Positions outside the video follow the official windows' padding rule (:func:`avct.models.avct.window_inputs`):
one token pair before the first frame (silence, the first pose) and one after the last.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from ..models.avct import window_inputs

BLOCK = 64  # frames whose tokens are computed in one call (pose boxes are 256² each)


@dataclass
class DecoderAhead:
    """Decoder tokens of a job's first frames, computed before its phonemes were known, valid only for
    the pipeline and the reference they were computed with; ``detected``: the keypoint detector's output
    on that reference (its keypoints and feature map), which the job then uses rather than detecting again."""

    pipeline: object
    reference: object
    detected: object
    tokens: torch.Tensor  # (M, D), frames 0..M-1


class FrameTokens:
    """Encoder and decoder tokens of every frame of one job (speech, poses and reference feature map),
    computed on demand; thread-safe (two render workers ask for overlapping windows).

    Rows of the tables: 0 = before the video, 1..n = the frames, n + 1 = after it."""

    def __init__(self, avct, phonemes: np.ndarray, rows: np.ndarray, poses: np.ndarray,
                 feature_map: torch.Tensor, device: torch.device, dtype: torch.dtype,
                 decoder_ahead: torch.Tensor | None = None) -> None:
        self._avct, self._phonemes, self._rows, self._poses = avct, phonemes, rows, poses
        self._feature_map, self._device, self._dtype = feature_map, device, dtype
        self.num_frames = n = len(rows)
        edges = np.array([-1, n])
        enc, dec = self._compute(edges, np.ones(2, bool))
        self._enc = enc.new_empty((n + 2, enc.shape[1]))
        self._dec = dec.new_empty((n + 2, dec.shape[1]))
        self._enc[[0, n + 1]], self._dec[[0, n + 1]] = enc, dec
        self._has_decoder = np.zeros(n, bool)  # a decoder token given ahead
        if decoder_ahead is not None and len(decoder_ahead):  # stopped before its first block: none
            m = min(n, len(decoder_ahead))
            self._dec[1:m + 1] = decoder_ahead[:m].to(self._dec.dtype)
            self._has_decoder[:m] = True
        self._claimed = np.zeros(n, bool)
        self._done = np.zeros(n, bool)
        self._ready = threading.Condition()

    def get(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder and decoder tokens (P, D) of frame ``positions`` (increasing; outside the video allowed)."""
        n = self.num_frames
        inside = positions[(positions >= 0) & (positions < n)]
        self._ensure(inside)
        rows = torch.from_numpy(np.clip(positions, -1, n) + 1)
        return self._enc[rows], self._dec[rows]

    def _ensure(self, frames: np.ndarray) -> None:
        """Return once every one of ``frames`` has its tokens: computing those no thread has claimed,
        waiting for the others (a thread that fails gives its frames back to be claimed again)."""
        while True:
            with self._ready:
                if self._done[frames].all():
                    return
                mine = frames[~self._claimed[frames]]
                if not len(mine):
                    self._ready.wait()
                    continue
                self._claimed[mine] = True
            self._fill(mine)

    def _fill(self, frames: np.ndarray) -> None:
        try:
            for b in range(0, len(frames), BLOCK):
                block = frames[b:b + BLOCK]
                need_decoder = ~self._has_decoder[block]
                enc, dec = self._compute(block, need_decoder)
                self._enc[block + 1] = enc
                if dec is not None:
                    self._dec[block[need_decoder] + 1] = dec
                with self._ready:
                    self._done[block] = True
                    self._ready.notify_all()
        except BaseException:
            with self._ready:
                self._claimed[frames[~self._done[frames]]] = False
                self._ready.notify_all()
            raise

    def _compute(self, positions: np.ndarray, need_decoder: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        return window_tokens(self._avct, positions, self._phonemes, self._rows, self._poses, self._feature_map,
                             self._device, self._dtype, need_decoder=need_decoder)


def window_tokens(avct, positions: np.ndarray, phonemes: np.ndarray, rows: np.ndarray, poses: np.ndarray,
                  feature_map: torch.Tensor, device: torch.device, dtype: torch.dtype, *, silent: bool = False,
                  need_decoder: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """AVCT encoder and decoder tokens (P, D) of frame ``positions`` of the video whose per-frame inputs
    are ``phonemes``, ``rows`` (N, 4, 41) and ``poses``, positions outside it padded by the official
    windows' rule (``silent``: every frame's speech replaced by silence, for mouth_scale); decoder tokens
    only where ``need_decoder`` (None: all; no row needed: None)."""
    ph, audio, boxes = window_inputs(positions, len(rows), phonemes, rows, poses, silent=silent)
    with torch.inference_mode():
        enc = avct.encoder_tokens(torch.from_numpy(ph).to(device), torch.from_numpy(boxes).to(device, dtype))
        if need_decoder is not None:
            if not need_decoder.any():
                return enc, None
            audio = audio[need_decoder]
        return enc, avct.decoder_tokens(torch.from_numpy(audio).to(device, dtype), feature_map)


def decoder_tokens_ahead(avct, rows: np.ndarray, feature_map: torch.Tensor, device: torch.device,
                         dtype: torch.dtype, stop: threading.Event) -> torch.Tensor:
    """The decoder tokens of frames 0, 1, ... of ``rows`` (N, 4, 41), a block at a time until all are
    done or ``stop`` is set: (M, D), M ≤ N (M = 0 when stopped at once)."""
    done = []
    with torch.inference_mode():
        for b in range(0, len(rows), BLOCK):
            if stop.is_set():
                break
            audio = torch.from_numpy(np.ascontiguousarray(rows[b:b + BLOCK], dtype=np.float32))
            done.append(avct.decoder_tokens(audio.to(device, dtype), feature_map))
    if not done:
        return torch.empty(0)
    return torch.cat(done)
