"""The contract between the training engine (``avct.train.engine``) and one training stage.

A stage knows its networks, data, losses and how one optimisation step goes; the engine knows devices,
DDP, mixed precision, data loading order, logging, checkpoints and resuming. Keeping the two apart
lets every stage get multi-GPU, bit-exact resume and TensorBoard for free.
"""
from __future__ import annotations

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


@dataclass
class StepOutput:
    """Scalars to log (already detached floats). ``loss`` is the main one (used for over-fit tests)."""

    loss: float
    scalars: dict[str, float] = field(default_factory=dict)


class Stage(ABC):
    name: str = "stage"

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
        return {}

    @abstractmethod
    def dataset(self) -> torch.utils.data.Dataset:
        """Map-style dataset; items are dicts of tensors (collated by the default collate)."""

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor], modules: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], amp: "AmpContext") -> StepOutput:
        """One optimisation step on a batch already on the device: forward, losses, backward
        (through ``amp.backward``), optimiser steps (through ``amp.step``)."""

    @abstractmethod
    def export(self, modules: dict[str, nn.Module], out_dir: Path) -> None:
        """Write the trained networks in avct's weights format (``avct.checkpoints.save_models``) so
        that ``avct generate``/``avct evaluate`` load them without conversion."""


class AmpContext:
    """Mixed precision for a step: autocast + gradient scaling (fp16) or plain fp32 (CPU, default)."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None):
        self.device, self.dtype = device, dtype
        self.enabled = dtype is not None
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.enabled)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)
        self.scaler.update()
