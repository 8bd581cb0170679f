"""Where the shared data lives, and one rule for when it is missing: fail in CI, skip elsewhere."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("AVCT_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
IMAGES = SHARED / "data" / "image"
VIDEOS = SHARED / "data" / "video"


def require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared test data {path} is missing in CI")
        pytest.skip(f"shared test data {path} is absent (expected beside the repository)")
    return path


def shared_image(name: str) -> np.ndarray:
    from avct.face.image import read_image

    return read_image(require(IMAGES / name))
