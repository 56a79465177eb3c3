"""The jobs of ``nas-sr serve`` outlive the server: a crash (kill -9), SIGTERM and a
restart, against real ``nas-sr serve`` processes; the job store's records, orphans and a
store file that is not one, in process."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import make_cfg, write_clip, write_image
from nas_sr.data.video import probe
from nas_sr.deploy.media import Settings
from nas_sr.errors import ConfigError
from nas_sr.jobs import serve
from nas_sr.web.app import create_app
from nas_sr.web.catalog import load_catalog
from nas_sr.web.guard import served_hosts
from nas_sr.web.jobs import INTERRUPTED, Job, JobQueue
from nas_sr.web.store import DB_NAME, JobStore
from nas_sr.web.uploads import Limits

ROOT = Path(__file__).resolve().parents[1]
NAS_SR = str(Path(sys.executable).with_name("nas-sr"))
TEMP = "*.nas-sr.tmp"  # the temporary name a result is written under (checkpoint.atomic_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(tmp_path: Path, store: Path, name: str):
    """``nas-sr serve`` on a free port with ``store``; yields (process, base URL). The
    process is the test's to stop; one still alive at the end is terminated."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [NAS_SR, "serve", f"port={port}", "threads=1", f"models_dir={ROOT / 'nas_sr/models'}",
             "model=cell_x2", f"store={store}", "video.preset=ultrafast",
             f"hydra.run.dir={tmp_path / name}"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            try:
                httpx.get(f"{url}/api/config")
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def upload(url: str, path: Path) -> str:
    r = httpx.post(f"{url}/api/jobs", files={"file": (path.name, path.read_bytes())},
                   data={"model": "cell_x2"}, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def job(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/api/jobs/{job_id}").json()


def wait_for(check, timeout: float = 240, what: str = "") -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_done(url: str, job_id: str) -> dict:
    wait_for(lambda: job(url, job_id)["status"] not in ("queued", "running"), what=job_id)
    return job(url, job_id)


def running_with_a_temp_file(url: str, store: Path, job_id: str) -> bool:
    """The job is running, one frame done, its result's temporary file on disk."""
    state = job(url, job_id)
    assert state["status"] in ("queued", "running"), state
    return state["progress"] > 0 and any((store / job_id).glob(f".{TEMP}"))


def records(store: Path) -> dict[str, sqlite3.Row]:
    """The store's records by id, read once no server holds the file."""
    with closing(sqlite3.connect(store / DB_NAME)) as db:  # open, it would keep serve out
        db.row_factory = sqlite3.Row
        return {r["id"]: r for r in db.execute("SELECT * FROM jobs ORDER BY seq")}


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Photos that take a moment and a clip that takes several seconds (16 frames of
    160x120 through cell_x2 on one thread)."""
    photos = {n: write_image(tmp_path / "in" / f"{n}.png", (40, 56), seed=i)
              for i, n in enumerate("acd")}
    clip = write_clip(tmp_path / "in" / "b.mp4", frames=16, size=(120, 160), audio=None)
    return {**photos, "b": clip}


def test_a_killed_server_runs_its_queue_after_a_restart_and_keeps_finished_jobs(
        tmp_path, inputs):
    store = tmp_path / "store"
    with serving(tmp_path, store, "first") as (proc, url):
        a = upload(url, inputs["a"])
        assert wait_done(url, a)["status"] == "done"
        result_a = httpx.get(f"{url}/api/jobs/{a}/result").content
        b, c, d = (upload(url, inputs[n]) for n in "bcd")
        wait_for(lambda: running_with_a_temp_file(url, store, b), what="b to run")
        proc.kill()  # kill -9: no cleanup of any kind
        proc.wait(30)
    assert list((store / b).glob(f".{TEMP}")), "the crash left no temporary file to clear"
    orphan = store / "0123456789abcdef"  # an upload cut off before its record was written
    orphan.mkdir()
    (orphan / "upload").write_bytes(b"x" * 4096)

    with serving(tmp_path, store, "second") as (proc, url):
        assert not orphan.exists()
        listed = httpx.get(f"{url}/api/jobs").json()
        assert [j["id"] for j in listed] == [a, b, c, d]
        assert listed[0]["status"] == "done"
        assert httpx.get(f"{url}/api/jobs/{a}/result").content == result_a
        assert [wait_done(url, j)["status"] for j in (b, c, d)] == ["done"] * 3
        clip = store / b / "result.mp4"
        assert (probe(clip).frames, probe(clip).width) == (16, 320)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert not list(store.rglob(TEMP))
    rows = records(store)
    assert [rows[j]["started"] < rows[k]["started"] for j, k in ((b, c), (c, d))] == [True] * 2
    assert [rows[j]["runs"] for j in (a, b, c, d)] == [1, 2, 1, 1]  # b from the start again


def test_sigterm_keeps_the_queue_and_leaves_no_temporary_file(tmp_path, inputs):
    store = tmp_path / "store"
    with serving(tmp_path, store, "first") as (proc, url):
        b, c = upload(url, inputs["b"]), upload(url, inputs["c"])
        wait_for(lambda: running_with_a_temp_file(url, store, b), what="b to run")
        proc.send_signal(signal.SIGTERM)
        started = time.time()
        proc.wait(60)
        assert time.time() - started < 30  # stopped at its next frame, not at its end
    rows = records(store)
    assert [(rows[j]["state"], rows[j]["runs"], rows[j]["done"]) for j in (b, c)] == \
        [("queued", 0, 0), ("queued", 0, 0)]
    assert sorted(p.name for p in (store / b).iterdir()) == ["input.mp4"]  # no result, no temp
    with serving(tmp_path, store, "second") as (proc, url):
        assert [wait_done(url, j)["status"] for j in (b, c)] == ["done", "done"]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT / "nas_sr" / "models", "cell_x2", Settings().device)


def app_for(catalog, store: Path, limits: Limits | None = None):
    return create_app(catalog, store, Settings(), limits or Limits(),
                      hosts=served_hosts("127.0.0.1", 8000))


def local(app) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1:8000")


def submit(client: TestClient, photo: Path) -> int:
    return client.post("/api/jobs", files={"file": (photo.name, photo.read_bytes())},
                       data={"model": "bicubic_x2"}).status_code


def test_an_orphan_is_swept_at_start_and_the_store_limit_counts_only_records(
        catalog, tmp_path, inputs):
    store, photo = tmp_path / "store", inputs["a"]
    with local(app_for(catalog, store)) as client:  # one finished job, then stopped
        assert submit(client, photo) == 202
        wait_for(lambda: client.get("/api/jobs").json()[0]["status"] == "done", what="a")
    kept = next(p for p in store.iterdir() if p.is_dir())
    orphan = store / "fedcba9876543210"
    orphan.mkdir()
    (orphan / "result.png").write_bytes(b"x" * 2**20)  # a megabyte of nobody's
    (store / "stray.txt").write_text("left by hand")
    size = sum(p.stat().st_size for p in kept.iterdir())
    limits = Limits(stored_bytes=size + 2 * photo.stat().st_size - 1)  # room for one upload
    client = local(app_for(catalog, store, limits))  # not entered: no worker runs the jobs
    assert [p.name for p in store.iterdir() if not p.name.startswith(DB_NAME)] == [kept.name]
    (store / "late.bin").write_bytes(b"x" * 2**20)  # not a record's: never counted
    assert submit(client, photo) == 202
    assert submit(client, photo) == 507  # what the records own fills it
    assert [j["status"] for j in client.get("/api/jobs").json()] == ["done", "queued"]


def test_a_store_file_that_is_not_a_job_store_is_refused_in_one_line(catalog, tmp_path, cli):
    store = tmp_path / "store"
    store.mkdir()
    (store / DB_NAME).write_bytes(b"not a database, " * 512)
    error = cli("serve", f"store={store}", f"port={free_port()}", "model=cell_x2",
                f"models_dir={ROOT / 'nas_sr/models'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert error == (f"nas-sr serve: error: {store / DB_NAME}: not a nas-sr serve job store "
                     "(file is not a database); move it aside (its job folders are then "
                     "swept) or give another store=")
    (store / DB_NAME).unlink()
    with closing(sqlite3.connect(store / DB_NAME)) as db:  # a later version's schema
        db.execute("CREATE TABLE jobs (id TEXT)")
        db.execute("PRAGMA user_version = 2")
    with pytest.raises(ConfigError, match=rf"^{store / DB_NAME}: a job store of version 2, "
                                          r"and this nas-sr reads version 1; move it aside"):
        app_for(catalog, store)
    assert (store / DB_NAME).exists()  # refused, not replaced


def test_a_folder_that_is_no_store_or_one_in_use_is_refused(catalog, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ConfigError, match=rf"^store={folder}: the folder holds files but no "
                                          rf"{DB_NAME}, so it is not a serve job store"):
        app_for(catalog, folder)
    assert (folder / "holiday.jpg").exists()  # nothing swept
    with pytest.raises(ConfigError, match=r"^store= names the folder of the jobs"):
        serve.run(make_cfg("serve", "store=null", f"port={free_port()}"), tmp_path)
    first = app_for(catalog, tmp_path / "store")
    with pytest.raises(ConfigError, match=r"jobs.sqlite: in use by another process"):
        app_for(catalog, tmp_path / "store")
    first.state.jobs.store.close()


def make_job(root: Path, i: int) -> Job:
    folder = root / f"{i:016x}"
    folder.mkdir(parents=True)
    (folder / "input.png").write_bytes(b"in")
    return Job(f"{i}.png", "image", "m", 2, folder, folder / "input.png",
               folder / "result.png", (4, 4), id=folder.name, created=time.time() + i)


def test_records_change_before_memory_and_a_restart_reruns_or_fails_an_interrupted_job(
        tmp_path):
    seen = []

    def work(job: Job) -> None:  # the record says running while the job runs
        seen.append(next(r.state for r in q.store.records() if r.id == job.id))
        job.output.write_bytes(b"out")

    q = JobQueue(work, keep_s=60, store=JobStore(tmp_path / DB_NAME))
    q.start()
    jobs = [make_job(tmp_path, i) for i in range(4)]
    for job in jobs:
        q.submit(job)
    wait_for(lambda: all(j.status == "done" for j in jobs), what="the jobs")
    q.stop()
    assert seen == ["running"] * 4
    assert [r.state for r in q.store.records()] == ["done"] * 4
    for job, state, runs in ((jobs[1], "running", 1), (jobs[2], "running", 2),
                             (jobs[3], "queued", 0)):  # as a crash would leave them
        q._change(job, status=state, runs=runs, finished=None)
        (job.folder / ".result.png.x.nas-sr.tmp").write_bytes(b"half")
    q.store.close()

    again = JobQueue(work, keep_s=60, store=JobStore(tmp_path / DB_NAME))
    assert again.restore(tmp_path) == []
    restored = again.jobs()
    assert [j.status for j in restored] == ["done", "queued", "failed", "queued"]
    assert restored[2].error == INTERRUPTED.format(runs=2)
    assert [p.name for p in restored[1].folder.iterdir()] == ["input.png"]  # partial gone
    assert sorted(p.name for p in restored[0].folder.iterdir()) == ["input.png", "result.png"]
    assert [again._waiting.get_nowait().id for _ in range(2)] == [jobs[1].id, jobs[3].id]
    again.store.close()


def test_a_stop_puts_the_running_job_back_in_the_queue_uncounted(tmp_path):
    running = threading.Event()

    def work(job: Job) -> None:
        job.output.with_name(".result.png.y.nas-sr.tmp").write_bytes(b"half")
        running.set()
        while True:
            job.progress(1, 100)
            time.sleep(0.01)

    q = JobQueue(work, keep_s=60, store=JobStore(tmp_path / DB_NAME))
    q.start()
    first, second = make_job(tmp_path, 0), make_job(tmp_path, 1)
    q.submit(first)
    q.submit(second)
    assert running.wait(30)
    q.stop()
    assert [(r.state, r.runs, r.done) for r in q.store.records()] == [("queued", 0, 0)] * 2
    assert (first.status, second.status) == ("queued", "queued")
    assert [p.name for p in first.folder.iterdir()] == ["input.png"]
    q.store.close()
