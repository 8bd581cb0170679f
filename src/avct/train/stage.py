"""The contract between the training engine (``avct.train.engine``) and one training stage.

A stage knows its networks, data, losses and how one optimisation step goes; the engine knows devices,
DDP, mixed precision, data loading order, logging, checkpoints and resuming. Keeping the two apart
lets every stage get multi-GPU, bit-exact resume and TensorBoard for free.

What the engine does around a stage (so a stage must not do it itself):

- builds the stage after seeding every RNG with ``config.seed`` (same initial weights on every rank);
- moves ``trainable()`` and ``frozen()`` to the device, puts them in train/eval mode, freezes
  ``frozen()``, converts BatchNorm to a synchronised BatchNorm under several processes
  (``config.sync_batchnorm``) and wraps each trainable module in DDP. DDP synchronises gradients
  only for calls that go through ``module(...)`` (``forward``): ``train_step`` must call the modules
  it is handed that way, not their other methods, and every trainable module must take part in each
  step unless the stage sets ``find_unused_parameters = True``;
- loads batches: it samples items of ``dataset()`` in a deterministic order that depends only on
  ``(config.seed, step)`` and shards the global batch (``config.batch_size``) evenly across
  processes. Before each ``dataset[i]`` it seeds Python's, NumPy's and torch's global RNGs from
  ``(config.seed, sample position)`` (and restores them afterwards), so items may use random
  augmentation freely and still come out identical for any ``num_workers``, world size or resume;
- calls ``train_step`` once per iteration, then ``amp.update()`` and ``scheduler.step()`` of every
  scheduler from ``schedulers()`` (so scheduler milestones count iterations, not epochs);
- saves and restores module weights, optimiser, scheduler, gradient-scaler, RNG and
  ``Stage.state_dict()`` state; exports with ``export`` (unwrapped modules, not DDP).
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class StageContext:
    """What the engine hands a stage when building it."""

    config: Any                        # the stage's typed config (a dataclass from avct.train.config)
    data_dir: Path | None              # dataset written by `avct preprocess`
    device: torch.device
    init: dict[str, Path] = field(default_factory=dict)  # earlier run dirs / checkpoints, e.g. {"renderer": ...}
    seed: int = 0
    # Added for the engine (defaults keep single-process construction working as before):
    rank: int = 0                      # this process's rank (0 when not distributed)
    world_size: int = 1                # number of processes; each gets config.batch_size // world_size items
    run_dir: Path | None = None        # RUN_DIR, e.g. for a stage's own sample images (write on rank 0 only)


@dataclass
class StepOutput:
    """Scalars to log (already detached floats). ``loss`` is the main one (used for over-fit tests)."""

    loss: float
    scalars: dict[str, float] = field(default_factory=dict)


class Stage(ABC):
    name: str = "stage"
    # DDP option for stages whose steps leave some trainable parameters unused (e.g. alternating GAN steps).
    find_unused_parameters: bool = False

    def __init__(self, ctx: StageContext):
        self.ctx = ctx

    @abstractmethod
    def trainable(self) -> dict[str, nn.Module]:
        """Networks that are optimised (the engine moves them to the device and wraps them in DDP)."""

    def frozen(self) -> dict[str, nn.Module]:
        """Networks used but not optimised (eval mode, requires_grad False; moved to the device)."""
        return {}

    @abstractmethod
    def optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """Optimisers over the (possibly DDP-wrapped) trainable modules passed in."""

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        """LR schedulers; the engine steps each once per iteration and checkpoints them."""
        return {}

    @abstractmethod
    def dataset(self) -> torch.utils.data.Dataset:
        """Map-style dataset; items are dicts of tensors (collated by the default collate).

        An item is one training sample (e.g. one T-frame sequence for batched sequential training);
        the engine collates ``config.batch_size // world_size`` of them per process and step."""

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor], modules: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], amp: "AmpContext") -> StepOutput:
        """One optimisation step on a batch already on the device: forward, losses, backward
        (through ``amp.backward``), optimiser steps (through ``amp.step``)."""

    @abstractmethod
    def export(self, modules: dict[str, nn.Module], out_dir: Path) -> None:
        """Write the trained networks in avct's weights format (``avct.weights.store.save_models``) so
        that ``avct generate``/``avct evaluate`` load them without conversion."""

    def state_dict(self) -> dict[str, Any]:
        """Extra state a stage keeps between steps (e.g. an EMA counter), saved in checkpoints.

        Only tensors, numbers, strings, lists and dicts: checkpoints load with weights_only=True."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict`` (called on resume, after the optimisers are built)."""


class AmpContext:
    """Mixed precision for a step: autocast + gradient scaling (fp16) or plain fp32 (CPU, default).

    With several optimisers per iteration (GANs) call ``step`` for each; the engine calls ``update``
    once after ``train_step``, as GradScaler requires (one scale update per iteration)."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None):
        self.device, self.dtype = device, dtype
        self.enabled = dtype is not None
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self._stepped = False

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        self.scaler.scale(loss).backward(**kwargs)

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale gradients in place before clipping them (no-op without fp16)."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimiser step (skipped by the scaler when fp16 gradients overflowed)."""
        self.scaler.step(optimizer)
        self._stepped = True

    def update(self) -> None:
        """Once per iteration, after every optimiser stepped (called by the engine)."""
        if self._stepped:
            self.scaler.update()
        self._stepped = False

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
