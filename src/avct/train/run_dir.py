"""A training run's folder: its files, the resolved config and run.json written at the start (or read back
for ``--resume``), init paths, the newest checkpoint."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AvctError
from ..io_utils import atomic_write_text
from .checkpoint_files import MODULES_FILE, STATE_FILE
from .config import TrainConfig, load_config, to_dict, to_yaml

if TYPE_CHECKING:
    from .distributed import Distributed


RUN_CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
LOGS_DIR = "logs"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
WEIGHTS_DIR = "weights"
# Fields that may change between a run and its --resume without changing the trajectory.
RESUME_FREE_FIELDS = {"steps", "log_every", "save_every", "keep_checkpoints", "num_workers"}


# ---- run directory, config, init ---------------------------------------------------------------------
@dataclass
class RunSetup:
    stage_name: str
    config: TrainConfig
    data_dir: Path
    run_dir: Path
    init: dict[str, Path]
    latest: Path | None


def prepare_run(stage_name: str, config: Any, data_dir: Any, run_dir: Path, resume: bool,
                 init: dict[str, Any], env: "Distributed") -> RunSetup:
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
    return RunSetup(stage_name, cfg, data_dir, run_dir, resolved, latest if resume else None)


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
