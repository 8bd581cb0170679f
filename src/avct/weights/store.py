"""Loading and saving weights: the official AVCT/FOMM checkpoints in, the project's own format out.

Official layouts (OFFICIAL.md A.8): ``generator.ckpt`` = {kp_detector, generator, ph2kp},
``audio2pose.ckpt`` = {generator: audio2poseLSTM}, FOMM ``vox-*.pth.tar`` = {kp_detector, generator, ...}.
They are read with ``torch.load(weights_only=True)`` only: a file that needs arbitrary unpickling is
refused. The project's own format is a directory with ``config.json`` and one safetensors file per
component; the networks keep the official key names, so both formats map 1:1.
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig, official_config
from ..errors import AvctError
from ..io_utils import atomic_path, atomic_write_text
from ..models.avct import AudioVisualCorrelationTransformer
from ..models.head_motion import HeadMotionPredictor
from ..models.keypoints import KeypointDetector
from ..models.renderer import OcclusionAwareGenerator

FORMAT_NAME = "avct-weights"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
COMPONENTS = ("keypoint_detector", "generator", "avct", "head_motion")
# component -> (official file, key inside it)
OFFICIAL_SOURCES = {
    "keypoint_detector": ("generator.ckpt", "kp_detector"),
    "generator": ("generator.ckpt", "generator"),
    "avct": ("generator.ckpt", "ph2kp"),
    "head_motion": ("audio2pose.ckpt", "generator"),
}


@dataclass
class AvctModels:
    """The four networks (any may be None when a checkpoint only holds some) and their config."""

    config: ModelConfig
    keypoint_detector: KeypointDetector | None = None
    generator: OcclusionAwareGenerator | None = None
    avct: AudioVisualCorrelationTransformer | None = None
    head_motion: HeadMotionPredictor | None = None

    def components(self) -> dict[str, nn.Module]:
        return {n: getattr(self, n) for n in COMPONENTS if getattr(self, n) is not None}

    def to(self, *args, **kwargs) -> "AvctModels":
        for m in self.components().values():
            m.to(*args, **kwargs)
        return self

    def eval(self) -> "AvctModels":
        for m in self.components().values():
            m.eval().requires_grad_(False)
        return self

    def require(self, *names: str, source: str = "checkpoint") -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise AvctError(f"{source} lacks the {', '.join(missing)} weights needed here")


# component -> its section of ModelConfig
CONFIG_SECTIONS = {"keypoint_detector": "keypoint_detector", "generator": "generator", "avct": "avct",
                   "head_motion": "head_motion"}


def merge_models(sources: list[AvctModels]) -> AvctModels:
    """One bundle from several (e.g. an AVCT run + a head-motion run): each network, with its own config
    section, comes from the last source that has it."""
    import dataclasses

    merged = AvctModels(sources[0].config)
    for models in sources:
        for name, module in models.components().items():
            setattr(merged, name, module)
            section = CONFIG_SECTIONS[name]
            merged.config = dataclasses.replace(merged.config, **{section: getattr(models.config, section)})
    return merged


def build_component(name: str, config: ModelConfig) -> nn.Module:
    if name == "keypoint_detector":
        return KeypointDetector(config.keypoint_detector)
    if name == "generator":
        return OcclusionAwareGenerator(config.generator)
    if name == "avct":
        return AudioVisualCorrelationTransformer(config.avct)
    if name == "head_motion":
        return HeadMotionPredictor(config.head_motion)
    raise ValueError(name)


# ---- safe reading of PyTorch files ---------------------------------------------------------------
def safe_torch_load(path: str | os.PathLike) -> dict:
    """``torch.load(weights_only=True)`` with user-facing errors; never executes pickled code."""
    path = Path(path)
    if not path.is_file():
        raise AvctError(f"checkpoint not found: {path}")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise AvctError(f"refusing checkpoint {path}: it contains pickled Python objects that would need "
                            "code execution to load; re-save its state dicts with torch.save") from None
        raise AvctError(f"not a PyTorch checkpoint: {path} ({_first_line(e)})") from None
    except Exception as e:  # a corrupt file can make the unpickler fail in many ways; none is our bug
        raise AvctError(f"not a readable PyTorch checkpoint: {path} ({_first_line(e)})") from None
    if not isinstance(obj, dict):
        raise AvctError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of state dicts")
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else e.__class__.__name__


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    """DataParallel/DDP checkpoints prefix every key with ``module.``."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state_checked(module: nn.Module, state: dict, what: str) -> None:
    """load_state_dict with one clear line on any key or shape mismatch."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AvctError(f"{what} is not a state dict of tensors")
    state = strip_prefix(state)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) e.g. {', '.join(unexpected[:3])}")
        raise AvctError(f"{what} does not match the {type(module).__name__} layout: {'; '.join(parts)}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise AvctError(f"{what} does not match the {type(module).__name__} layout: {k} has shape "
                            f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")
    module.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()})


# ---- official / FOMM files -------------------------------------------------------------------------
def load_official(generator_ckpt: str | os.PathLike | None, audio2pose_ckpt: str | os.PathLike | None,
                  config: ModelConfig | None = None) -> AvctModels:
    """Official AVCT files (either may be None). A FOMM vox-256 file works as ``generator_ckpt`` too:
    it provides the keypoint detector and generator only."""
    config = config or official_config()
    models = AvctModels(config)
    files = {"generator.ckpt": generator_ckpt, "audio2pose.ckpt": audio2pose_ckpt}
    loaded = {name: safe_torch_load(path) for name, path in files.items() if path is not None}
    for component, (file_name, key) in OFFICIAL_SOURCES.items():
        ckpt = loaded.get(file_name)
        if ckpt is None or key not in ckpt:
            continue
        module = build_component(component, config)
        load_state_checked(module, ckpt[key], f"{files[file_name]} [{key}]")
        setattr(models, component, module)
    for file_name, ckpt in loaded.items():
        wanted = {k for f, k in OFFICIAL_SOURCES.values() if f == file_name}
        if not wanted & set(ckpt):
            raise AvctError(f"{files[file_name]} is not an AVCT/FOMM checkpoint: top-level keys "
                            f"{', '.join(map(str, list(ckpt)[:6])) or '(none)'}; expected {', '.join(sorted(wanted))}")
    return models.eval()


# ---- our format ------------------------------------------------------------------------------------
def half_tensor(value: torch.Tensor) -> torch.Tensor:
    """fp32 -> fp16 for storage, unless a value would overflow fp16 (kept fp32 then); other dtypes unchanged.
    Loading casts back to the network's dtype, so half-stored weights halve the file size at ~1e-3 relative
    error."""
    if value.dtype != torch.float32:
        return value
    half = value.half()
    return half if bool(torch.isfinite(half).all()) or not bool(torch.isfinite(value).all()) else value


def save_models(models: AvctModels, out_dir: str | os.PathLike, *, half: bool = False) -> Path:
    """Write safetensors per component + config.json (written last, atomically each); ``half`` stores
    float weights as fp16 (see ``half_tensor``)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name, module in models.components().items():
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        if half:
            tensors = {k: half_tensor(v) for k, v in tensors.items()}
        with atomic_path(out / f"{name}.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME, "component": name})
        names.append(name)
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "components": names, "model": models.config.to_dict()}
    atomic_write_text(out / CONFIG_FILE, json.dumps(meta, indent=1))
    return out


def read_format_json(path: Path, format_name: str, version: int, what: str = "avct weights config") -> dict:
    """The JSON beside a set of safetensors: checked to be ours (``what`` names it in errors) and not
    from a newer avct."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AvctError(f"cannot read {path}: {_first_line(e)}") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise AvctError(f"{path} is not an {what}")
    if meta.get("version", 0) > version:
        raise AvctError(f"{path} was written by a newer avct ({format_name} version {meta['version']}); upgrade avct")
    return meta


def load_saved(directory: str | os.PathLike) -> AvctModels:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_format_json(directory / CONFIG_FILE, FORMAT_NAME, FORMAT_VERSION)
    config = ModelConfig.from_dict(meta.get("model", {}))
    models = AvctModels(config)
    for name in meta.get("components", []):
        if name not in COMPONENTS:
            raise AvctError(f"{directory / CONFIG_FILE} names an unknown component {name!r}")
        path = directory / f"{name}.safetensors"
        try:
            state = load_file(str(path))
        except (OSError, SafetensorError) as e:
            raise AvctError(f"cannot read weights {path}: {_first_line(e)}") from None
        module = build_component(name, config)
        load_state_checked(module, state, str(path))
        setattr(models, name, module)
    return models.eval()


def load_models(path: str | os.PathLike) -> AvctModels:
    """Any supported checkpoint: our directory, a directory with the official files, or a single file."""
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return load_saved(path)
        if (path / "weights" / CONFIG_FILE).is_file():  # an `avct train` run directory
            return load_saved(path / "weights")
        gen, a2p = path / "generator.ckpt", path / "audio2pose.ckpt"
        if gen.is_file() or a2p.is_file():
            return load_official(gen if gen.is_file() else None, a2p if a2p.is_file() else None)
        raise AvctError(f"{path} holds neither avct weights ({CONFIG_FILE}) nor the official "
                        "generator.ckpt / audio2pose.ckpt")
    if path.is_file():
        if path.name == CONFIG_FILE:
            return load_saved(path.parent)
        if path.suffix == ".safetensors":
            return load_saved(path.parent)
        ckpt_keys = set(safe_torch_load(path))
        if "ph2kp" in ckpt_keys or "kp_detector" in ckpt_keys:
            sibling = path.parent / "audio2pose.ckpt"
            return load_official(path, sibling if sibling.is_file() else None)
        return load_official(None, path)
    raise AvctError(f"checkpoint not found: {path}")
