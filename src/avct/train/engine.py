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
writes RUN_DIR; --resume reads it in every process, so multi-node runs need RUN_DIR on a shared disk."""
from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AvctError
from ..io_utils import atomic_folder, atomic_write_text
from ..weights.files import read_tensors, write_state, write_tensors
from .checkpoint_files import (MODULES_FILE, STATE_FILE, STATE_FORMAT, STATE_VERSION, load_modules, load_scheduler,
                               module_tensors, plain_state, publish_weights)
from .config import TrainConfig, to_yaml
from .distributed import Distributed, sync_batchnorm
from .run_dir import CHECKPOINTS_DIR, LATEST_FILE, LOGS_DIR, WEIGHTS_DIR, RunSetup, prepare_run, latest_checkpoint
from .sampling import SeededItems, StepBatches, to_device
from .seeding import determinism, rng_state, set_rng_state, derive_seed, seed_everything
from .stage import AmpContext, Stage, StageContext


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
    env = Distributed.setup(device)
    try:
        setup = prepare_run(stage_name, config, data_dir, run_dir, resume, init or {}, env)
        with determinism(setup.config.deterministic and env.device.type == "cuda"):  # CPU kernels already are
            return _Trainer(stage_cls, setup, env, max_steps, progress).run()
    finally:
        env.close()


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
    def __init__(self, stage_cls: type[Stage], setup: RunSetup, env: Distributed, max_steps: int | None,
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
            load_modules(setup.latest / MODULES_FILE, self.modules)
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
            load_scheduler(sched, state["schedulers"][name])
        self.amp.load_state_dict(state.get("amp", {}))
        self.stage.load_state_dict(state.get("stage_state", {}))
        rngs = state["rng"]
        if len(rngs) == self.env.world:
            set_rng_state(rngs[self.env.rank], self.env.device)
        else:
            seed_everything(derive_seed(self.cfg.seed, "train", self.env.rank, self.step))
            if self.env.rank == 0:
                print(f"avct train: resuming a {len(rngs)}-process run on {self.env.world} processes: same data "
                      "order, fresh per-process random streams (not bit-identical)", file=sys.stderr)

    def save_checkpoint(self) -> Path:
        """All processes call this; rank 0 writes step_XXXXXXX/ via a temp dir + rename, then `latest`."""
        rngs = self.env.gather(rng_state(self.env.device))
        root = self.setup.run_dir / CHECKPOINTS_DIR
        final = root / f"step_{self.step:07d}"
        if self.env.rank == 0:
            with atomic_folder(final) as tmp:
                write_tensors(tmp / MODULES_FILE, module_tensors(self.modules),
                              {"format": "avct-train-modules", "step": str(self.step)})
                state = {
                    "format": STATE_FORMAT, "version": STATE_VERSION, "stage": self.setup.stage_name,
                    "step": self.step, "world_size": self.env.world, "seed": self.cfg.seed,
                    "samples_seen": self.step * self.cfg.batch_size,
                    "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                    "schedulers": {n: plain_state(s.state_dict()) for n, s in self.schedulers.items()},
                    "amp": self.amp.state_dict(),
                    "stage_state": plain_state(self.stage.state_dict()),
                    "rng": rngs,
                }
                write_state(tmp / STATE_FILE, state)
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
                    out = self.stage.train_step(to_device(batch, env.device), self.wrapped, self.optimizers, self.amp)
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
            publish_weights(latest / WEIGHTS_DIR, setup.run_dir / WEIGHTS_DIR)
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
