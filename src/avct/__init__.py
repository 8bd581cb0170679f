"""avct: one face image + a speech recording -> a talking-head video (AVCT, AAAI-22).

``avct.Pipeline.load().generate("photo.png", "speech.wav", "out.mp4")``; the options of a job are
:class:`GenerateOptions`, those of the loaded networks :class:`RuntimeOptions`.
"""
from .errors import AvctError
from .lazy import lazy_attributes

__version__ = "0.1.0"

__all__ = ["AvctError", "GenerateOptions", "Pipeline", "RuntimeOptions", "__version__"]


__getattr__ = lazy_attributes(__name__, {"Pipeline": "inference", "GenerateOptions": "inference",
                                         "RuntimeOptions": "inference"})
