"""The HTTP API (``/v1``) and the web page (``/``), thin routes over a :class:`~avct.serving.jobs.JobStore`.

Why FastAPI on uvicorn: a widely used, well-kept ASGI pair; FastAPI gives the OpenAPI schema (``/openapi.json``)
and typed routes for free, Starlette (under it) streams multipart uploads to disk and serves files with HTTP
range requests (what a ``<video>`` element needs), and uvicorn is its standard server. Imported only by
``avct serve``.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from .. import __version__
from ..errors import AvctError
from ..inference.options import RENDER_MODES, GenerateOptions
from .jobs import FAILED, Job, JobStore, QueueFull, Runner, new_job_id, user_message
from .settings import ServeSettings
from .uploads import (FILE_FIELDS, SERVER_FILE_OPTIONS, UploadTooLarge, check_inputs, options_from_fields,
                      read_form, save_upload)
from .workdir import claim_work_dir

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("avct.serve")


def create_app(settings: ServeSettings, run: Runner) -> FastAPI:
    """The ASGI app; ``run`` generates one job's video (see :func:`avct.serving.server.pipeline_runner`)."""
    store = JobStore(run, workers=settings.workers, queue_size=settings.queue, keep_s=settings.keep_s,
                     max_job_s=settings.max_job_s)
    # A given work dir is locked now (a second server on it fails here, in one line) and cleared of the job
    # folders of a server that was killed (avct.serving.workdir).
    lock = claim_work_dir(Path(settings.work_dir)) if settings.work_dir is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own_dir = settings.work_dir is None
        app.state.work_dir = Path(tempfile.mkdtemp(prefix="avct-serve-")) if own_dir else Path(settings.work_dir)
        app.state.work_dir.mkdir(parents=True, exist_ok=True)
        store.start()
        try:
            yield
        finally:
            store.close()
            if own_dir:
                shutil.rmtree(app.state.work_dir, ignore_errors=True)
            if lock is not None:
                os.close(lock)

    # No /docs or /redoc: FastAPI's viewers load their scripts from a CDN, and the server must work offline.
    app = FastAPI(title="avct", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="One photo + speech -> talking-head mp4. Submit a job, poll it, download the video.")
    app.state.store = store
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/v1/config")
    def config() -> dict[str, Any]:
        """Limits, option defaults and choices (the web page fills its form from these)."""
        defaults = {k: v for k, v in GenerateOptions().as_dict().items() if k not in SERVER_FILE_OPTIONS}
        return {"limits": settings.limits(), "defaults": defaults, "choices": {"render": list(RENDER_MODES)}}

    @app.get("/v1/limits", response_model=LimitsModel)
    def limits() -> LimitsModel:
        """What this server accepts, all checked before the expensive work starts (avct.limits): a larger
        upload is refused with 413 while it streams, a larger photo or longer speech with 422 from its
        header, and a job running longer fails."""
        values = settings.input_limits()
        return LimitsModel(max_pixels=values.max_pixels, max_audio_s=values.max_audio_s,
                           max_upload_bytes=values.max_upload_bytes, max_job_s=values.max_job_s)

    @app.post("/v1/jobs", status_code=202, openapi_extra=_job_form_schema(),
              responses={413: {"description": "upload too large"}, 422: {"description": "bad input (one line)"},
                         503: {"description": "queue full"}})
    async def create_job(request: Request) -> dict[str, str]:
        """Upload ``image`` and ``audio`` files plus options as form fields; returns the job id at once."""
        try:
            store.reserve()
        except QueueFull:
            raise _queue_full() from None
        job_id = new_job_id()
        folder = request.app.state.work_dir / job_id
        try:
            folder.mkdir()
            job = await _receive_job(request, job_id, folder, settings)
        except BaseException:
            store.release()
            shutil.rmtree(folder, ignore_errors=True)
            raise
        try:
            store.submit(job)
        except QueueFull:  # the server is shutting down
            shutil.rmtree(folder, ignore_errors=True)
            raise _queue_full() from None
        return {"id": job_id}

    @app.get("/v1/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        """``status`` queued|running|done|failed, ``progress`` 0..1, ``error`` (one line) or null."""
        status = store.status(job_id)
        if status is None:
            raise _no_such_job(job_id)
        return status

    @app.get("/v1/jobs/{job_id}/video", response_class=FileResponse,
             responses={200: {"content": {"video/mp4": {}}}, 409: {"description": "not done (yet)"}})
    def job_video(job_id: str) -> FileResponse:
        """The finished H.264/AAC mp4 (404 unknown or expired, 409 while queued, running or failed)."""
        status, video = store.finished_video(job_id)
        if status is None:
            raise _no_such_job(job_id)
        if video is None:
            raise HTTPException(409, "the job failed; there is no video" if status == FAILED
                                else f"the job is {status}; the video is not ready")
        return FileResponse(video, media_type="video/mp4", filename=f"avct-{job_id[:8]}.mp4",
                            content_disposition_type="inline")

    @app.delete("/v1/jobs/{job_id}", status_code=204)
    def delete_job(job_id: str) -> Response:
        """Cancel a queued or running job, or forget a finished one; its files are deleted."""
        if not store.delete(job_id):
            raise _no_such_job(job_id)
        return Response(status_code=204)

    return app


async def _receive_job(request: Request, job_id: str, folder: Path, settings: ServeSettings) -> Job:
    """Read and check one upload into ``folder``: 413 when too large, 422 with the one-line reason when bad."""
    try:
        form = await read_form(request, settings.max_upload_bytes)
    except UploadTooLarge:
        raise HTTPException(413, f"upload larger than this server's limit of {settings.max_upload_mb:g} MB") from None
    names: dict[str, str] = {}  # saved path -> the client's file name, for messages
    try:
        try:
            paths = {}
            for field in FILE_FIELDS:
                upload = form.get(field)
                if not isinstance(upload, UploadFile):
                    raise AvctError(f"missing file field {field!r} (send a multipart/form-data upload)")
                paths[field], client_name = await run_in_threadpool(save_upload, upload, folder, field)
                names[str(paths[field])] = client_name
            options = options_from_fields({k: v for k, v in form.items() if k not in FILE_FIELDS})
        finally:
            await form.close()
        await run_in_threadpool(check_inputs, paths["image"], paths["audio"], options, settings.max_audio_s)
    except AvctError as e:
        raise HTTPException(422, user_message(e, names)) from None
    except Exception as e:  # a reader's bug met by this upload: the upload is refused, the server keeps serving
        log.exception("job %s: checking the upload failed", job_id)
        raise HTTPException(422, f"cannot check the upload: internal error ({type(e).__name__})") from None
    return Job(job_id, folder, paths["image"], paths["audio"], options, names)


class LimitsModel(BaseModel):
    """The limits of ``GET /v1/limits`` (see avct.limits.Limits)."""

    max_pixels: int = Field(description="largest photo, width x height, read from its header before decoding")
    max_audio_s: float = Field(description="longest speech, seconds: the declared length, then the decoded one")
    max_upload_bytes: int = Field(description="largest request body (photo + audio + fields), counted as it streams")
    max_job_s: float | None = Field(description="longest run time of one job, seconds (null: none)")


def _queue_full() -> HTTPException:
    return HTTPException(503, "the server is busy (its queue is full); try again in a minute",
                         headers={"Retry-After": "60"})


def _no_such_job(job_id: str) -> HTTPException:
    return HTTPException(404, f"no job {job_id} (never created, deleted, or expired)")


def _job_form_schema() -> dict[str, Any]:
    """The multipart body for OpenAPI, derived from GenerateOptions (the routes read the raw form so
    that the size limit applies while it streams)."""
    options = {name: {"type": "string"} for name in GenerateOptions.names() if name not in SERVER_FILE_OPTIONS}
    files = {name: {"type": "string", "format": "binary"} for name in FILE_FIELDS}
    schema = {"type": "object", "required": list(FILE_FIELDS), "properties": {**files, **options}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
