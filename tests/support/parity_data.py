"""Reading the parity pack's golden arrays (imported by tests as a plain module)."""
from pathlib import Path

import numpy as np


def golden(parity: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(parity / name) as f:
        return {k: f[k] for k in f.files}
