"""avct: one face image + a speech recording -> a talking-head video (AVCT, AAAI-22)."""
from .errors import AvctError

__version__ = "0.1.0"

__all__ = ["AvctError", "Pipeline", "__version__"]


def __getattr__(name: str):
    # Lazy: importing avct (e.g. for the CLI's --help) should not pay for torch.
    if name == "Pipeline":
        from .inference.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
