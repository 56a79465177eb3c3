"""Upscaling jobs and the background queue that runs them, one at a time by default.

The HTTP handlers only validate and enqueue, so the page stays responsive while a worker
thread runs the model (torch and FFmpeg release the GIL). Finished jobs, with their
folders, are removed ``keep_s`` seconds after they end. Every state change goes to the
job store (``store.JobStore``) before it takes effect here, so a restart finds the queue.
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nas_sr.data.video import encoded_size
from nas_sr.web.store import JobStore, Record, sweep_orphans

log = logging.getLogger(__name__)
MAX_RUNS = 2  # a job cut off by a crash this often is failed, not run again: it may be the cause
INTERRUPTED = ("interrupted by a restart of the server while it ran, {runs} times; upload "
               "it again to retry")


def new_id() -> str:
    return secrets.token_hex(8)


class Cancelled(Exception):
    """Raised inside a running job whose user asked to stop it, or whose server stops."""


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
    runs: int = 0  # times started; one cut off by a clean stop is not counted
    cancel: bool = False  # the user asked to stop it
    halt: bool = False  # the server is stopping: back to the queue for the next start
    on_progress: Callable[[Job], None] | None = field(default=None, repr=False, compare=False)

    def progress(self, done: int, total: int) -> None:
        """The worker's progress callback; it is also where a cancel takes effect."""
        if self.cancel or self.halt:
            raise Cancelled
        self.done, self.total = done, total
        if self.on_progress:
            self.on_progress(self)

    def record(self) -> Record:
        """The job as the store keeps it (file names relative to its folder)."""
        settings = {"name": self.name, "model": self.model, "scale": self.scale,
                    "size": list(self.size), "frames": self.frames, "notes": self.notes}
        return Record(self.id, self.kind, self.input.name, self.output.name, settings,
                      self.status, self.done, self.total, self.runs, self.error,
                      self.created, self.started, self.finished)

    @classmethod
    def from_record(cls, r: Record, root: Path) -> Job:
        s, folder = r.settings, root / r.id
        return cls(s["name"], r.kind, s["model"], s["scale"], folder, folder / r.input,
                   folder / r.result, tuple(s["size"]), s["frames"], s["notes"], id=r.id,
                   status=r.state, done=r.done, total=r.total, error=r.error,
                   created=r.created, started=r.started, finished=r.finished, runs=r.runs)

    def tidy(self) -> None:
        """Removes what the job's folder holds besides its input and, once done, its result:
        a partial result or a temporary file left by a crash."""
        keep = {self.input.name} | ({self.output.name} if self.status == "done" else set())
        for path in self.folder.iterdir() if self.folder.is_dir() else []:
            if path.name in keep:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

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
    """Jobs by id, a FIFO of those waiting, ``workers`` threads and a cleaner thread; their
    records in ``store`` (in memory when none is given)."""

    def __init__(self, work: Callable[[Job], None], keep_s: float, workers: int = 1,
                 store: JobStore | None = None):
        self.work, self.keep_s, self.workers = work, keep_s, workers
        self.store = store or JobStore()
        self._jobs: dict[str, Job] = {}
        self._waiting: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved: dict[str, float] = {}  # job id -> when its progress was last written

    def restore(self, root: Path) -> list[str]:
        """The jobs recorded in the store, their job folders under ``root``: queued ones
        (and one cut off while running, from the start) queued again in upload order,
        finished ones listed; what no record owns in ``root`` is swept. The names swept."""
        for record in self.store.records():
            job = Job.from_record(record, root)
            if job.status == "running" and job.runs >= MAX_RUNS:
                self._change(job, status="failed", finished=time.time(),
                             error=INTERRUPTED.format(runs=job.runs))
            elif job.status == "running":
                self._change(job, status="queued", started=None, done=0, total=0)
            job.tidy()
            with self._lock:
                self._jobs[job.id] = job
            if job.status == "queued":
                self._waiting.put(job)
        root.mkdir(parents=True, exist_ok=True)
        return sweep_orphans(root, set(self._jobs))

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._worker, name=f"upscale-{i}", daemon=True)
                         for i in range(self.workers)]
        self._threads.append(threading.Thread(target=self._cleaner, name="cleaner", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stops the running jobs at their next progress step (back to queued, their
        temporary files removed) and ends the threads; waiting jobs stay queued."""
        self._stop.set()
        for job in self.jobs():
            job.halt = job.status == "running"
        for _ in range(self.workers):
            self._waiting.put(None)
        for t in self._threads:
            t.join(timeout=30)

    def submit(self, job: Job) -> None:
        self.store.add(job.record())
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
        """Cancels a waiting or running job; forgets a finished one and deletes its files
        (its record first: a crash in between leaves an orphan folder, swept at start)."""
        job.cancel = True
        if job.status == "queued":
            self._finish(job, "cancelled")
        elif job.status != "running":
            self.store.delete(job.id)
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

    def _change(self, job: Job, **changes: Any) -> None:
        """``changes`` to ``job``: written to the store, then made in memory."""
        self.store.save(replace(job, **changes).record())
        for key, value in changes.items():
            setattr(job, key, value)

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        self._change(job, status=status, error=error, finished=time.time())

    def _save_progress(self, job: Job) -> None:
        """Progress is written at most once a second (it is no state change)."""
        if time.monotonic() - self._saved.get(job.id, 0.0) >= 1.0:
            self._saved[job.id] = time.monotonic()
            self.store.save(job.record())

    def _worker(self) -> None:
        while (job := self._waiting.get()) is not None and not self._stop.is_set():
            if job.status != "queued":  # cancelled while waiting
                continue
            self._change(job, status="running", started=time.time(), runs=job.runs + 1,
                         on_progress=self._save_progress)
            job.halt = self._stop.is_set()  # stop() came between the check and the start
            self._run(job)
            self._saved.pop(job.id, None)

    def _run(self, job: Job) -> None:
        try:
            self.work(job)
        except Cancelled:
            if job.cancel:
                self._finish(job, "cancelled")
            else:  # the server stops: the next start runs it again, this run not counted
                self._change(job, status="queued", started=None, done=0, total=0,
                             runs=job.runs - 1, halt=False)
                job.tidy()
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
