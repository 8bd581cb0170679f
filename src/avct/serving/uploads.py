"""A job's upload: the multipart body read under a size limit, its files saved into the job's folder, its
options parsed, and the checks that are cheap enough to answer before the job is accepted.

The size limit is enforced on the bytes as they arrive (the declared Content-Length first, then a count of
what is received), so an oversized body is refused without being read; file parts are spooled to disk by
Starlette's parser (at most 1 MB each in memory) and then copied into the job's folder.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from ..audio.decode import audio_seconds_from_header
from ..errors import AvctError
from ..inference.options import GenerateOptions
from ..limits import check_audio_seconds

FILE_FIELDS = ("image", "audio")
# Options that name a file on the machine running the server: a client must not make it read them.
SERVER_FILE_OPTIONS = ("phonemes", "pose_from")
MAX_FIELD_BYTES = 256 * 1024  # a transcript is the longest text field
_SAFE_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")


class UploadTooLarge(Exception):
    """The request body is larger than the server accepts (HTTP 413)."""


async def read_form(request: Any, max_bytes: int) -> Any:
    """The multipart form of ``request`` (a Starlette Request), refusing bodies above ``max_bytes``."""
    from starlette.requests import Request

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise UploadTooLarge
    received = 0

    async def counted_receive() -> dict:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise UploadTooLarge
        return message

    counted = Request(request.scope, counted_receive)
    return await counted.form(max_files=len(FILE_FIELDS), max_fields=len(GenerateOptions.names()) + 4,
                              max_part_size=MAX_FIELD_BYTES)


def save_upload(upload: Any, folder: Path, stem: str) -> tuple[Path, str]:
    """Copy an UploadFile to ``folder/stem<suffix>``; returns the path and the client's file name.

    The client's suffix is kept (if plain) because some formats are recognised by it (raw PCM)."""
    client_name = Path(upload.filename or stem).name or stem
    suffix = Path(client_name).suffix.lower()
    path = folder / (stem + (suffix if _SAFE_SUFFIX.fullmatch(suffix) else ""))
    upload.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    return path, client_name


def options_from_fields(fields: Mapping[str, str]) -> GenerateOptions:
    """Every text field is a generate option, parsed by :meth:`GenerateOptions.from_mapping` alone."""
    for name in fields:
        if name.strip().replace("-", "_") in SERVER_FILE_OPTIONS:
            raise AvctError(f"option {name} names a file on the server and is not accepted over HTTP")
    return GenerateOptions.from_mapping(fields)


def check_inputs(image: Path, audio: Path, options: GenerateOptions, max_audio_s: float) -> None:
    """What ``avct generate`` would reject, found before the job is queued: a long audio by its header
    (before decoding it), then an unreadable photo (or a face number it lacks), then audio that does not
    decode, is silent or too short. Raises AvctError (one line)."""
    from ..audio.decode import load_audio
    from ..inference.inputs import load_job_reference

    check_audio_seconds(audio_seconds_from_header(audio), str(audio), max_audio_s)
    load_job_reference(image, options)
    load_audio(audio, max_seconds=max_audio_s)  # also stops decoding a stream without a declared length there
