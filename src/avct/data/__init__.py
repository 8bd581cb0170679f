"""Training data: ``avct.data.preprocess.run`` (videos -> dataset folder, ``avct preprocess``) and
``avct.data.dataset`` (the memory-mapped reader). The format is described in ``docs/dataset.md``.

The ``preprocess`` function is deliberately not re-exported here: it would shadow the submodule of the
same name (``avct.data.preprocess.run`` must stay the module); use
``from avct.data.preprocess.run import preprocess``.
"""
from __future__ import annotations

from .dataset import ClipArrays, ClipInfo, TalkingHeadDataset

__all__ = ["ClipArrays", "ClipInfo", "TalkingHeadDataset"]
