"""The server's work folder after a crash: one server at a time holds it (a lock the kernel drops when the
process dies, SIGKILL included), and whoever takes it next deletes the job folders the dead one left.

A job killed mid-way leaves its folder behind: the uploads and, at most, the video writer's hidden temporary
file (the mp4 is renamed into place only once complete, :mod:`avct.io_utils`). No job survives a restart
(the jobs live in the dead process's memory), so those folders are garbage: :func:`claim_work_dir` removes
them, and only them (folders named as :func:`~avct.serving.jobs.new_job_id` names jobs).
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path

from ..errors import AvctError

_JOB_FOLDER = re.compile(r"[0-9a-f]{32}")


def claim_work_dir(work_dir: Path) -> int:
    """Lock ``work_dir`` for this server (AvctError, one line, if another server holds it) and delete the
    job folders a previous server left; returns the lock's file descriptor (close it to let go). The lock is
    taken on the folder itself, so nothing is left in it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise AvctError(f"work dir {work_dir} is in use by another avct serve; give each server its own") from None
    remove_leftover_jobs(work_dir)
    return fd


def remove_leftover_jobs(work_dir: Path) -> list[str]:
    """Delete the job folders in ``work_dir`` (a previous server's, killed before it could); returns their names."""
    left = [p for p in work_dir.iterdir() if p.is_dir() and not p.is_symlink() and _JOB_FOLDER.fullmatch(p.name)]
    for folder in left:
        shutil.rmtree(folder, ignore_errors=True)
    return sorted(p.name for p in left)
