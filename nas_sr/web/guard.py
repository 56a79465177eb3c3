"""Which requests the page answers: its own host names, and its own origin for changes.

A web page on another site can make the visitor's browser send requests to
``127.0.0.1``: a form or ``fetch()`` POST (cross-site uploads), or, through a name of its
own that it re-points at 127.0.0.1 (DNS rebinding), requests the browser then treats as
same-origin. The Host header names the site the browser thinks it talks to, so a Host the
server does not serve is refused (400); a state-changing request whose Origin (or, without
one, Referer) is another site is refused (403). Requests with neither header (curl,
scripts) are no browser's and pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY_ADDRESS = ("0.0.0.0", "::", "")  # bind every interface: no one name of its own
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def bracketed(host: str) -> str:
    """An IPv6 address as a Host header writes it: ``[::1]``."""
    return f"[{host}]" if host.count(":") > 1 and not host.startswith("[") else host


def served_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host headers the server answers: the loopback names, the bound ``host`` when it
    is an address of its own, and ``extra`` names, each with ``port`` unless it has one."""
    names = [*LOCAL_NAMES, *([] if host in ANY_ADDRESS else [bracketed(host)]),
             *map(bracketed, extra)]
    hosts = {n.lower() if n.rsplit("]", 1)[-1].count(":") == 1 else f"{n.lower()}:{port}"
             for n in names}
    if port == 80:  # a browser leaves the default port out
        hosts |= {h.removesuffix(":80") for h in hosts}
    return frozenset(hosts)


class RequestGuard:
    """ASGI middleware: 400 for a Host not in ``hosts``, 403 for a cross-origin change."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            return await refuse(send, 400, f"this server does not answer to the host name "
                                           f"{host or '(none)'!r}; open it as "
                                           f"http://{sorted(self.hosts)[0]}/")
        if scope["method"] not in SAFE_METHODS:
            origin = sender_origin(headers)
            if origin is not None and origin != f"{scope['scheme']}://{host}":
                return await refuse(send, 403, f"refused a request from another site "
                                               f"({origin}); upload from this server's own "
                                               f"page, or without a browser (curl)")
        await self.app(scope, receive, send)


def sender_origin(headers: dict[str, str]) -> str | None:
    """``scheme://host[:port]`` of the page that sent a request, None when unnamed."""
    if "origin" in headers:
        return headers["origin"].lower()  # "null" from a sandbox or a file: never ours
    if referer := headers.get("referer"):
        url = urlsplit(referer)
        return f"{url.scheme}://{url.netloc}".lower()
    return None


async def refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
