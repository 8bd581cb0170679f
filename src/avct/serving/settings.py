"""The server's limits in one place: the ``avct serve`` flags, their defaults and their checks.

Kept free of FastAPI imports so that building the command line parser stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import AvctError
from ..limits import LIMITS, MIB, SERVER_LIMITS, Limits


@dataclass(frozen=True)
class ServeSettings:
    """How ``avct serve`` listens and what it accepts. Per-job options live in :class:`~avct.inference.options.GenerateOptions`."""

    host: str = "127.0.0.1"          # loopback only unless asked: the server has no authentication
    port: int = 8000
    max_upload_mb: float = SERVER_LIMITS.max_upload_bytes / MIB  # whole request body (photo + audio + fields),
                                                                 # enforced while streaming (50)
    max_audio_s: float = SERVER_LIMITS.max_audio_s  # longest speech accepted (600; at most LIMITS.max_audio_s)
    workers: int = 1                 # jobs generating at once (1 suits a CPU; a GPU may take more)
    queue: int = 8                   # jobs waiting beyond those (uploads being checked count); more answer 503
    keep_minutes: float = 60.0       # finished jobs (video or error) are deleted this long after finishing
    max_job_s: float | None = SERVER_LIMITS.max_job_s  # a running job taking longer fails (checked at every
                                                        # frame; 3600)
    work_dir: Path | None = None     # per-job upload/output folders go here (default: a temporary folder)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise AvctError(f"port must be between 0 and 65535, got {self.port}")
        for name in ("max_upload_mb", "max_audio_s", "keep_minutes"):
            if not getattr(self, name) > 0:
                raise AvctError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.max_job_s is not None and not self.max_job_s > 0:
            raise AvctError(f"max-job-s must be positive, got {self.max_job_s}")
        if self.max_audio_s > LIMITS.max_audio_s:  # the job's own decoding stops there (avct.limits)
            raise AvctError(f"max-audio-s must be at most {LIMITS.max_audio_s:g} (avct's own limit), "
                            f"got {self.max_audio_s:g}")
        if self.workers < 1 or self.queue < 1:
            raise AvctError(f"workers and queue must be at least 1, got {self.workers} and {self.queue}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def keep_s(self) -> float:
        return self.keep_minutes * 60.0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "ServeSettings":
        """From parsed flags: names that are not settings, and None (flag not given), are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})

    def limits(self) -> dict[str, Any]:
        """What a client may want to know before uploading (shown by the web page)."""
        return {"max_upload_mb": self.max_upload_mb, "max_audio_s": self.max_audio_s, "workers": self.workers,
                "queue": self.queue, "keep_minutes": self.keep_minutes, "max_job_s": self.max_job_s,
                "max_pixels": self.input_limits().max_pixels}

    def input_limits(self) -> Limits:
        """The :class:`~avct.limits.Limits` this server enforces (its flags over :data:`~avct.limits.LIMITS`)."""
        return LIMITS.replace(max_upload_bytes=self.max_upload_bytes, max_audio_s=self.max_audio_s,
                              max_job_s=self.max_job_s)
