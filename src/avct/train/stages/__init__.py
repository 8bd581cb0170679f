"""Registry of the training stages: name -> Stage class, imported only when asked for.

Lazy so that a stage whose module (or one of its dependencies) is missing or broken does not stop
the others from training; asking for it gives one AvctError line instead.
A stage module exposes its class as ``STAGE`` or defines exactly one Stage subclass whose ``name``
is the registry name.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from ...errors import AvctError
from ..stage import Stage

# registry name -> module under avct.train.stages
STAGE_MODULES: dict[str, str] = {
    "renderer": "renderer",
    "syncnet": "syncnet",
    "avct": "avct",
    "headmotion": "headmotion",
}


def get_stage(name: str) -> type[Stage]:
    """The Stage class of ``name`` (AvctError if unknown or not importable)."""
    if name not in STAGE_MODULES:
        raise AvctError(f"unknown training stage {name!r}; choose one of {', '.join(STAGE_MODULES)}")
    module_name = f"{__name__}.{STAGE_MODULES[name]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise AvctError(f"the {name} training stage is not available in this build ({module_name} is missing)") from None
        raise AvctError(f"the {name} training stage needs the missing package {e.name!r}") from None
    explicit = getattr(module, "STAGE", None)
    if isinstance(explicit, type) and issubclass(explicit, Stage):
        return explicit
    found = [obj for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, Stage) and obj is not Stage
             and obj.__module__ == module.__name__ and getattr(obj, "name", None) == name]
    if len(found) != 1:
        raise AvctError(f"{module_name} must define one Stage subclass named {name!r} (or STAGE); found {len(found)}")
    return found[0]


class _LazyStages(Mapping):
    """``STAGES[name]`` imports the stage on first access; iteration lists the names only."""

    def __getitem__(self, name: str) -> type[Stage]:
        if name not in STAGE_MODULES:
            raise KeyError(name)
        return get_stage(name)

    def __iter__(self) -> Iterator[str]:
        return iter(STAGE_MODULES)

    def __len__(self) -> int:
        return len(STAGE_MODULES)


STAGES: Mapping[str, type[Stage]] = _LazyStages()
