"""Inference: the loaded networks and the frames and videos of jobs made with them.

The public names, imported when first used (the options without torch, so that the command line
parses its arguments before torch loads): :class:`Pipeline` (``Pipeline.load()``), the job's options
:class:`GenerateOptions`, the process's :class:`RuntimeOptions`, a job's inputs (:func:`load_reference`,
:func:`load_speech`, :class:`Reference`, :class:`Speech`) and :func:`generate_video`.
"""
from __future__ import annotations

from ..lazy import lazy_attributes

_EXPORTS = {
    "Pipeline": "pipeline",
    "GenerateOptions": "options", "RuntimeOptions": "options",
    "Reference": "inputs", "Speech": "inputs", "load_reference": "inputs", "load_speech": "inputs",
    "generate_video": "job",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy_attributes(__name__, _EXPORTS)
