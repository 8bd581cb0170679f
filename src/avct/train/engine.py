"""The training engine: runs any ``Stage`` on one CPU, one GPU or many processes (torchrun + DDP).

One run lives in a directory::

    RUN_DIR/config.yaml          the resolved config (reads back with --config RUN_DIR/config.yaml)
    RUN_DIR/run.json             stage, dataset and init paths (so --resume needs nothing else)
    RUN_DIR/logs/                TensorBoard event files
    RUN_DIR/checkpoints/latest   name of the newest complete checkpoint
    RUN_DIR/checkpoints/step_0001000/
        modules.safetensors      every trainable module (discriminators too), for resuming
        state.pt                 optimiser/scheduler/grad-scaler/RNG state (torch.load(weights_only=True))
        weights/                 the stage's export in avct's weights format
    RUN_DIR/weights/             the newest export: `avct generate --checkpoint RUN_DIR/weights`,
                                 or `--renderer RUN_DIR` / `--syncnet RUN_DIR` for a later stage

Why resuming is bit-exact: the data order is a pure function of (seed, step), each item's randomness
of (seed, sample position), and every other piece of state that changes between steps (weights, BN
buffers, optimiser moments, schedulers, grad scale, the Python/NumPy/torch RNGs of every process) is
in the checkpoint. On a GPU this also needs ``deterministic: true`` (deterministic kernels).

Several processes (``torchrun --nproc_per_node N [--nnodes M ...] -m avct train ...``): gloo on CPUs,
nccl on GPUs, one DDP replica per process, BatchNorm synchronised over the global batch. Rank 0 alone
writes RUN_DIR; --resume reads it in every process, so multi-node runs need RUN_DIR on a shared disk.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..inference.devices import resolve_device
from ..errors import AvctError
from ..io_utils import atomic_folder, atomic_write_text
from ..weights.files import read_safetensors, read_tensors
from .config import TrainConfig, load_config, to_dict, to_yaml
from .stage import AmpContext, Stage, StageContext

RUN_CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
LOGS_DIR = "logs"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
WEIGHTS_DIR = "weights"
MODULES_FILE = "modules.safetensors"
STATE_FILE = "state.pt"
STATE_FORMAT = "avct-train-state"
STATE_VERSION = 1
# Fields that may change between a run and its --resume without changing the trajectory.
RESUME_FREE_FIELDS = {"steps", "log_every", "save_every", "keep_checkpoints", "num_workers"}
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    """What one invocation of ``train`` did."""

    run_dir: Path
    step: int                       # completed steps of the run (over all invocations)
    finished: bool                  # step == config.steps
    losses: list[float] = field(default_factory=list)   # per-step loss of this invocation (this process)
    weights_dir: Path | None = None


def train(stage_name: str, config: TrainConfig | str | os.PathLike | dict | None, data_dir: str | os.PathLike | None,
          out_dir: str | os.PathLike, *, max_steps: int | None = None, resume: bool = False,
          init: dict[str, str | os.PathLike] | None = None, device: str | torch.device | None = None,
          progress: bool = True) -> TrainResult:
    """Train one stage into ``out_dir`` (see the module docstring for the layout).

    config: a config object, a preset name, a YAML path or a mapping; None with ``resume`` reuses
        RUN_DIR/config.yaml. max_steps: stop once the run has done this many steps in total (the LR
        schedule still follows ``config.steps``); a checkpoint is written on stopping. resume:
        continue from RUN_DIR/checkpoints/latest (starts afresh when there is none). init: earlier
        runs or checkpoints by role ("renderer", "syncnet", "headmotion"); a run dir means its weights.
        Under torchrun every process calls this; rank 0 alone writes files and logs.
    """
    from .stages import get_stage

    stage_cls = get_stage(stage_name)
    run_dir = Path(out_dir)
    env = _Distributed.setup(device)
    try:
        setup = _prepare_run(stage_name, config, data_dir, run_dir, resume, init or {}, env)
        with _determinism(setup.config.deterministic and env.device.type == "cuda"):  # CPU kernels already are
            return _Trainer(stage_cls, setup, env, max_steps, progress).run()
    finally:
        env.close()


# ---- run directory, config, init ---------------------------------------------------------------------
@dataclass
class _RunSetup:
    stage_name: str
    config: TrainConfig
    data_dir: Path
    run_dir: Path
    init: dict[str, Path]
    latest: Path | None


def _prepare_run(stage_name: str, config: Any, data_dir: Any, run_dir: Path, resume: bool,
                 init: dict[str, Any], env: "_Distributed") -> _RunSetup:
    latest = latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise AvctError(f"{run_dir} already holds a training run (at {latest.name}); pass --resume to continue "
                        "it or choose another --out")
    saved_cfg = run_dir / RUN_CONFIG_FILE
    if config is None:
        if not (resume and saved_cfg.is_file()):
            raise AvctError("no --config given (a preset name: official, small; or a YAML file)")
        config = saved_cfg
    cfg = load_config(stage_name, config).pinned_perceptual()  # `auto` decided once: resumes keep the network
    run_info = _read_run_info(run_dir) if resume else {}
    if run_info.get("stage", stage_name) != stage_name:
        raise AvctError(f"{run_dir} is a {run_info['stage']} run, not {stage_name}")
    if resume and saved_cfg.is_file() and latest is not None:
        _check_resumable(load_config(stage_name, saved_cfg).pinned_perceptual(), cfg, saved_cfg)
    if data_dir is None:
        data_dir = run_info.get("data")
        if data_dir is None:
            raise AvctError("no --data given (the dataset directory written by `avct preprocess`)")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise AvctError(f"dataset directory not found: {data_dir}")
    init_paths = {k: Path(v) for k, v in run_info.get("init", {}).items()}
    init_paths.update({k: Path(v) for k, v in init.items() if v is not None})
    resolved = {k: resolve_init(k, v) for k, v in init_paths.items()}
    if env.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / RUN_CONFIG_FILE, to_yaml(cfg))
        info = {"stage": stage_name, "data": str(data_dir.resolve()),
                "init": {k: str(v.resolve()) for k, v in init_paths.items()}}
        atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=1) + "\n")
    env.barrier()
    return _RunSetup(stage_name, cfg, data_dir, run_dir, resolved, latest if resume else None)


def _read_run_info(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise AvctError(f"cannot read {path}: {e}") from None
    return info if isinstance(info, dict) else {}


def _check_resumable(saved: TrainConfig, new: TrainConfig, saved_path: Path) -> None:
    a, b = to_dict(saved), to_dict(new)
    changed = [k for k in a if k not in RESUME_FREE_FIELDS and a[k] != b.get(k)]
    if changed:
        shown = ", ".join(f"{k} ({a[k]!r} -> {b.get(k)!r})" for k in changed[:3])
        raise AvctError(f"--resume with a config that differs from {saved_path} in {shown}; only "
                        f"{', '.join(sorted(RESUME_FREE_FIELDS))} may change (omit --config to reuse it)")


def resolve_init(role: str, path: Path) -> Path:
    """A training run dir means its exported weights (RUN_DIR/weights); anything else is used as is."""
    path = Path(path).expanduser()
    if not path.exists():
        raise AvctError(f"--{role} {path}: not found")
    if path.is_dir() and (path / WEIGHTS_DIR).is_dir() and (path / RUN_FILE).is_file():
        return path / WEIGHTS_DIR
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / CHECKPOINTS_DIR / LATEST_FILE
    if not pointer.is_file():
        return None
    ckpt = pointer.parent / pointer.read_text(encoding="utf-8").strip()
    if not (ckpt / STATE_FILE).is_file() or not (ckpt / MODULES_FILE).is_file():
        raise AvctError(f"{pointer} names {ckpt.name}, which is missing or incomplete")
    return ckpt


# ---- processes -------------------------------------------------------------------------------------------
@dataclass
class _Distributed:
    """This process's place in a torchrun job (or a world of one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    bn_group: Any = None   # separate gloo group for CPU BatchNorm sync, apart from DDP's traffic

    @classmethod
    def setup(cls, device: str | torch.device | None) -> "_Distributed":
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


def sync_batchnorm(module: nn.Module, env: "_Distributed") -> nn.Module:
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


# ---- randomness ------------------------------------------------------------------------------------------
def derive_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed from a base seed and labels: independent streams that never depend on history."""
    words = [seed] + [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) >> 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _isolated_rng(seed: int) -> Iterator[None]:
    """Seed Python/NumPy/torch-CPU RNGs for one item and put the previous states back afterwards."""
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)


def _rng_state(device: torch.device) -> dict[str, Any]:
    """All RNG state of this process in weights_only-loadable types."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def _determinism(enabled: bool) -> Iterator[None]:
    """Deterministic GPU kernels for the run (warn, not fail, where an op has none); restored after."""
    if not enabled:
        yield
        return
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[2], prev[3]


# ---- data ----------------------------------------------------------------------------------------------
class StepBatches(torch.utils.data.Sampler):
    """This process's share of the global batch of every step in [start, stop).

    Sample position p = step * batch + j runs through epochs of a fresh permutation each
    (epoch = p // n, permutation seeded from (seed, epoch)); process r takes the r-th contiguous slice
    of each global batch. Yields lists of (position, dataset index)."""

    def __init__(self, num_items: int, batch_size: int, rank: int, world: int, seed: int, start: int, stop: int):
        self.n, self.batch, self.rank, self.world = num_items, batch_size, rank, world
        self.seed, self.start, self.stop = seed, start, stop
        self.local = batch_size // world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, perm = -1, None
        for step in range(self.start, self.stop):
            first = step * self.batch + self.rank * self.local
            batch = []
            for pos in range(first, first + self.local):
                e, k = divmod(pos, self.n)
                if e != epoch:
                    gen = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", e))
                    epoch, perm = e, torch.randperm(self.n, generator=gen)
                batch.append((pos, int(perm[k])))
            yield batch


class SeededItems(torch.utils.data.Dataset):
    """dataset[i] with the global RNGs seeded from (seed, sample position): reproducible augmentation
    for any worker count, and the training RNG streams stay untouched."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        pos, index = key
        with _isolated_rng(derive_seed(self.seed, "item", pos)):
            return self.dataset[index]


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


# ---- checkpoints ----------------------------------------------------------------------------------------
def _plain(obj: Any) -> Any:
    """weights_only-safe copy: Counters/defaultdicts -> dict, numpy -> torch/Python."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _load_scheduler(scheduler: Any, state: dict[str, Any]) -> None:
    live = scheduler.state_dict()
    scheduler.load_state_dict({k: Counter(v) if isinstance(live.get(k), Counter) and isinstance(v, dict) else v
                               for k, v in state.items()})


def _module_tensors(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().to("cpu", copy=True).contiguous()
            for name, m in modules.items() for k, v in m.state_dict().items()}


def _load_modules(path: Path, modules: dict[str, nn.Module]) -> None:
    tensors = read_safetensors(path, "training checkpoint")
    for name, module in modules.items():
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise AvctError(f"{path} does not match the {name} network of this config: {first}") from None


def _publish(src: Path, dst: Path) -> None:
    """Replace directory ``dst`` by a copy of ``src`` (never a half-written dst)."""
    with atomic_folder(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


# ---- the loop ------------------------------------------------------------------------------------------
class _StopRequest:
    """First Ctrl-C / SIGTERM: finish the step, save, exit. Second Ctrl-C: abort at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("avct train: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Trainer:
    def __init__(self, stage_cls: type[Stage], setup: _RunSetup, env: _Distributed, max_steps: int | None,
                 progress: bool):
        self.setup, self.env, self.cfg = setup, env, setup.config
        self.progress = progress and env.rank == 0
        cfg = self.cfg
        if cfg.batch_size % env.world:
            raise AvctError(f"batch_size {cfg.batch_size} does not split evenly over {env.world} processes")
        if max_steps is not None and max_steps < 1:
            raise AvctError(f"--max-steps must be >= 1, got {max_steps}")
        self.amp_dtype = AMP_DTYPES[cfg.amp]
        if self.amp_dtype == torch.float16 and env.device.type != "cuda":
            raise AvctError("amp fp16 needs a CUDA GPU; use bf16 or none on this device")
        self.stop_at = min(cfg.steps, max_steps) if max_steps is not None else cfg.steps

        seed_everything(cfg.seed)  # identical initial weights in every process
        ctx = StageContext(config=cfg, data_dir=setup.data_dir, device=env.device, init=dict(setup.init),
                           seed=cfg.seed, rank=env.rank, world_size=env.world, run_dir=setup.run_dir)
        self.stage = stage_cls(ctx)
        self.frozen = self.stage.frozen()
        for m in self.frozen.values():
            m.to(env.device).eval().requires_grad_(False)
        self.modules = dict(self.stage.trainable())
        for name, m in self.modules.items():
            m.to(env.device)
            if env.distributed and cfg.sync_batchnorm:
                self.modules[name] = sync_batchnorm(m, env)
        self.step = 0
        if setup.latest is not None:
            _load_modules(setup.latest / MODULES_FILE, self.modules)
        self.wrapped = {name: self._wrap(m) for name, m in self.modules.items()}
        self.optimizers = self.stage.optimizers(self.wrapped)
        self.schedulers = self.stage.schedulers(self.optimizers)
        self.amp = AmpContext(env.device, self.amp_dtype)
        if setup.latest is not None:
            self._load_state(setup.latest)
        else:
            seed_everything(derive_seed(cfg.seed, "train", env.rank))
        self._train_mode()

    def _wrap(self, module: nn.Module) -> nn.Module:
        if not self.env.distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.env.device.index] if self.env.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids,
                                       find_unused_parameters=self.stage.find_unused_parameters)

    def _train_mode(self) -> None:
        for m in self.modules.values():
            m.train()
        for m in self.frozen.values():
            m.eval()

    # -- state --
    def _load_state(self, ckpt: Path) -> None:
        state = read_tensors(ckpt / STATE_FILE, "training state", mmap=False)
        if state.get("format") != STATE_FORMAT or state.get("stage") != self.setup.stage_name:
            raise AvctError(f"{ckpt / STATE_FILE} is not a {self.setup.stage_name} training state")
        self.step = int(state["step"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            _load_scheduler(sched, state["schedulers"][name])
        self.amp.load_state_dict(state.get("amp", {}))
        self.stage.load_state_dict(state.get("stage_state", {}))
        rngs = state["rng"]
        if len(rngs) == self.env.world:
            _set_rng_state(rngs[self.env.rank], self.env.device)
        else:
            seed_everything(derive_seed(self.cfg.seed, "train", self.env.rank, self.step))
            if self.env.rank == 0:
                print(f"avct train: resuming a {len(rngs)}-process run on {self.env.world} processes: same data "
                      "order, fresh per-process random streams (not bit-identical)", file=sys.stderr)

    def save_checkpoint(self) -> Path:
        """All processes call this; rank 0 writes step_XXXXXXX/ via a temp dir + rename, then `latest`."""
        rngs = self.env.gather(_rng_state(self.env.device))
        root = self.setup.run_dir / CHECKPOINTS_DIR
        final = root / f"step_{self.step:07d}"
        if self.env.rank == 0:
            from safetensors.torch import save_file

            with atomic_folder(final) as tmp:
                save_file(_module_tensors(self.modules), str(tmp / MODULES_FILE),
                          metadata={"format": "avct-train-modules", "step": str(self.step)})
                state = {
                    "format": STATE_FORMAT, "version": STATE_VERSION, "stage": self.setup.stage_name,
                    "step": self.step, "world_size": self.env.world, "seed": self.cfg.seed,
                    "samples_seen": self.step * self.cfg.batch_size,
                    "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                    "schedulers": {n: _plain(s.state_dict()) for n, s in self.schedulers.items()},
                    "amp": self.amp.state_dict(),
                    "stage_state": _plain(self.stage.state_dict()),
                    "rng": rngs,
                }
                torch.save(state, tmp / STATE_FILE)
                self.stage.export(self.modules, tmp / WEIGHTS_DIR)
            atomic_write_text(root / LATEST_FILE, final.name + "\n")
            self._prune(root)
        self._train_mode()  # an export may have switched modules to eval
        self.env.barrier()
        return final

    def _prune(self, root: Path) -> None:
        keep = self.cfg.keep_checkpoints
        if keep <= 0:
            return
        steps = sorted(p for p in root.glob("step_*") if p.is_dir())
        for old in steps[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    # -- loop --
    def run(self) -> TrainResult:
        cfg, env, setup = self.cfg, self.env, self.setup
        result = TrainResult(setup.run_dir, self.step, self.step >= cfg.steps)
        dataset = self.stage.dataset()
        if len(dataset) == 0:
            raise AvctError(f"the {setup.stage_name} stage found no training items in {setup.data_dir}")
        sampler = StepBatches(len(dataset), cfg.batch_size, env.rank, env.world, cfg.seed, self.step, self.stop_at)
        loader = torch.utils.data.DataLoader(
            SeededItems(dataset, cfg.seed), batch_sampler=sampler, num_workers=cfg.num_workers,
            pin_memory=env.device.type == "cuda",
            generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "loader", env.rank)))
        writer = self._writer()
        from tqdm.auto import tqdm

        bar = tqdm(total=self.stop_at, initial=self.step, disable=not self.progress, unit="step",
                   desc=f"train {setup.stage_name}", dynamic_ncols=True)
        sums: dict[str, list[float]] = {}
        last_saved, t0, t_log = self.step, time.perf_counter(), self.step
        try:
            with _StopRequest() as stop:
                for batch in loader:
                    out = self.stage.train_step(_to_device(batch, env.device), self.wrapped, self.optimizers, self.amp)
                    self.amp.update()
                    for sched in self.schedulers.values():
                        sched.step()
                    self.step += 1
                    result.losses.append(float(out.loss))
                    for k, v in {"loss": out.loss, **out.scalars}.items():
                        sums.setdefault(k, []).append(float(v))
                    bar.update(1)
                    if self.step % cfg.log_every == 0 or self.step == self.stop_at:
                        elapsed = time.perf_counter() - t0
                        self._log(writer, sums, (self.step - t_log) / max(elapsed, 1e-9), bar)
                        sums, t0, t_log = {}, time.perf_counter(), self.step
                    stopping = env.any(stop.requested)
                    if self.step % cfg.save_every == 0 or self.step == self.stop_at or stopping:
                        self.save_checkpoint()
                        last_saved = self.step
                    if stopping:
                        break
                if self.step > last_saved:
                    self.save_checkpoint()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        result.step, result.finished = self.step, self.step >= cfg.steps
        latest = latest_checkpoint(setup.run_dir)
        if env.rank == 0 and latest is not None:
            _publish(latest / WEIGHTS_DIR, setup.run_dir / WEIGHTS_DIR)
        env.barrier()
        result.weights_dir = setup.run_dir / WEIGHTS_DIR if latest is not None else None
        return result

    def _writer(self) -> Any:
        if self.env.rank != 0:
            return None
        from torch.utils.tensorboard import SummaryWriter

        # On resume, hide whatever an interrupted run logged after its last checkpoint.
        writer = SummaryWriter(log_dir=str(self.setup.run_dir / LOGS_DIR),
                               purge_step=self.step + 1 if self.step > 0 else None)
        if self.step == 0:
            writer.add_text("config", "```yaml\n" + to_yaml(self.cfg) + "```", 0)
        return writer

    def _log(self, writer: Any, sums: dict[str, list[float]], steps_per_s: float, bar: Any) -> None:
        keys = sorted(sums)
        means = self.env.mean([sum(sums[k]) / len(sums[k]) for k in keys])  # collective: every process
        scalars = dict(zip(keys, means))
        loss = scalars.get("loss", float("nan"))
        if math.isnan(loss) and self.cfg.amp != "fp16":
            raise AvctError(f"training diverged: the loss is NaN at step {self.step}; the last good checkpoint "
                            f"is in {self.setup.run_dir / CHECKPOINTS_DIR}")
        if writer is None:
            return
        for k, v in scalars.items():
            writer.add_scalar(f"train/{k}", v, self.step)
        for name, opt in self.optimizers.items():
            writer.add_scalar(f"lr/{name}", opt.param_groups[0]["lr"], self.step)
        writer.add_scalar("perf/steps_per_s", steps_per_s, self.step)
        writer.add_scalar("perf/samples_per_s", steps_per_s * self.cfg.batch_size, self.step)
        bar.set_postfix(loss=f"{loss:.4g}")
