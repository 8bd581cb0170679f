"""avct: one face image + a speech recording -> a talking-head video (AVCT, AAAI-22).

``avct.Pipeline.load().generate("photo.png", "speech.wav", "out.mp4")``; the options of a job are
:class:`GenerateOptions`, those of the loaded networks :class:`RuntimeOptions`.
"""
from .errors import AvctError

__version__ = "0.1.0"

__all__ = ["AvctError", "GenerateOptions", "Pipeline", "RuntimeOptions", "__version__"]


def __getattr__(name: str):
    # Lazy: importing avct (e.g. for the CLI's --help) should not pay for torch.
    if name in ("Pipeline", "GenerateOptions", "RuntimeOptions"):
        from . import inference

        return getattr(inference, name)
    raise AttributeError(name)
