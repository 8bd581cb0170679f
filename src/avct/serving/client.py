"""A minimal client for the ``avct serve`` API, standard library only (used by the tests and the load benchmark).

    job = submit_job("http://127.0.0.1:8000", "face.jpg", "speech.wav", render="classic")
    wait_for_job("http://127.0.0.1:8000", job["id"]); download_video(..., "out.mp4")
"""
from __future__ import annotations

import http.client
import json
import mimetypes
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from ..io_utils import atomic_write_bytes


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(method: str, url: str, body: bytes | Iterable[bytes] | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 120.0) -> Reply:
    """One HTTP request; an iterable body is sent with chunked transfer encoding (no Content-Length)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        chunked = body is not None and not isinstance(body, bytes)
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                           headers=dict(headers or {}), encode_chunked=chunked)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def encode_multipart(files: Mapping[str, str | Path], fields: Mapping[str, Any] | None = None) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload of ``files`` (field -> path) and text ``fields``."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in (fields or {}).items():
        chunks += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode(),
                   str(value).encode(), b"\r\n"]
    for name, path in files.items():
        path = Path(path)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        chunks += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{path.name}\"\r\n"
                   f"Content-Type: {kind}\r\n\r\n".encode(), path.read_bytes(), b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def submit_job(base_url: str, image: str | Path, audio: str | Path, **options: Any) -> Reply:
    """POST /v1/jobs; 202 and {"id": ...} when accepted, else the error status and {"detail": ...}."""
    body, content_type = encode_multipart({"image": image, "audio": audio}, options)
    return request("POST", f"{base_url}/v1/jobs", body, {"Content-Type": content_type})


def job_status(base_url: str, job_id: str) -> Reply:
    return request("GET", f"{base_url}/v1/jobs/{job_id}")


def wait_for_job(base_url: str, job_id: str, timeout: float = 600.0, every: float = 0.25) -> dict[str, Any]:
    """Poll until the job is done or failed; returns its last status (TimeoutError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = job_status(base_url, job_id)
        if reply.status != 200:
            raise RuntimeError(f"GET job {job_id}: HTTP {reply.status} {reply.body[:200]!r}")
        status = reply.json()
        if status["status"] in ("done", "failed"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status['status']} after {timeout:g} s")
        time.sleep(every)


def download_video(base_url: str, job_id: str, output: str | Path) -> Path:
    reply = request("GET", f"{base_url}/v1/jobs/{job_id}/video")
    if reply.status != 200:
        raise RuntimeError(f"GET video of {job_id}: HTTP {reply.status} {reply.body[:200]!r}")
    atomic_write_bytes(output, reply.body)
    return Path(output)
