"""Registry of the training stages: name -> Stage class, imported only when asked for.

Lazy so that a stage whose module (or one of its dependencies) is missing or broken does not stop
the others from training; asking for it gives one AvctError line instead.
A stage module exposes its class as ``STAGE`` or defines exactly one Stage subclass whose ``name``
is the registry name.
"""
from __future__ import annotations

import importlib

from ...errors import AvctError
from ..config import STAGE_NAMES
from ..stage import Stage

# registry name -> module under avct.train.stages
STAGE_MODULES: dict[str, str] = {name: name for name in STAGE_NAMES}


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
