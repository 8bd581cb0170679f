"""Shared by the stage tests: a tiny model config, a fixed batch, an over-fit loop driven through
``train_step`` directly (no engine), and a tiny renderer over-fitted once per session.

Over-fit loops run on one thread: on a shared 2-core machine OpenMP with 2 threads is several times
slower than 1 as soon as another process competes for the cores.
"""
from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from avct.train.config import load_config
from avct.train.stage import AmpContext, Stage, StageContext

CPU = torch.device("cpu")
# Same structure as `small`, narrower: every network runs at the real 256² resolution but in milliseconds.
TINY_MODEL = {
    "keypoint_detector": {"block_expansion": 8, "max_features": 64},
    "generator": {"block_expansion": 8, "max_features": 64, "num_bottleneck_blocks": 1,
                  "dense_motion": {"block_expansion": 8, "max_features": 64}},
    "avct": {"feature_channels": 11, "block_channels": [8, 16, 32, 64, 64], "d_model": 64, "nhead": 2,
             "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 128, "dropout": 0.0},
}
# The perceptual loss on the ¼ and ⅛ pyramid levels and the first three VGG slices: the same code
# path as the official setting, at a fraction of the CPU cost.
CHEAP_PERCEPTUAL = {"vgg_fallback": "random", "scales": [0.25, 0.125]}
CHEAP_LAYERS = [10.0, 10.0, 10.0, 0.0, 0.0]


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_stage(stage_cls: type[Stage], stage: str, overrides: dict, data_dir: Path, init: dict | None = None,
                seed: int = 0) -> Stage:
    """Build as the engine does: config validated, RNGs seeded before the networks are created."""
    cfg = load_config(stage, {"preset": "small", "model_overrides": TINY_MODEL, **overrides})
    seed_all(seed)
    return stage_cls(StageContext(cfg, data_dir, CPU, init=dict(init or {}), seed=seed))


def fixed_batch(stage: Stage, indices: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    ds = stage.dataset()
    seed_all(seed)
    return torch.utils.data.default_collate([ds[i] for i in indices])


class Runner:
    """trainable/frozen/optimisers prepared as the engine does (CPU, fp32, no DDP)."""

    def __init__(self, stage: Stage):
        self.stage = stage
        self.modules = stage.trainable()
        for m in self.modules.values():
            m.train()
        for m in stage.frozen().values():
            m.eval().requires_grad_(False)
        self.optimizers = stage.optimizers(self.modules)
        self.schedulers = stage.schedulers(self.optimizers)
        self.amp = AmpContext(CPU, None)
        self.outputs: list = []        # every StepOutput so far (scalars of the loss terms)

    def steps(self, batch: dict[str, torch.Tensor], n: int, seed: int = 0) -> list[float]:
        seed_all(seed)
        losses = []
        with single_thread():
            for _ in range(n):
                out = self.stage.train_step(batch, self.modules, self.optimizers, self.amp)
                self.outputs.append(out)
                self.amp.update()
                for s in self.schedulers.values():
                    s.step()
                losses.append(out.loss)
        return losses


def drop_factor(losses: list[float], k: int = 3) -> float:
    """mean of the first k losses / mean of the last k (robust to the random equivariance warps)."""
    return float(np.mean(losses[:k]) / np.mean(losses[-k:]))


RENDERER_OVERRIDES = {**CHEAP_PERCEPTUAL, "augmentation": {"flip_horizontal": False, "flip_time": False, "jitter": 0.0},
                      "loss_weights": {"perceptual": CHEAP_LAYERS, "generator_gan": 0.0}, "lr": 1e-3}
RENDERER_STEPS = 30
SYNCNET_OVERRIDES = {"image_size": 32, "lr": 1e-3, "min_negative_offset": 5}
SYNCNET_STEPS = 40
_OVERFITTED: dict[tuple[str, Path], tuple[Path, list[float]]] = {}


def _overfit_once(name: str, stage_class, overrides: dict, steps: int, data_dir: Path, out_dir: Path,
                  indices) -> tuple[Path, list[float]]:
    """A stage over-fitted on a fixed batch (``indices(stage)``) once per session and data folder, exported
    to ``out_dir``; returns (weights dir, per-step losses)."""
    key = (name, data_dir)
    if key not in _OVERFITTED:
        stage = build_stage(stage_class, name, overrides, data_dir)
        runner = Runner(stage)
        losses = runner.steps(fixed_batch(stage, indices(stage)), steps)
        stage.export(runner.modules, out_dir)
        _OVERFITTED[key] = (out_dir, losses)
    return _OVERFITTED[key]


def overfit_renderer(data_dir: Path, out_dir: Path) -> tuple[Path, list[float]]:
    """The tiny renderer over-fitted on 2 fixed pairs (once per session). Reused by the avct stage tests as
    their frozen renderer."""
    from avct.train.stages.renderer import RendererStage

    return _overfit_once("renderer", RendererStage, RENDERER_OVERRIDES, RENDERER_STEPS, data_dir, out_dir,
                         lambda stage: [5, 60])


def overfit_syncnet(data_dir: Path, out_dir: Path) -> tuple[Path, list[float]]:
    """The small D_sync over-fitted on 16 fixed windows (once per session). Reused by the avct stage tests
    as their frozen D_sync."""
    from avct.train.stages.syncnet import SyncNetStage

    return _overfit_once("syncnet", SyncNetStage, SYNCNET_OVERRIDES, SYNCNET_STEPS, data_dir, out_dir,
                         lambda stage: [int(i) for i in np.linspace(0, len(stage.dataset()) - 1, 16)])
