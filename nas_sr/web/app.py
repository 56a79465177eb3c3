"""The HTTP API and the page: upload, queue, progress, before/after, download.

``POST /api/jobs`` (multipart: ``file``, ``model``) validates and queues; ``GET /api/jobs``
lists every job (the page polls it, so a reload loses nothing); ``/api/jobs/{id}/input``
and ``/result`` serve the files; ``DELETE /api/jobs/{id}`` cancels or removes a job.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path, PurePath
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nas_sr.deploy.media import Settings, upscale_image, upscale_video
from nas_sr.web.admission import Admission
from nas_sr.web.catalog import Entry
from nas_sr.web.guard import RequestGuard
from nas_sr.web.jobs import Job, JobQueue, new_id
from nas_sr.web.store import DB_NAME, JobStore, check_folder
from nas_sr.web.uploads import Limits, UploadError, inspect

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


class BodyLimit:
    """Refuses request bodies over ``limits.upload_bytes`` while they stream in (413),
    so an upload never fills the disk, with or without a Content-Length header."""

    def __init__(self, app: ASGIApp, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = HTTPException(413, f"the file is too large for this server "
                                     f"({self.limits.describe()})")
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limits.upload_bytes:
            body = json.dumps({"detail": too_big.detail}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"connection", b"close")]})
            return await send({"type": "http.response.body", "body": body})
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limits.upload_bytes:
                raise too_big  # FastAPI answers it while it reads the form
            return message

        await self.app(scope, counted, send)


def upload_size(file: UploadFile) -> int:
    """Bytes of an upload the form parser has spooled (memory or a temporary file)."""
    size = file.file.seek(0, 2)
    file.file.seek(0)
    return size


def display_name(filename: str | None) -> str:
    """The uploaded name without any folder part, for display and download names only."""
    return PurePath((filename or "").replace("\\", "/")).name[-120:] or "upload"


def download_name(job: Job, result: bool) -> str:
    """``photo_x2.png`` for a result, ``photo.jpg`` for its input (header-safe)."""
    stem = re.sub(r"[^\w.-]+", "_", PurePath(job.name).stem)[:80] or "upload"
    return f"{stem}_x{job.scale}{job.output.suffix}" if result else f"{stem}{job.input.suffix}"


async def one_sentence(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request the API cannot parse, said in one sentence (not pydantic's error list)."""
    error = exc.errors()[0]
    field = error["loc"][-1]
    if error["type"] == "missing" and request.url.path == "/api/jobs":
        message = (f"the upload has no {field!r} field: send the photo or video as multipart "
                   f"form data, e.g. curl -F file=@photo.jpg {request.base_url}api/jobs")
    elif error["type"] == "missing":
        message = f"the request lacks {field!r}"
    else:
        message = f"{field}: {error['msg']}"
    return JSONResponse({"detail": message}, status_code=422)


def worker(catalog: dict[str, Entry], settings: Settings,
           limits: Limits) -> Callable[[Job], None]:
    """What the queue's worker does with a job: upscale its input into its output."""
    # the upload's check read a video's header; its decoder counts and measures every frame
    video = replace(settings, encoding=replace(settings.encoding, max_frames=limits.frames,
                                               max_pixels=limits.pixels))

    def work(job: Job) -> None:
        if job.model not in catalog:  # queued before a restart that offers other models
            raise ValueError(f"model {job.model!r} is no longer offered; upload it again")
        predictor = catalog[job.model].predictor
        if job.kind == "image":
            upscale_image(predictor, job.input, job.output, settings, job.progress)
        else:  # the upload's count may be an estimate (duration x fps)
            job.frames = upscale_video(predictor, job.input, job.output, video,
                                       job.progress).frames

    return work


# a full, read-only or forbidden store: the user's upload was fine, the server's disk not
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def store_upload(file: UploadFile, folder: Path, model: str, scale: int, container: str,
                 limits: Limits) -> Job:
    """The upload stored and checked in ``folder`` (named by the job's id) as a job; a
    refusal (HTTPException) or any error removes the folder."""
    name = display_name(file.filename)
    folder.mkdir(parents=True)
    upload = folder / "upload"  # the user's name never becomes a path
    try:
        with upload.open("wb") as f:
            shutil.copyfileobj(file.file, f, 2**20)
        media = inspect(upload, name, limits)
    except BaseException as e:  # a refusal, a full disk, a dropped connection
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(e, UploadError):
            raise HTTPException(e.status, str(e)) from None
        if isinstance(e, OSError) and e.errno in NO_ROOM:
            raise HTTPException(507, f"the server could not store the upload ({e.strerror}); "
                                "nothing of it was kept: free space in its store, then "
                                "upload again") from None
        raise
    source = upload.rename(folder / f"input{media.suffix}")
    suffix = ".png" if media.kind == "image" else f".{container}"
    return Job(name, media.kind, model, scale, folder, source, folder / f"result{suffix}",
               media.size, media.frames, media.notes, id=folder.name)


def restore(jobs: JobQueue, store: Path) -> None:
    """The store's jobs taken up again (``JobQueue.restore``), said in the log."""
    swept = jobs.restore(store)
    waiting = sum(j.status == "queued" for j in jobs.jobs())
    if jobs.jobs() or swept:
        log.warning("job store %s: %d jobs queued again, %d finished kept, %d orphaned "
                    "entries swept", store, waiting, len(jobs.jobs()) - waiting, len(swept))


def create_app(catalog: dict[str, Entry], store: Path, settings: Settings,
               limits: Limits, keep_s: float = 3600, workers: int = 1, *,
               hosts: frozenset[str]) -> FastAPI:
    """The app; jobs live in ``store/<id>/``, recorded in ``store/jobs.sqlite``, until
    ``keep_s`` after they end, and a restart on the same ``store`` takes them up again. It
    answers requests whose Host header is one of ``hosts`` (``guard.served_hosts``)."""
    check_folder(store)
    store.mkdir(parents=True, exist_ok=True)
    jobs = JobQueue(worker(catalog, settings, limits), keep_s, workers,
                    JobStore(store / DB_NAME))
    restore(jobs, store)
    admission = Admission(jobs, limits, keep_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        yield
        jobs.stop()  # a running job goes back to the queue, for the next start
        jobs.store.close()
        if waiting := sum(j.status == "queued" for j in jobs.jobs()):
            log.warning("stopped: %d jobs stay queued in %s for the next start", waiting, store)

    # no /docs or /redoc: their pages load scripts from a CDN, blank offline and trusting
    # another origin; the schema stays at /openapi.json
    app = FastAPI(title="nas-sr", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(RequestValidationError, one_sentence)
    app.state.jobs = jobs
    app.add_middleware(BodyLimit, limits=limits)
    app.add_middleware(RequestGuard, hosts=hosts)  # added last, so it runs first
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def public(job: Job) -> dict[str, Any]:
        return job.public(jobs.position(job))

    def find(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} (finished jobs are removed after "
                                     f"{keep_s / 60:.0f} minutes)")
        return job

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {"models": [{"name": e.name, "label": e.label, "scale": e.scale}
                           for e in catalog.values()],
                "limits": {"upload_bytes": limits.upload_bytes, "pixels": limits.pixels,
                           "frames": limits.frames, "text": limits.describe()},
                "keep_minutes": keep_s / 60}

    @app.get("/api/jobs")
    def list_jobs() -> list[dict[str, Any]]:
        return [public(j) for j in jobs.jobs()]

    @app.post("/api/jobs", status_code=202)
    def submit(file: Annotated[UploadFile, File()],
               model: Annotated[str | None, Form()] = None) -> dict[str, Any]:
        model = model or next(iter(catalog))
        if model not in catalog:
            raise HTTPException(422, f"unknown model {model!r}; choose one of "
                                     f"{', '.join(catalog)}")
        job_id = new_id()
        with admission.reserve(job_id, upload_size(file)) as enqueue:
            job = store_upload(file, store / job_id, model, catalog[model].scale,
                               settings.container, limits)
            enqueue(job)
        return public(job)

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str) -> dict[str, Any]:
        return public(find(job_id))

    @app.delete("/api/jobs/{job_id}")
    def remove(job_id: str) -> dict[str, Any]:
        job = find(job_id)
        jobs.remove(job)
        return public(job)

    @app.get("/api/jobs/{job_id}/input")
    def source(job_id: str) -> FileResponse:
        job = find(job_id)
        return FileResponse(job.input, filename=download_name(job, result=False),
                            content_disposition_type="inline")

    @app.get("/api/jobs/{job_id}/result")
    def result(job_id: str, download: bool = False) -> FileResponse:
        job = find(job_id)
        if job.status != "done":
            raise HTTPException(409, f"job {job_id} is {job.status}, it has no result yet")
        return FileResponse(job.output, filename=download_name(job, result=True),
                            content_disposition_type="attachment" if download else "inline")

    return app
