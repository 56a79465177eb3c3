"""The web page's HTTP API (FastAPI's TestClient): uploads, the queue, limits and every bad
input the page must explain while the server keeps serving."""

import errno
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from test_video import resizing_clip, understated_clip

from conftest import make_cfg, write_clip, write_image
from nas_sr.cli import run_job
from nas_sr.data.video import Encoding, probe
from nas_sr.deploy.media import Settings
from nas_sr.errors import ConfigError
from nas_sr.jobs import serve
from nas_sr.jobs.serve import build
from nas_sr.web.app import create_app
from nas_sr.web.catalog import load_catalog
from nas_sr.web.guard import served_hosts
from nas_sr.web.jobs import Job, JobQueue
from nas_sr.web.uploads import Limits

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(encoding=Encoding(preset="ultrafast"))
HOSTS = served_hosts("127.0.0.1", 8000)
BASE = "http://127.0.0.1:8000"  # what a browser on this machine sends as Host and Origin


def local_client(app) -> TestClient:
    return TestClient(app, base_url=BASE)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT / "nas_sr" / "models", None, Settings().device)


@pytest.fixture(scope="module")
def client(catalog, tmp_path_factory):
    """The app with tight limits: 64 KB uploads, 100x100 pixels, 20 frames."""
    app = create_app(catalog, tmp_path_factory.mktemp("serve"), SETTINGS,
                     Limits(upload_bytes=64 * 2**10, pixels=100 * 100, frames=20), hosts=HOSTS)
    with local_client(app) as c:
        yield c


def png_bytes(img: np.ndarray | Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, "PNG", **save)
    return buf.getvalue()


# an EPS file: Pillow reads its header, and would run Ghostscript on it to decode it
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto showpage\n"


def gif_bytes(frames: int) -> bytes:
    images = [Image.new("RGB", (16, 16), (i * 80, 0, 0)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:])
    return buf.getvalue()


def tiff_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "TIFF")
    return buf.getvalue()


def small_photo(tmp_path: Path, size=(40, 56)) -> bytes:
    return write_image(tmp_path / "p.png", size).read_bytes()


def job_folders(store: Path) -> list[Path]:
    """The job folders of a store (beside them: the records' jobs.sqlite)."""
    return [p for p in store.iterdir() if p.is_dir()]


def submit(client, name: str, data: bytes, model: str | None = "cell_x2"):
    return client.post("/api/jobs", files={"file": (name, data)},
                       data={"model": model} if model else {})


def wait_done(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")


def test_page_and_config(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    config = client.get("/api/config").json()
    names = [m["name"] for m in config["models"]]
    assert names[0] == "cell_x2" and {"bicubic_x2", "bicubic_x3", "bicubic_x4"} <= set(names)
    assert config["limits"]["text"] == ("files up to 64 KB, images and video frames up to "
                                        "10,000 pixels, videos up to 20 frames")


def test_an_image_is_upscaled_and_downloaded(client, tmp_path):
    r = submit(client, "My Photo.png", small_photo(tmp_path))
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["id"])
    assert job["status"] == "done" and job["progress"] == 1.0
    assert (job["input_size"], job["output_size"]) == ([56, 40], [112, 80])
    res = client.get(job["result_url"], params={"download": True})
    assert res.headers["content-disposition"] == 'attachment; filename="My_Photo_x2.png"'
    assert Image.open(io.BytesIO(res.content)).size == (112, 80)
    assert client.get(job["input_url"]).content == small_photo(tmp_path)
    assert job["id"] in [j["id"] for j in client.get("/api/jobs").json()]  # a reload finds it


def test_a_video_is_upscaled_with_its_audio(client, tmp_path):
    clip = write_clip(tmp_path / "clip.mkv", frames=6, audio="aac").read_bytes()
    r = submit(client, "clip.mkv", clip, model="bicubic_x3")
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["id"])
    assert job["status"] == "done" and (job["kind"], job["frames"]) == ("video", 6)
    res = client.get(job["result_url"], params={"download": True})
    assert 'filename="clip_x3.mp4"' in res.headers["content-disposition"]
    (tmp_path / "out.mp4").write_bytes(res.content)
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frames, info.audio) == (192, 144, 6, "aac")


def test_the_size_reported_for_a_video_is_the_written_files(client, tmp_path):
    clip = write_clip(tmp_path / "odd.mkv", frames=2, size=(47, 63), audio=None, codec="ffv1",
                      pix_fmt="yuv444p")  # 63x47: x3 is 189x141, which 4:2:0 cannot hold
    r = submit(client, "odd.mkv", clip.read_bytes(), model="bicubic_x3")
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["id"])
    assert job["status"] == "done" and job["input_size"] == [63, 47]
    (tmp_path / "out.mp4").write_bytes(client.get(job["result_url"]).content)
    written = probe(tmp_path / "out.mp4")
    assert job["output_size"] == [written.width, written.height] == [188, 140]
    assert r.json()["output_size"] == [188, 140]  # as soon as it is queued


@pytest.mark.parametrize(("case", "status", "message"), [
    ("too many bytes", 413, "too large for this server (files up to 64 KB"),
    ("too many pixels", 413, "120x100 is 12,000 pixels, more than this server takes"),
    ("too many frames", 413, "24 frames is more than this server takes"),
    ("text", 415, "neither an image (PNG, JPEG, BMP, TIFF, WebP) nor a video"),
    ("truncated png", 422, "a damaged PNG image: upload.bin: cannot be read as an image"),
    ("truncated video", 415, "neither an image"),
    ("postscript", 415, "neither an image"),  # never handed to Ghostscript
    ("float tiff", 422, "upload.bin: floating-point images are not supported"),
    ("transparent", 422, "has transparent pixels; the models upscale RGB only"),
    ("animation", 422, "upload.bin: holds 3 frames (an animation or a multi-page file)"),
    ("audio only", 422, "upload.bin: holds only audio"),
    ("unknown model", 422, "unknown model 'nope'; choose one of cell_x2, "),
])
def test_each_bad_upload_gets_a_clear_message_and_the_server_keeps_serving(
        client, tmp_path, case, status, message):
    photo = small_photo(tmp_path)
    rgba = np.dstack([np.full((30, 30, 3), 90, np.uint8), np.full((30, 30), 128, np.uint8)])
    clip = write_clip(tmp_path / "c.mp4", frames=8).read_bytes()
    data, model = {
        "too many bytes": (np.random.default_rng(0).bytes(65 * 2**10), "cell_x2"),
        "too many pixels": (png_bytes(np.zeros((100, 120, 3), np.uint8)), "cell_x2"),
        "too many frames": (write_clip(tmp_path / "long.mp4", frames=24).read_bytes(), "cell_x2"),
        "text": (b"hello, not a picture\n" * 20, "cell_x2"),
        "truncated png": (photo[: len(photo) // 2], "cell_x2"),
        "truncated video": (clip[: len(clip) // 3], "cell_x2"),
        "postscript": (EPS, "cell_x2"),
        "float tiff": (tiff_bytes(np.full((8, 8), 0.5, np.float32)), "cell_x2"),
        "transparent": (png_bytes(rgba), "cell_x2"),
        "animation": (gif_bytes(3), "cell_x2"),
        "audio only": (write_clip(tmp_path / "a.m4a", video=False).read_bytes(), "cell_x2"),
        "unknown model": (photo, "nope"),
    }[case]
    before = len(client.get("/api/jobs").json())
    r = submit(client, "upload.bin", data, model)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert case.startswith("truncated") or "damaged" not in r.json()["detail"]
    assert "/jobs/" not in r.json()["detail"]  # no server path in a message
    assert len(client.get("/api/jobs").json()) == before  # nothing queued
    assert submit(client, "ok.png", photo).status_code == 202  # and it still serves


def test_a_video_is_held_to_the_frame_and_pixel_limits_as_it_decodes(client, tmp_path):
    """Headers are the uploader's to write: 50 frames that say 0.1 s, a clip whose fourth
    frame is larger than its first, and one whose frame size changes."""
    cases = ((understated_clip(tmp_path / "liar.mkv", frames=50),
              "liar.mkv: holds more than 20 frames (its header suggests 1), more than this "
              "server takes; cut it shorter", 20),
             (resizing_clip(tmp_path / "big.mkv", [(64, 48)] * 3 + [(400, 300)]),
              "big.mkv: frame 4 is 400x300, 120,000 pixels, more than the 10,000 this server "
              "takes per frame", 3),
             (resizing_clip(tmp_path / "small.mkv", [(64, 48)] * 3 + [(32, 24)]),
              "small.mkv: frame 4 is 32x24 but the video starts at 64x48; a video whose frame "
              "size changes cannot be upscaled (re-encode it at one size)", 3))
    for clip, message, upscaled in cases:
        r = submit(client, clip.name, clip.read_bytes(), model="bicubic_x2")
        assert r.status_code == 202, r.text  # its header passes the upload's check
        job = wait_done(client, r.json()["id"])
        assert (job["status"], job["error"]) == ("failed", message)
        stored = client.app.state.jobs.get(job["id"])  # no frame past the limit was upscaled
        # (frames already handed on when decoding stops are dropped, not encoded)
        assert stored.done <= upscaled and not stored.output.exists()


def test_uploads_beyond_the_queue_limit_are_turned_away_until_one_leaves(catalog, tmp_path):
    app = create_app(catalog, tmp_path / "serve", SETTINGS, Limits(queued=2), hosts=HOSTS)
    client = local_client(app)  # not entered: no worker starts, so every job stays queued
    photo = small_photo(tmp_path)
    first, second = (submit(client, f"{n}.png", photo).json() for n in "ab")
    assert [first["status"], second["status"]] == ["queued", "queued"]
    r = submit(client, "c.png", photo)
    assert r.status_code == 503 and "2 jobs are waiting already" in r.json()["detail"]
    assert len(client.get("/api/jobs").json()) == 2  # nothing stored for it
    assert len(job_folders(tmp_path / "serve")) == 2
    client.delete(f"/api/jobs/{first['id']}")  # cancelled: no longer waiting
    assert submit(client, "c.png", photo).status_code == 202


def test_uploads_beyond_the_storage_limit_are_turned_away_until_jobs_go(catalog, tmp_path):
    photo = small_photo(tmp_path)
    app = create_app(catalog, tmp_path / "serve", SETTINGS,
                     Limits(stored_bytes=2 * len(photo) + 1), hosts=HOSTS)
    client = local_client(app)  # no worker: the stored uploads stay as they are
    first = submit(client, "a.png", photo).json()
    assert submit(client, "b.png", photo).status_code == 202  # 1 byte under the limit stored
    r = submit(client, "c.png", photo)
    assert r.status_code == 507 and "the server's store is full" in r.json()["detail"]
    assert "/serve" not in r.json()["detail"]  # no server path in a message
    assert len(job_folders(tmp_path / "serve")) == 2  # nothing stored for it
    client.delete(f"/api/jobs/{first['id']}")  # cancelled: its files are kept a while
    assert submit(client, "c.png", photo).status_code == 507
    client.delete(f"/api/jobs/{first['id']}")  # ended: forgotten, its files deleted
    assert submit(client, "c.png", photo).status_code == 202


def test_changes_sent_from_another_site_are_refused(client, tmp_path):
    photo = small_photo(tmp_path)
    before = len(client.get("/api/jobs").json())
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                    {"origin": "http://127.0.0.1:9999"},  # another port: another origin
                    {"referer": "http://evil.example/attack.html"}):
        r = client.post("/api/jobs", files={"file": ("a.png", photo)}, headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert r.json()["detail"].startswith("refused a request from another site")
    assert len(client.get("/api/jobs").json()) == before  # nothing queued
    own = client.post("/api/jobs", files={"file": ("a.png", photo)}, headers={"origin": BASE})
    assert own.status_code == 202
    job_id = own.json()["id"]
    assert client.delete(f"/api/jobs/{job_id}",
                         headers={"origin": "http://evil.example"}).status_code == 403
    assert client.get(f"/api/jobs/{job_id}").status_code == 200  # still there
    referred = client.post("/api/jobs", files={"file": ("b.png", photo)},
                           headers={"referer": f"{BASE}/"})
    assert referred.status_code == 202
    assert submit(client, "c.png", photo).status_code == 202  # neither header: curl
    assert client.delete(f"/api/jobs/{job_id}", headers={"origin": BASE}).status_code == 200


def test_requests_for_a_host_name_the_server_does_not_serve_are_refused(client):
    for host in ("evil.example:8000", "evil.example", "127.0.0.1:9999", "localhost.evil:8000"):
        r = client.get("/api/jobs", headers={"host": host})  # DNS rebinding: names the attacker's
        assert r.status_code == 400, host
        assert r.json()["detail"] == (f"this server does not answer to the host name "
                                      f"{host!r}; open it as http://127.0.0.1:8000/")
    for host in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "[::1]:8000"):
        assert client.get("/api/jobs", headers={"host": host}).status_code == 200, host


def test_the_names_served_follow_the_bound_address_and_the_config(tmp_path):
    local = {"localhost:8000", "127.0.0.1:8000", "[::1]:8000"}
    assert served_hosts("0.0.0.0", 8000) == local  # every interface: no name of its own
    assert served_hosts("192.168.1.5", 8000) == local | {"192.168.1.5:8000"}
    assert served_hosts("fd00::5", 8000) == local | {"[fd00::5]:8000"}
    assert served_hosts("127.0.0.1", 8000, ["MyBox.lan", "proxy:443"]) == \
        local | {"mybox.lan:8000", "proxy:443"}
    assert "localhost" in served_hosts("127.0.0.1", 80)  # port 80 goes unnamed
    app = build(make_cfg("serve", "port=8123", "allowed_hosts=[mybox.lan]",
                         f"store={tmp_path / 'a'}"))
    with TestClient(app, base_url="http://mybox.lan:8123") as c:
        assert c.get("/api/config").status_code == 200
        assert c.get("/api/config", headers={"host": "localhost:8123"}).status_code == 200
        assert c.get("/api/config", headers={"host": "other.lan:8123"}).status_code == 400
    one = build(make_cfg("serve", "port=8123", "allowed_hosts=mybox.lan",  # a name
                         f"store={tmp_path / 'b'}"))
    with TestClient(one, base_url="http://mybox.lan:8123") as c:
        assert c.get("/api/config").status_code == 200


@contextmanager
def live_server(catalog, root: Path, limits: Limits):
    """The app under uvicorn on a free port, without its workers (lifespan off), so every
    job an upload queues stays queued; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(catalog, root, SETTINGS, limits, hosts=served_hosts("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def upload_all_at_once(url: str, data: bytes, count: int) -> list[int]:
    """``count`` uploads of ``data``, each on a thread of its own, released together."""
    start, codes = threading.Barrier(count), []

    def one(i: int) -> None:
        start.wait()
        codes.append(httpx.post(f"{url}/api/jobs", files={"file": (f"{i}.png", data)},
                                data={"model": "bicubic_x2"}, timeout=120).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def noisy_photo(size: int = 256) -> bytes:
    """A PNG that takes a moment to check (noise does not compress)."""
    return png_bytes(np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8))


def test_concurrent_uploads_never_pass_the_queue_limit(catalog, tmp_path):
    with live_server(catalog, tmp_path / "serve", Limits(queued=20)) as url:
        codes = upload_all_at_once(url, noisy_photo(), 50)
        queued = [j for j in httpx.get(f"{url}/api/jobs").json() if j["status"] == "queued"]
    assert sorted(set(codes)) == [202, 503] and codes.count(202) == 20
    assert len(queued) == 20 == len(job_folders(tmp_path / "serve"))


def test_concurrent_uploads_never_pass_the_store_limit(catalog, tmp_path):
    photo = noisy_photo()
    limit = 3 * len(photo) + len(photo) // 2  # room for three
    with live_server(catalog, tmp_path / "serve", Limits(stored_bytes=limit)) as url:
        codes = upload_all_at_once(url, photo, 30)
    stored = sum(p.stat().st_size for d in job_folders(tmp_path / "serve") for p in d.rglob("*"))
    assert sorted(set(codes)) == [202, 507] and codes.count(202) == 3
    assert stored == 3 * len(photo) <= limit


def test_an_upload_without_content_length_is_cut_off_at_the_limit(client):
    def body():  # chunked: the server cannot know the size in advance
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(100):
            yield b"x" * 2**10
        yield b"\r\n--b--\r\n"

    r = client.post("/api/jobs", content=body(),
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def rgb48_png(img: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    h, w, _ = img.shape
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in img)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_images_that_are_taken_with_a_note(client, tmp_path):
    rgba = np.dstack([np.full((20, 30, 3), 90, np.uint8), np.full((20, 30), 255, np.uint8)])
    grey16 = Image.fromarray(np.full((20, 30), 40000, np.uint16))
    rgb16 = np.full((20, 30, 3), 40000, np.uint16)
    for data, note in ((png_bytes(rgba), "opaque alpha channel dropped"),
                       (png_bytes(grey16), "16-bit samples reduced to 8 bits"),
                       (rgb48_png(rgb16), "16-bit samples reduced to 8 bits")):
        r = submit(client, "x.png", data, "bicubic_x2")
        assert r.status_code == 202, r.text
        assert any(n.startswith(note) for n in r.json()["notes"]), r.json()["notes"]
        job = wait_done(client, r.json()["id"])
        assert job["status"] == "done" and job["output_size"] == [60, 40]
        result = np.asarray(Image.open(io.BytesIO(client.get(job["result_url"]).content)))
        assert abs(int(result.mean()) - (90 if "alpha" in note else 155)) <= 1


def test_an_uploaded_name_never_becomes_a_path(client, tmp_path, catalog):
    r = submit(client, "../../../../etc/evil.png", small_photo(tmp_path))
    job = r.json()
    assert job["name"] == "evil.png"
    stored = client.app.state.jobs.get(job["id"])
    assert stored.input.name == "input.png" and stored.folder.name == job["id"]
    assert not Path("/etc/evil.png").exists()
    done = wait_done(client, job["id"])
    res = client.get(done["result_url"], params={"download": True})
    assert 'filename="evil_x2.png"' in res.headers["content-disposition"]


def test_serve_config_builds_the_app_and_refuses_nonsense(tmp_path):
    app = build(make_cfg("serve", "limits.upload_mb=1", "keep_minutes=5",
                       f"store={tmp_path / 'store'}"))
    with local_client(app) as c:
        config = c.get("/api/config").json()
    assert config["keep_minutes"] == 5
    assert config["models"][0]["name"] == "searched_x2"  # the config's default, by name
    with pytest.raises(ConfigError, match=r"workers=0: must be a whole number >= 1"):
        run_job("serve", make_cfg("serve", "workers=0"), tmp_path)  # before any model loads
    with pytest.raises(ConfigError, match=r"limits.stored_gb=0: must be > 0"):
        run_job("serve", make_cfg("serve", "limits.stored_gb=0"), tmp_path)


def test_a_busy_port_is_named_before_the_address_is_printed(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"^port={port}: cannot listen on 127.0.0.1:{port} "
                                              rf"\(Address already in use\); pick a free port="):
            serve.run(make_cfg("serve", f"port={port}"), tmp_path)
    assert "open http" not in capsys.readouterr().out
    serve.check_port("127.0.0.1", port)  # free again


def test_a_request_the_api_cannot_parse_gets_one_sentence(client):
    r = client.post("/api/jobs", data={"model": "cell_x2"})  # the file field forgotten
    assert r.status_code == 422
    assert r.json()["detail"] == ("the upload has no 'file' field: send the photo or video as "
                                  "multipart form data, e.g. curl -F file=@photo.jpg "
                                  "http://127.0.0.1:8000/api/jobs")
    r = client.get("/api/jobs/x/result", params={"download": "maybe"})
    assert r.status_code == 422 and r.json()["detail"].startswith("download: Input should be")


def test_serving_every_interface_prints_an_address_that_opens_and_one_warning(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "out.txt"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("nas-sr")), "serve", "host=0.0.0.0",
             f"port={port}", "threads=1", f"models_dir={ROOT / 'nas_sr' / 'models'}"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env={**os.environ,
                                                                    "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while "open http" not in log.read_text() and proc.poll() is None \
                and time.time() < deadline:
            time.sleep(0.2)
        printed = log.read_text()
        url = f"http://127.0.0.1:{port}/"
        assert f"nas-sr serve: open {url} in a browser" in printed, printed
        warnings = [line for line in printed.splitlines() if line.startswith("warning:")]
        assert warnings == ["warning: host=0.0.0.0 makes the page reachable from the network: "
                            "anyone who can reach this machine can upload files and download "
                            "the results (host=127.0.0.1 keeps it to this one)"]
        while time.time() < deadline:  # uvicorn listens a moment after the line
            try:
                page = httpx.get(url)
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert page.status_code == 200 and 'id="drop"' in page.text
    finally:
        proc.terminate()
        proc.wait(30)


def test_model_names_a_catalog_entry_or_adds_a_file(tmp_path, caplog):
    models = tmp_path / "models"
    for name in ("a_x2", "b_x3"):
        (models / name).mkdir(parents=True)
        shutil.copy(ROOT / "nas_sr/models/cell_x2/model.pt2", models / name / "model.pt2")
    device = Settings().device
    assert list(load_catalog(models, "b_x3", device))[:2] == ["b_x3", "a_x2"]
    assert list(load_catalog(models, None, device))[:2] == ["a_x2", "b_x3"]
    assert list(load_catalog(models, "nope", device))[:2] == ["a_x2", "b_x3"]
    assert "model=nope: no " in caplog.text and "offering a_x2 first" in caplog.text
    assert "(models_dir=DIR names a folder of models" in caplog.text  # run elsewhere: the fix
    extra = tmp_path / "elsewhere" / "mine.pt2"
    extra.parent.mkdir()
    shutil.copy(ROOT / "nas_sr" / "models" / "cell_x2" / "model.pt2", extra)
    assert list(load_catalog(models, str(extra), device))[:3] == ["mine", "a_x2", "b_x3"]
    with pytest.raises(FileNotFoundError):  # a file that is not there is an error
        load_catalog(models, str(tmp_path / "missing.pt2"), device)


def make_job(tmp_path: Path, i: int) -> Job:
    folder = tmp_path / f"job{i}"
    folder.mkdir()
    return Job(f"{i}.png", "image", "m", 2, folder, folder / "in.png", folder / "out.png", (4, 4))


def test_queue_runs_one_job_at_a_time_in_order_cancels_and_cleans(tmp_path):
    gate, ran = threading.Event(), []

    def work(job):
        ran.append(job.name)
        for step in range(1, 4):
            gate.wait(10)
            job.progress(step, 3)

    q = JobQueue(work, keep_s=60, workers=1)
    q.start()
    jobs = [make_job(tmp_path, i) for i in range(4)]
    for job in jobs:
        q.submit(job)
    deadline = time.time() + 10
    while jobs[0].status != "running" and time.time() < deadline:
        time.sleep(0.01)
    assert [j.status for j in jobs] == ["running", "queued", "queued", "queued"]
    assert [q.position(j) for j in jobs] == [None, 1, 2, 3]
    q.remove(jobs[2])  # cancelled while waiting: never runs
    assert jobs[2].status == "cancelled" and q.position(jobs[3]) == 2
    gate.set()
    while any(j.status in ("queued", "running") for j in jobs) and time.time() < deadline:
        time.sleep(0.01)
    assert ran == ["0.png", "1.png", "3.png"]
    assert [j.status for j in jobs] == ["done", "done", "cancelled", "done"]
    assert q.sweep() == 0  # nothing is older than keep_s yet
    assert q.sweep(now=time.time() + 61) == 4
    assert q.jobs() == [] and not any(j.folder.exists() for j in jobs)
    q.stop()


def test_a_running_job_can_be_cancelled_and_failures_are_reported(tmp_path):
    started = threading.Event()

    def work(job):
        if job.name == "1.png":
            raise RuntimeError("boom")
        if job.name == "2.png":
            raise ValueError(f"{job.input} -> {job.output}: Invalid data")
        started.set()
        while True:
            job.progress(1, 100)
            time.sleep(0.01)

    q = JobQueue(work, keep_s=60)
    q.start()
    first, second, third = (make_job(tmp_path, i) for i in range(3))
    for job in (first, second, third):
        q.submit(job)
    assert started.wait(10)
    q.remove(first)
    deadline = time.time() + 10
    while third.status != "failed" and time.time() < deadline:
        time.sleep(0.01)
    assert first.status == "cancelled"
    assert second.error == "internal error: RuntimeError: boom"
    assert third.error == "2.png -> the result: Invalid data"  # no server path shown
    q.stop()


def test_a_full_disk_during_an_upload_is_a_json_507_and_keeps_nothing(catalog, tmp_path,
                                                                       monkeypatch):
    store = tmp_path / "store"
    app = create_app(catalog, store, SETTINGS, Limits(), hosts=HOSTS)

    def full(src, dst, length=0):
        dst.write(b"the first bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nas_sr.web.app.shutil.copyfileobj", full)
    with local_client(app) as c:
        r = submit(c, "a.png", png_bytes(np.zeros((8, 8, 3), np.uint8)))
    assert r.status_code == 507, r.text
    assert "No space left on device" in r.json()["detail"]
    assert not job_folders(store)  # the partial upload went with its folder


def test_the_api_pages_need_no_cdn_and_the_schema_stays(client):
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").json()["info"]["title"] == "nas-sr"
