"""Several training processes (torchrun): the process group, collective helpers, and BatchNorm synchronised
over the global batch (SyncBatchNorm on GPUs; :class:`CpuSyncBatchNorm` with gloo on CPUs)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import AvctError
from ..inference.devices import resolve_device


# ---- processes -------------------------------------------------------------------------------------------
@dataclass
class Distributed:
    """This process's place in a torchrun job (or a world of one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    bn_group: Any = None   # separate gloo group for CPU BatchNorm sync, apart from DDP's traffic

    @classmethod
    def setup(cls, device: str | torch.device | None) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=resolve_device(None if device is None else str(device)))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device in (None, "auto"):
            dev = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
        else:
            dev = resolve_device(str(device))
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device("cuda", local)
        if dev.type not in ("cpu", "cuda"):
            raise AvctError(f"multi-process training runs on CPUs (gloo) or CUDA GPUs (nccl), not {dev.type}")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        bn_group = dist.new_group(backend="gloo") if dev.type == "cpu" else None
        return cls(dist.get_rank(), dist.get_world_size(), local, dev, owns, bn_group)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, values: list[float]) -> list[float]:
        if not self.distributed or not values:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def any(self, flag: bool) -> bool:
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce: the gradient of a sum over processes is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all processes, on CPUs
    (torch's SyncBatchNorm is GPU-only). State-dict keys equal nn.BatchNorm*'s."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, group: Any):
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        self.group = group
        if bn.affine:
            self.weight, self.bias = bn.weight, bn.bias
        if bn.track_running_stats:
            self.running_mean, self.running_var = bn.running_mean, bn.running_var
            self.num_batches_tracked = bn.num_batches_tracked
        self.train(bn.training)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size(self.group) > 1):
            return super().forward(x)
        c, dims = x.shape[1], [0] + list(range(2, x.dim()))
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([x.numel() / c], dtype=torch.float64)
        dist.all_reduce(count, group=self.group)
        n = float(count.item())
        mean = _AllReduceSum.apply(xf.sum(dims), self.group) / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.group) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked.item())
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * (n / max(n - 1, 1)), alpha=f)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, env: "Distributed") -> nn.Module:
    """Replace BatchNorm layers by synchronised ones (nn.SyncBatchNorm on CUDA, CpuSyncBatchNorm on CPU)."""
    if env.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (CpuSyncBatchNorm,
                                                                                       nn.SyncBatchNorm)):
        return CpuSyncBatchNorm(module, env.bn_group)
    for name, child in module.named_children():
        new = sync_batchnorm(child, env)
        if new is not child:
            setattr(module, name, new)
    return module
