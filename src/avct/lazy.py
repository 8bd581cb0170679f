"""Package attributes imported when first used (PEP 562), so that ``import avct`` and parsing the command
line's arguments do not pay for torch: a package names its public attributes and the module of each."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: attribute ``name`` comes from its submodule
    ``exports[name]`` (relative to the package), imported at first use."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{exports[name]}", package), name)
    return __getattr__
