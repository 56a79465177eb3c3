"""End to end in a real headless browser: Debian's chromium driven by selenium uploads a
Set5 image through the page, waits for the result and downloads it; a video job plays; a
page on another origin cannot upload.

Skips when chromium/chromedriver are missing (`.ci/run` installs them in CI), the Set5
test also when ../shared/datasets is. `NAS_SR_SCREENSHOT=page.png` saves a screenshot.
"""

import base64
import os
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvicorn
from PIL import Image

from conftest import SHARED, make_cfg, needs_datasets, write_clip, write_image
from nas_sr.jobs.serve import build

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium + chromedriver on PATH (Debian: apt-get install chromium "
           "chromium-driver; .ci/run does it in CI)")
# this machine has no network: without these chromium floods refused connections
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1200,1000")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`nas-sr serve`'s app with the shipped models and 1 MB uploads, on a free port."""
    port = free_port()
    app = build(make_cfg("serve", "threads=1", "limits.upload_mb=1", f"port={port}",
                         f"store={tmp_path / 'store'}"))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{config.port}"
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


@needs_datasets
def test_upload_wait_and_download_in_a_real_browser(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    photo = SHARED / "benchmark" / "Set5" / "X2" / "LR" / "img_002.png"  # bird, 144x144
    browser.get(server)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    Select(browser.find_element(By.ID, "model")).select_by_value("cell_x2")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    link = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".job.done .download")))
    assert "Done in" in browser.find_element(By.CSS_SELECTOR, ".job .status").text
    wait.until(lambda d: d.execute_script(  # the before/after pair is on the page, decoded
        "const i = [...document.querySelectorAll('.compare img')];"
        "return i.length === 2 && i.every(x => x.naturalWidth)"))
    if os.environ.get("NAS_SR_SCREENSHOT"):
        browser.save_screenshot(os.environ["NAS_SR_SCREENSHOT"])
    link.click()
    wait.until(lambda d: [p for p in d.downloads.iterdir() if p.suffix == ".png"])
    result = next(browser.downloads.glob("*.png"))
    assert result.name == "img_002_x2.png"
    with Image.open(result) as img, Image.open(photo) as lq:
        assert img.size == (lq.width * 2, lq.height * 2) == (288, 288)
        assert img.mode == "RGB"
    # a reload keeps the job: its card comes back from the server
    browser.refresh()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".job.done .download")))
    assert browser.find_element(By.CSS_SELECTOR, ".job .name").text == "img_002.png"


def test_a_bad_upload_gets_a_message_and_the_page_keeps_working(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    big = tmp_path / "big.png"
    big.write_bytes(bytes(2 * 2**20))
    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    for path, message in ((notes, "notes.txt was not accepted: notes.txt: neither an image"),
                          (big, "big.png was not accepted: it is too large for this server "
                                "(files up to 1 MB")):
        browser.find_element(By.ID, "file").send_keys(str(path))
        wait.until(lambda d, m=message: m in d.find_element(By.ID, "messages").text)
    assert not browser.find_elements(By.CSS_SELECTOR, ".job")


def test_a_video_job_plays_before_and_after_in_the_page(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    clip = write_clip(tmp_path / "clip.mp4", frames=6)
    browser.get(server)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    browser.find_element(By.ID, "file").send_keys(str(clip))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".job.video.done .compare video"))
    sizes = wait.until(lambda d: d.execute_script(  # both decoded by chromium (H.264)
        "const v = [...document.querySelectorAll('.compare video')];"
        "return v.every(x => x.readyState >= 1) && v.map(x => [x.videoWidth, x.videoHeight])"))
    assert sorted(sizes) == [[64, 48], [128, 96]]
    # play the result, as its controls do: the "before" video plays along with it
    browser.execute_script("document.querySelector('.compare .after video').play()")
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('.compare video')]"
        ".every(x => !x.paused && x.currentTime > 0)"))


ATTACK = """<!doctype html><title>another site</title><script>
const png = Uint8Array.from(atob("{png}"), c => c.charCodeAt(0));
const form = new FormData();
form.append("file", new Blob([png], {{type: "image/png"}}), "sneaky.png");
form.append("model", "bicubic_x2");
// a multipart POST needs no CORS preflight: the browser sends it, Origin and all
fetch("{target}/api/jobs", {{method: "POST", body: form, mode: "no-cors"}})
  .then(() => {{ document.title = "sent"; }}, e => {{ document.title = "error " + e; }});
</script>"""


@pytest.fixture
def other_site(tmp_path):
    """Serves one page from a second local origin (another port); yields a function that
    sets the page's HTML and returns its URL."""
    pages: dict[str, bytes] = {}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = pages["html"]
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def serve(html: str) -> str:
        pages["html"] = html.encode()
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield serve
    httpd.shutdown()


def test_a_page_on_another_origin_cannot_upload(server, browser, other_site, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    png = base64.b64encode(write_image(tmp_path / "p.png", (24, 32)).read_bytes()).decode()
    browser.get(other_site(ATTACK.format(png=png, target=server)))
    WebDriverWait(browser, 30).until(lambda d: d.title != "another site")
    assert browser.title == "sent"  # the request went out (its answer is opaque to the page)
    assert httpx.get(f"{server}/api/jobs").json() == []  # and the server queued nothing
    photo = {"file": ("p.png", (tmp_path / "p.png").read_bytes())}
    r = httpx.post(f"{server}/api/jobs", files=photo, data={"model": "bicubic_x2"})
    assert r.status_code == 202  # the same upload without a browser's Origin is taken
