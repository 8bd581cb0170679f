"""Atomic writes of files and folders: an output either appears complete or not at all."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import AvctError


def chmod_default(path: Path, directory: bool = False) -> None:
    """Give a mkstemp/mkdtemp result (0600/0700) the permissions a normally created file would get."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is removed, so a crash or
    Ctrl-C never leaves a half-written output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        chmod_default(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with _writing(path), atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with _writing(path), atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def _writing(path: str | os.PathLike) -> Iterator[None]:
    """A write that fails (disk full, no permission, read-only file system) is one AvctError naming ``path``."""
    try:
        yield
    except OSError as e:
        raise AvctError(f"cannot write {path}: {e.strerror or e}") from None


def remove_stale_temporaries(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete the hidden temporary files :func:`atomic_path` (and the video writer, with the same prefix)
    made for any of ``paths`` by a run that was killed before it could clean up; returns them. Each folder
    is listed once, however many paths it holds. Only call this where no other process writes those paths."""
    wanted: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        wanted.setdefault(path.parent, set()).add(path.name)
    stale = []
    for folder, names in wanted.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):  # ".NAME.<random>SUFFIX", NAME possibly holding dots itself
            if entry.name.startswith(".") and entry.is_file(follow_symlinks=False) and any(
                    entry.name[1:i] in names and entry.name.endswith(Path(entry.name[1:i]).suffix)
                    for i in range(len(entry.name)) if entry.name[i] == "."):
                stale.append(folder / entry.name)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a new hidden folder beside ``path`` (``suffix`` ends its name); when the block succeeds it
    replaces ``path`` (:func:`replace_folder`); on any exception (Ctrl-C included) it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent))
    try:
        yield tmp
        chmod_default(tmp, directory=True)
        replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target`` with renames only (never a half-written ``target``); a folder
    already there is moved aside first and then removed."""
    if not target.exists():
        os.replace(new, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=".tmp", dir=target.parent))
    os.replace(target, aside / target.name)
    os.replace(new, target)
    shutil.rmtree(aside, ignore_errors=True)
