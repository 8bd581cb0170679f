"""What ``avct preprocess`` reports: one outcome per input (processed, reused or skipped, with the reason),
the run's summary, and the reason a clip is skipped (:class:`Skip`)."""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import AvctError
from ...io_utils import atomic_write_text
from ...media import FPS


MIN_SECONDS = 1.0


class Skip(AvctError):
    """This clip cannot be used; the message is the reason shown in the report."""


@dataclass
class ClipOutcome:
    """What happened to one input video in this run."""

    source: str
    status: str  # "processed", "reused" or "skipped"
    name: str | None = None
    reason: str | None = None
    frames: int = 0
    usable_frames: int = 0
    lost_frames: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class PreprocessReport:
    """The outcome of one ``preprocess`` run; ``summary()`` is what the CLI prints."""

    dataset: Path
    outcomes: list[ClipOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def _with(self, status: str) -> list[ClipOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def processed(self) -> list[ClipOutcome]:
        return self._with("processed")

    @property
    def reused(self) -> list[ClipOutcome]:
        return self._with("reused")

    @property
    def skipped(self) -> list[ClipOutcome]:
        return self._with("skipped")

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": str(self.dataset), "seconds": round(self.seconds, 3),
                "processed": [_outcome_dict(o) for o in self.processed],
                "reused": [_outcome_dict(o) for o in self.reused],
                "skipped": [{"source": o.source, "reason": o.reason} for o in self.skipped]}

    def summary(self) -> str:
        """Human-readable: counts, then every skipped clip with its reason."""
        usable = sum(o.usable_frames for o in self.processed + self.reused)
        lines = [f"dataset {self.dataset}: {len(self.processed)} clip(s) processed, {len(self.reused)} reused, "
                 f"{len(self.skipped)} skipped; {usable} usable frames ({usable / FPS:.1f} s) from this run's "
                 f"inputs; took {self.seconds:.1f} s"]
        for o in self.processed + self.reused:
            lost = f", face lost in {o.lost_frames}" if o.lost_frames else ""
            lines.append(f"  {o.status:9s} {o.name}: {o.frames} frames, {o.usable_frames} usable{lost}")
            lines += [f"            warning: {w}" for w in o.warnings]
        for o in self.skipped:
            lines.append(f"  skipped   {o.source}: {o.reason}")
        return "\n".join(lines)


def _outcome_dict(o: ClipOutcome) -> dict[str, Any]:
    d = dataclasses.asdict(o)
    d.pop("status")
    d.pop("reason")
    d["seconds"] = round(o.seconds, 3)
    return d


def write_report(root: Path, report: PreprocessReport, **settings: Any) -> None:
    data = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": settings, **report.to_dict()}
    atomic_write_text(root / "report.json", json.dumps(data, indent=1))
