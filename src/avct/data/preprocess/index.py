"""The dataset's ``index.json`` (clip names, what was skipped) and the lock that keeps two runs from
writing one dataset."""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from ...errors import AvctError
from ...io_utils import atomic_write_text
from ...media import FPS, IMAGE_SIZE, SAMPLE_RATE
from ..dataset import FORMAT, SUPPORTED_VERSIONS, read_index
from .report import ClipOutcome


FORMAT_VERSION = SUPPORTED_VERSIONS[-1]


class DatasetIndex:
    """index.json: finished clips (by name) and skipped sources; rewritten atomically after every clip."""

    def __init__(self, root: Path, clips: dict[str, dict[str, Any]], skipped: dict[str, str]) -> None:
        self.root = root
        self.clips = clips
        self.skipped = skipped  # source -> reason
        self._names: dict[str, str] = {}  # resolved source path -> name used in this run

    @classmethod
    def load(cls, root: Path) -> DatasetIndex:
        """The existing index (entries whose clip is still complete), or an empty one."""
        path = root / "index.json"
        if not path.exists():
            return cls(root, {}, {})
        data = read_index(path)
        try:
            clips = {c["name"]: c for c in data.get("clips", [])
                     if (root / "clips" / str(c["name"]) / "DONE").is_file()}
            skipped = {s["source"]: s["reason"] for s in data.get("skipped", [])}
        except (KeyError, TypeError, AttributeError):
            raise AvctError(f"{path} is damaged (malformed clip or skipped entries); fix or delete it") from None
        return cls(root, clips, skipped)

    def name_for(self, path: Path) -> str:
        """The clip folder name: the sanitised file stem, plus a hash of the path when another source
        already uses that name (two ``clip.mp4`` in different folders)."""
        key = str(path.resolve())
        if key in self._names:
            return self._names[key]
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "clip"
        name = base
        owner = self._owner(name)
        if (owner is not None and owner != key) or name in self._names.values():
            name = f"{base}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        self._names[key] = name
        return name

    def _owner(self, name: str) -> str | None:
        """The resolved source path of an existing clip folder or index entry called ``name``."""
        entry = self.clips.get(name)
        if entry is not None:
            return entry.get("source_resolved") or str(Path(entry["source"]).resolve())
        meta_path = self.root / "clips" / name / "meta.json"
        try:
            return json.loads(meta_path.read_text(encoding="utf-8"))["source"]["path"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def record(self, outcome: ClipOutcome, speaker: str | None) -> None:
        if outcome.status == "skipped":
            self.skipped[outcome.source] = outcome.reason or "unknown reason"
            return
        self.skipped.pop(outcome.source, None)
        previous = self.clips.pop(outcome.name, {})
        self.clips[outcome.name] = {
            "name": outcome.name, "frames": outcome.frames, "usable_frames": outcome.usable_frames,
            "lost_frames": outcome.lost_frames,
            "speaker": speaker if speaker is not None else previous.get("speaker"),
            "source": outcome.source, "source_resolved": str(Path(outcome.source).resolve())}

    def save(self) -> None:
        data = {"format": FORMAT, "version": FORMAT_VERSION, "fps": FPS, "sample_rate": SAMPLE_RATE,
                "image_size": IMAGE_SIZE, "clips": list(self.clips.values()),
                "skipped": [{"source": s, "reason": r} for s, r in self.skipped.items()]}
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / "index.json", json.dumps(data, indent=1))


class DatasetLock:
    """One ``avct preprocess`` per dataset at a time (a second would fight over the same temp folders);
    a lock left by a crashed run (dead pid on this host) is taken over."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".preprocess.lock"

    def __enter__(self) -> DatasetLock:
        root = self.path.parent
        if root.exists() and not root.is_dir():
            raise AvctError(f"--out {root} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._holder_alive():
                    raise AvctError(f"another avct preprocess is writing to {root} "
                                    f"({self.path.read_text(errors='replace').strip()}); wait for it or "
                                    f"delete {self.path} if it is gone") from None
                self.path.unlink(missing_ok=True)
                continue
            except OSError as e:
                raise AvctError(f"cannot write to the dataset folder {root}: {e.strerror or e}") from None
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            return self
        raise AvctError(f"cannot lock the dataset folder {root} ({self.path})")

    def _holder_alive(self) -> bool:
        try:
            host, pid = self.path.read_text().split()
            if host != socket.gethostname():
                return True  # cannot tell: be safe
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except (OSError, ValueError):
            return False
        return True

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)
