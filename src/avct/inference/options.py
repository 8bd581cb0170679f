"""Every option of generation, in two typed places: a job's and the process's.

:class:`GenerateOptions`, what one job may choose: the command line (``avct generate``), the HTTP API
(form fields), batch manifests (CSV/JSONL columns) and the Python API (``Pipeline.generate(...,
**options)``) all go through it, so a new option, its default, its type and its validation are written
once. :class:`RuntimeOptions`, how the networks run (device, precision, batch size, compile, backend,
threads): they belong to the loaded :class:`~avct.inference.pipeline.Pipeline`, which serves many jobs,
and ``avct generate``, ``avct batch`` and ``avct serve`` build them the same way.

No torch here: the command line parses its arguments with these before torch is imported.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..errors import AvctError

RENDER_MODES = ("sharp", "classic")
FILL_CHOICES = ("auto", "renderer", "photo")  # what the sharp output shows where the photo is occluded
FACE_CHOICES = ("largest", "center")
# The runtimes and precisions RuntimeOptions accepts (resolved by avct.inference.backends / .devices).
BACKENDS = ("auto", "torch", "openvino", "openvino-int8")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
DEFAULT_MAX_SIZE = 1920  # long side of the output photo (H.264 players choke on more; memory stays small)


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise AvctError(f"{name} must be true or false, got {value!r}")


def _parse_float(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AvctError(f"{name} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise AvctError(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return number


def _parse_int(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise AvctError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise AvctError(f"{name} must be between {low} and {high}, got {number}")
    return number


def parse_size(value: Any) -> int | str | None:
    """``--size``: a side in pixels (64..4096), ``native`` (the crop's own size) or None (256)."""
    if value is None or value == "":
        return None
    if str(value).strip().lower() == "native":
        return "native"
    return _parse_int("size", value, 64, 4096)


def parse_face(value: Any) -> int | str:
    """``--face``: ``largest`` (default), ``center`` or a face number (0 = the leftmost face)."""
    text = str(value).strip().lower()
    if text in FACE_CHOICES:
        return text
    return _parse_int("face", text, 0, 99)


@dataclass
class GenerateOptions:
    """What one job may choose. Defaults are what ``avct generate IMAGE AUDIO`` does."""

    # inputs besides the image and the audio
    phonemes: str | None = None          # official phoneme JSON (skips recognition)
    transcript: str | None = None        # what is said: forced alignment instead of recognition
    pose: tuple[float, ...] | None = None  # reference pose Rx,Ry,Rz (rad), Tx,Ty,Tz (mm); estimated if None
    crop: bool = True                    # False (--no-crop): the whole image is the face crop
    face: int | str = "largest"          # which face of a photo with several
    # output framing and rendering
    render: str = "sharp"                # sharp: the photo warped at its resolution; classic: the paper's 256²
    fill: str = "auto"                   # sharp: the renderer's picture where occluded (renderer), the warped
                                         # photo only (photo), auto: photo where the mouth warp opens the lips
    crop_only: bool = False              # the animated crop alone instead of pasted into the whole photo
    size: int | str | None = None        # with crop_only: side in px, "native", or None (256)
    max_size: int = DEFAULT_MAX_SIZE     # long side of the full-photo output
    motion_step: int = 2                 # without the renderer's picture: motion every N frames, interpolated
                                         # between (avct.inference.key_frames; 1 = every frame)
    # motion controls
    still: bool = False                  # no head motion: the reference pose held (lips still move)
    pose_scale: float = 1.0              # head motion about the reference pose (0 = still)
    pose_from: str | None = None         # a video whose head poses drive the head
    mouth_scale: float = 1.0             # lip motion amplitude (1 = as predicted)
    blink_rate: float = 18.0             # sharp output: blinks a minute (0 = none; avct.inference.blinks)
    # speech analysis
    f0: str = "fast"                     # F0 estimator: fast (Harvest at 4 kHz) or official (avct.audio.features)
    extra: dict = field(default_factory=dict, repr=False)  # reserved; always empty after validation

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise AvctError (one line) for any value a user could have mistyped."""
        from ..audio.features import check_f0_method

        self.f0 = check_f0_method(str(self.f0).strip().lower())
        if self.render not in RENDER_MODES:
            raise AvctError(f"render must be one of {', '.join(RENDER_MODES)}, got {self.render!r}")
        self.fill = str(self.fill).strip().lower()
        if self.fill not in FILL_CHOICES:
            raise AvctError(f"fill must be one of {', '.join(FILL_CHOICES)}, got {self.fill!r}")
        self.face = parse_face(self.face)
        self.size = parse_size(self.size)
        self.max_size = _parse_int("max_size", self.max_size, 64, 8192)
        self.motion_step = _parse_int("motion_step", self.motion_step, 1, 4)
        self.pose_scale = _parse_float("pose_scale", self.pose_scale, 0.0, 3.0)
        self.mouth_scale = _parse_float("mouth_scale", self.mouth_scale, 0.0, 3.0)
        self.blink_rate = _parse_float("blink_rate", self.blink_rate, 0.0, 60.0)
        for name in ("crop", "crop_only", "still"):
            setattr(self, name, _parse_bool(name, getattr(self, name)))
        if self.pose is not None:
            from ..face.head_pose import parse_pose

            self.pose = tuple(parse_pose(self.pose if isinstance(self.pose, str) else ",".join(map(str, self.pose))))
        if self.render == "classic":
            if self.size not in (None, 256):
                raise AvctError("the classic renderer makes 256x256 crops only; use render sharp for other sizes")
        elif self.size is not None and not self.crop_only:
            raise AvctError("size applies to crop-only output (the whole photo keeps its own size, see max size)")
        if self.still and self.pose_from:
            raise AvctError("still and pose_from exclude each other (one holds the head, the other moves it)")
        if self.extra:  # names as given (quoted when not printable: the message stays one line)
            names = (n if n.isprintable() else repr(n) for n in sorted(map(str, self.extra)))
            raise AvctError(f"unknown option(s): {', '.join(names)}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "GenerateOptions":
        """From strings (form fields, CSV cells, JSON values): empty values mean the default, unknown
        names are an error. Hyphens and underscores are the same (``pose-scale`` = ``pose_scale``)."""
        known, unknown = {}, {}
        names = set(cls.names())
        for key, value in values.items():
            name = str(key).strip().replace("-", "_")
            if value is None or (isinstance(value, str) and value.strip() == ""):
                continue
            (known if name in names else unknown)[name] = value
        return cls(**known, extra=unknown)

    def replace(self, **changes: Any) -> "GenerateOptions":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.names()}

    @classmethod
    def official(cls, **changes: Any) -> "GenerateOptions":
        """The paper's exact output (``--official``): the renderer's own 256² crops and the official F0
        tracker, with :meth:`RuntimeOptions.official` (the parity tests' settings)."""
        return cls(**{"render": "classic", "f0": "official", **changes})


@dataclass(frozen=True)
class RuntimeOptions:
    """How a loaded Pipeline runs its networks; one value serves every job of the process."""

    device: str = "auto"           # auto (CUDA, then MPS, then CPU; under torchrun the process's GPU), cpu, cuda:N, mps
    precision: str = "fp32"        # the renderer's: fp32, bf16 (fast only where native), fp16 (GPU), auto
    batch_size: int = 8            # frames rendered per batch
    compile: bool = False          # torch.compile the renderer (torch backend only)
    backend: str = "auto"          # the renderer's runtime: auto (the fastest prepared here), torch, openvino,
                                   # openvino-int8 (avct.inference.backends)
    threads: int | None = None     # intra-op threads of the process (None: torch's default, all cores)
    channels_last: bool = True     # NHWC convolutions (faster with oneDNN and on GPUs); off: the official layout
    tune_allocator: bool = True    # CPU: glibc keeps large tensors in its heap (avct.inference.devices)

    def __post_init__(self) -> None:
        """AvctError (one line) for a value a user could have mistyped; numbers from strings accepted."""
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "device", str(self.device or "auto").strip().lower())
        set_(self, "precision", str(self.precision).strip().lower())
        if self.precision not in PRECISION_CHOICES:
            raise AvctError(f"unknown precision {self.precision!r}; use {', '.join(PRECISION_CHOICES)}")
        set_(self, "backend", str(self.backend).strip().lower())
        if self.backend not in BACKENDS:
            raise AvctError(f"unknown backend {self.backend!r}; use {', '.join(BACKENDS)}")
        set_(self, "batch_size", _parse_int("batch_size", self.batch_size, 1, 1024))
        if self.threads is not None:
            set_(self, "threads", _parse_int("threads", self.threads, 1, 1024))
        for name in ("compile", "channels_last", "tune_allocator"):
            set_(self, name, _parse_bool(name, getattr(self, name)))
        if self.compile and self.backend not in ("auto", "torch"):
            raise AvctError("--compile is for the torch backend; the openvino backends compile their own graph")

    @classmethod
    def official(cls, **changes: Any) -> "RuntimeOptions":
        """The paper's exact output: fp32 everywhere and the renderer in PyTorch (``auto`` would pick the
        int8 renderer where prepared, ``--precision auto`` bf16 on CPUs that have it)."""
        return cls(**{"precision": "fp32", "backend": "torch", **changes})

    def replace(self, **changes: Any) -> "RuntimeOptions":
        return dataclasses.replace(self, **changes)
