"""Upscaling jobs and the background queue that runs them, one at a time by default.

The HTTP handlers only validate and enqueue, so the page stays responsive while a worker
thread runs the model (torch and FFmpeg release the GIL). Finished jobs, with their
folders, are removed ``keep_s`` seconds after they end.
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_sr.data.video import encoded_size

log = logging.getLogger(__name__)


def new_id() -> str:
    return secrets.token_hex(8)


class Cancelled(Exception):
    """Raised inside a running job whose user asked to stop it."""


@dataclass
class Job:
    """One upload: where its files live and how far it got."""

    name: str        # the uploaded file's name, for display only (never a path)
    kind: str        # "image" or "video"
    model: str       # a catalog name
    scale: int
    folder: Path
    input: Path
    output: Path
    size: tuple[int, int]  # input width, height
    frames: int | None = None
    notes: list[str] = field(default_factory=list)
    id: str = field(default_factory=new_id)
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 0
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: bool = False

    def progress(self, done: int, total: int) -> None:
        """The worker's progress callback; it is also where a cancel takes effect."""
        if self.cancel:
            raise Cancelled
        self.done, self.total = done, total

    def eta_s(self) -> float | None:
        if self.status != "running" or not self.done or not self.started:
            return None
        return (time.time() - self.started) / self.done * (self.total - self.done)

    def output_size(self) -> tuple[int, int]:
        """The result's width and height: a video's sides are made even, as its encoder
        writes them."""
        w, h = self.size
        if self.kind == "video":
            return encoded_size(w, h, self.scale)
        return w * self.scale, h * self.scale

    def public(self, position: int | None) -> dict[str, Any]:
        """What the page sees (no server paths)."""
        w, h = self.size
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "model": self.model,
            "scale": self.scale, "status": self.status, "position": position,
            "progress": self.done / self.total if self.total else
            (1.0 if self.status == "done" else 0.0),
            "eta_s": self.eta_s(), "error": self.error, "notes": self.notes,
            "frames": self.frames, "input_size": [w, h],
            "output_size": list(self.output_size()),
            "elapsed_s": (self.finished or time.time()) - self.started if self.started else None,
            "input_url": f"/api/jobs/{self.id}/input", "result_url": f"/api/jobs/{self.id}/result",
        }


class JobQueue:
    """Jobs by id, a FIFO of those waiting, ``workers`` threads and a cleaner thread."""

    def __init__(self, work: Callable[[Job], None], keep_s: float, workers: int = 1):
        self.work, self.keep_s, self.workers = work, keep_s, workers
        self._jobs: dict[str, Job] = {}
        self._waiting: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._worker, name=f"upscale-{i}", daemon=True)
                         for i in range(self.workers)]
        self._threads.append(threading.Thread(target=self._cleaner, name="cleaner", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Ends the threads once their current job is done; waiting jobs stay queued."""
        self._stop.set()
        for job in self.jobs():
            job.cancel = job.cancel or job.status == "running"
        for _ in range(self.workers):
            self._waiting.put(None)
        for t in self._threads:
            t.join(timeout=30)

    def submit(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
        self._waiting.put(job)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def position(self, job: Job) -> int | None:
        """1 for the next job to start, None once it has started."""
        if job.status != "queued":
            return None
        queued = [j for j in self.jobs() if j.status == "queued"]
        return queued.index(job) + 1

    def remove(self, job: Job) -> None:
        """Cancels a waiting or running job; forgets a finished one and deletes its files."""
        job.cancel = True
        if job.status == "queued":
            self._finish(job, "cancelled")
        elif job.status != "running":
            with self._lock:
                self._jobs.pop(job.id, None)
            shutil.rmtree(job.folder, ignore_errors=True)

    def sweep(self, now: float | None = None) -> int:
        """Removes jobs that ended more than ``keep_s`` ago; how many."""
        now = time.time() if now is None else now
        old = [j for j in self.jobs() if j.finished and now - j.finished > self.keep_s]
        for job in old:
            self.remove(job)
        return len(old)

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        job.status, job.error, job.finished = status, error, time.time()

    def _worker(self) -> None:
        while (job := self._waiting.get()) is not None:
            if job.status != "queued":  # cancelled while waiting
                continue
            job.status, job.started = "running", time.time()
            try:
                self.work(job)
            except Cancelled:
                self._finish(job, "cancelled")
            except ValueError as e:  # the toolkit's user errors, naming files as the user does
                message = str(e).replace(str(job.input), job.name)
                self._finish(job, "failed", message.replace(str(job.output), "the result"))
            except Exception as e:  # noqa: BLE001 (a bug must not kill the worker)
                log.exception("job %s failed", job.id)
                self._finish(job, "failed", f"internal error: {type(e).__name__}: {e}")
            else:
                self._finish(job, "done")

    def _cleaner(self) -> None:
        while not self._stop.wait(min(60.0, max(self.keep_s / 4, 0.05))):
            self.sweep()
