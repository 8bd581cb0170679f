"""The limits on what avct accepts, stated once: ``avct generate``, ``avct batch``, the library and
``avct serve`` all take them from here, and each is checked before the work it bounds starts.

Why limits at all: a 438 KB PNG can declare 20 000 x 20 000 pixels (1.2 GB once decoded), a 44-byte WAV
header can declare ten hours, a manifest can hold a million rows. Each limit is checked on what the file
*declares* (its header), before anything is decoded, and again on what is actually decoded, so a header
that lies cannot get past either. The server (:class:`~avct.serving.settings.ServeSettings`) starts
from :data:`SERVER_LIMITS` and its flags may lower or raise its own values; ``GET /v1/limits`` returns
them. ``docs/hostile_inputs.md`` tells what happens to each kind of hostile input.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from .errors import AvctError

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one job, upload or manifest may ask of avct (all checked before the expensive work)."""

    # Width x height of a photo, or of a --pose-from video's frames, read from the file's header before
    # any pixel is decoded (50 MP: a 48 MP phone photo passes; its RGB copy is 150 MB).
    max_pixels: int = 50_000_000
    # Speech length in seconds: the container's declared duration before decoding, then the samples as
    # they are decoded (a stream without a declared length stops being decoded there).
    max_audio_s: float = 3600.0
    # The whole HTTP request body of ``avct serve`` (photo + audio + fields), counted while it streams in.
    max_upload_bytes: int = 50 * MIB
    # Run time of one server job in seconds (checked at every frame; None: no limit). The front end
    # before the first frame is bounded by max_audio_s instead.
    max_job_s: float | None = None
    # Data rows of an ``avct batch`` manifest, and the manifest file's size (checked before it is read).
    max_manifest_rows: int = 100_000
    max_manifest_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_audio_s", "max_upload_bytes", "max_manifest_rows", "max_manifest_bytes"):
            if not getattr(self, name) > 0:
                raise AvctError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.max_job_s is not None and not self.max_job_s > 0:
            raise AvctError(f"max-job-s must be positive, got {self.max_job_s}")

    def replace(self, **changes: Any) -> "Limits":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# What the command line and the library accept (the user's own machine: generous, but bounded).
LIMITS = Limits()
# What ``avct serve`` accepts from anyone who can reach it, unless its flags say otherwise.
SERVER_LIMITS = LIMITS.replace(max_audio_s=600.0, max_job_s=3600.0)


def megapixels(pixels: float) -> str:
    return f"{pixels / 1e6:.1f} MP"


def check_pixels(width: int, height: int, what: str, max_pixels: int | None = None) -> None:
    """AvctError (one line naming ``what``) when ``width x height`` is above the pixel limit."""
    if width * height > (LIMITS.max_pixels if max_pixels is None else max_pixels):
        raise too_many_pixels(what, width * height, f"{width}x{height} px", max_pixels)


def too_many_pixels(what: str, pixels: int, size: str | None = None, max_pixels: int | None = None) -> AvctError:
    """The one line for a picture above the pixel limit (``size``: its ``WxH px`` when known)."""
    limit = LIMITS.max_pixels if max_pixels is None else max_pixels
    return AvctError(f"{what} is {size or f'{pixels} px'} ({megapixels(pixels)}); avct reads at most "
                     f"{megapixels(limit)} ({limit} pixels)")


def check_audio_seconds(seconds: float | None, what: str, max_audio_s: float | None = None) -> None:
    """AvctError (one line naming ``what``) when ``seconds`` (declared by a header, or decoded; None:
    unknown) is above the speech limit."""
    limit = LIMITS.max_audio_s if max_audio_s is None else max_audio_s
    if seconds is not None and seconds > limit:
        raise audio_too_long(what, f"{seconds:.1f} s", limit)


def audio_too_long(what: str, length: str, limit: float) -> AvctError:
    """The one line for speech above the limit (``length``: how long it is, e.g. "more than 600 s")."""
    return AvctError(f"audio {what} is {length} long; at most {limit:g} s are accepted")
