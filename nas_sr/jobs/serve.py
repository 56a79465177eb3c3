"""The serve job: ``nas-sr serve`` starts the local web page (FastAPI on uvicorn)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import uvicorn
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from nas_sr.deploy.media import Settings
from nas_sr.deploy.predictor import SHIPPED
from nas_sr.device import set_threads
from nas_sr.errors import ConfigError
from nas_sr.web.app import create_app
from nas_sr.web.catalog import is_model_name, load_catalog
from nas_sr.web.guard import ANY_ADDRESS, bracketed, served_hosts
from nas_sr.web.store import check_folder
from nas_sr.web.uploads import Limits

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def store_folder(cfg: DictConfig) -> Path:
    """``store=``, the folder of the jobs and their records, from where serve started."""
    if not cfg.store:
        raise ConfigError("store= names the folder of the jobs and their records, e.g. "
                          "store=runs/serve/jobs")
    return Path(to_absolute_path(str(Path(str(cfg.store)).expanduser())))


def build(cfg: DictConfig) -> Any:
    """The ASGI app of ``cfg`` with its jobs in ``store=`` (tests serve it themselves).

    ``cfg``'s options are checked before this by ``nas_sr.options`` (``cli.run_job``).
    """
    settings = Settings.from_cfg(cfg)
    models_dir = (Path(to_absolute_path(str(Path(cfg.models_dir).expanduser())))
                  if cfg.models_dir else SHIPPED)
    model = str(cfg.model) if cfg.model else None
    if model and not is_model_name(model):
        model = to_absolute_path(model)
    catalog = load_catalog(models_dir, model, settings.device, cfg.channels_last,
                           settings.runtime)
    limits = Limits(int(cfg.limits.upload_mb * 2**20), int(cfg.limits.pixels),
                    int(cfg.limits.frames), int(cfg.limits.queued),
                    int(cfg.limits.stored_gb * 2**30))
    extra = cfg.allowed_hosts or []
    extra = [extra] if isinstance(extra, str) else [str(h) for h in extra]  # one name or a list
    hosts = served_hosts(str(cfg.host), int(cfg.port), extra)
    return create_app(catalog, store_folder(cfg), settings, limits, cfg.keep_minutes * 60,
                      cfg.workers, hosts=hosts)


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` briefly as uvicorn will (SO_REUSEADDR), so a busy port is named
    before the page's address is printed and the models load, not after."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise ConfigError(f"port={port}: cannot listen on {host}:{port} ({e.strerror}); "
                              f"pick a free port=, e.g. port={port + 1}") from None


def page_url(host: str, port: int) -> str:
    """The address to open: a browser cannot open 0.0.0.0 (every interface), but this
    machine reaches the page at 127.0.0.1 then."""
    name = "127.0.0.1" if host in ANY_ADDRESS else bracketed(host)
    return f"http://{name}:{port}/"


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    set_threads(cfg.threads)
    check_port(cfg.host, cfg.port)
    check_folder(store_folder(cfg))  # before the models load, as the port
    app = build(cfg)
    if cfg.host not in LOOPBACK:
        print(f"warning: host={cfg.host} makes the page reachable from the network: anyone "
              "who can reach this machine can upload files and download the results "
              "(host=127.0.0.1 keeps it to this one)")
    url = page_url(cfg.host, cfg.port)
    print(f"nas-sr serve: open {url} in a browser (jobs in {store_folder(cfg)}; Ctrl+C "
          "stops, keeping the queue for the next start)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, access_log=cfg.access_log,
                log_level="info" if cfg.logger.progress else "warning")
    return {"url": url}
