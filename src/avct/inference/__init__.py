"""Inference: the loaded networks and the frames and videos of jobs made with them.

The public names, imported when first used (the options without torch, so that the command line
parses its arguments before torch loads): :class:`Pipeline` (``Pipeline.load()``), the job's options
:class:`GenerateOptions`, the process's :class:`RuntimeOptions`, a job's inputs (:func:`load_reference`,
:func:`load_speech`, :class:`Reference`, :class:`Speech`) and :func:`generate_video`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

_EXPORTS = {
    "Pipeline": "pipeline",
    "GenerateOptions": "options", "RuntimeOptions": "options",
    "Reference": "inputs", "Speech": "inputs", "load_reference": "inputs", "load_speech": "inputs",
    "generate_video": "job",
}
__all__ = ["Pipeline", "GenerateOptions", "RuntimeOptions", "Reference", "Speech", "load_reference",
           "load_speech", "generate_video"]

if TYPE_CHECKING:
    from .inputs import Reference, Speech, load_reference, load_speech
    from .job import generate_video
    from .options import GenerateOptions, RuntimeOptions
    from .pipeline import Pipeline


__getattr__ = lazy_attributes(__name__, _EXPORTS)
