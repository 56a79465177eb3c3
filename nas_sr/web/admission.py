"""Whether an upload may join: room in the queue and in the store.

Uploads arrive concurrently (each request on a thread of its own), so the check and the
reservation are one step under a lock: a place in the queue and the upload's bytes are
held before the upload is written, and let go once it is queued or refused. Checked apart,
50 simultaneous uploads all passed a check made before any of them was stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import HTTPException

from nas_sr.web.jobs import Job, JobQueue
from nas_sr.web.uploads import Limits


def folder_bytes(folder: Path) -> int:
    """Bytes of the files below ``folder`` (0 if it is missing); jobs may vanish meanwhile."""
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            continue
    return total


class Admission:
    """Queue places and store bytes, reserved atomically for uploads being received."""

    def __init__(self, jobs: JobQueue, limits: Limits, keep_s: float):
        self.jobs, self.limits, self.keep_s = jobs, limits, keep_s
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}  # job id -> bytes held for its upload

    @contextmanager
    def reserve(self, job_id: str, size: int) -> Iterator[Callable[[Job], None]]:
        """A queue place and ``size`` bytes held for ``job_id`` while the with-block stores
        its upload in ``store/job_id``; it yields ``enqueue(job)``, which queues the job in
        the reservation's place. 503 when the queue is full, 507 when the store is."""
        with self._lock:
            self._check(size)
            self._pending[job_id] = size

        def enqueue(job: Job) -> None:
            with self._lock:  # from reserved to queued in one step: never counted twice
                self.jobs.submit(job)
                del self._pending[job_id]

        try:
            yield enqueue
        finally:  # refused: its folder is removed, its reservation let go
            with self._lock:
                self._pending.pop(job_id, None)

    def held(self) -> int:
        """Bytes the jobs' records own in the store, plus the uploads being received (their
        reservations); anything else in the folder is no job's and is swept at start."""
        return sum(self._pending.values()) + sum(
            folder_bytes(j.folder) for j in self.jobs.jobs())

    def _check(self, size: int) -> None:
        waiting = sum(j.status == "queued" for j in self.jobs.jobs()) + len(self._pending)
        if waiting >= self.limits.queued:
            raise HTTPException(503, f"{self.limits.queued} jobs are waiting already; try "
                                     "again once one has started")
        if (held := self.held()) + size > self.limits.stored_bytes:
            raise HTTPException(507, f"the server's store is full ({held / 2**20:,.0f} MB of "
                                     f"uploads and results); try again once finished jobs "
                                     f"are deleted (after {self.keep_s / 60:.0f} minutes, or "
                                     f"from the list)")
