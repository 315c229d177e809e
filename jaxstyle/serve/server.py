"""What the live page's server and the studio's share: one server lifecycle (:func:`start_server`,
in the caller's event loop or, :class:`AppServer`, in a thread of its own), one way to answer with a
page of ours (:func:`page_answer`: its script allowed by hash) or a file (:func:`safe_file`: by exact
name, never through a link or out of its folder), and the checks every answer and request passes
(security headers, the Host header)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import os
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Collection

from aiohttp import web

from ..core.errors import OutputError


#: What the servers answer with, by a file's suffix.
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp", ".tif": "image/tiff",
                 ".json": "application/json", ".mp4": "video/mp4"}


def page_bytes(name: str) -> bytes:
    """One of our pages (``live.html``, ``studio.html``): one HTML file with its script and style
    inline, nothing loaded from elsewhere."""
    return resources.files("jaxstyle.serve").joinpath(name).read_bytes()


def page_answer(name: str) -> web.Response:
    """The page ``name`` as an answer, with its CSP (:func:`page_csp`)."""
    return answer(page_bytes(name), "text/html; charset=utf-8")


def safe_file(folder: Path, name: str, suffixes: Collection[str]) -> Path | None:
    """The file ``name`` directly inside ``folder``, when its suffix is one of ``suffixes``; None
    for a name with a separator, a link, anything not a regular file, or one whose real path is not
    directly inside the folder's real path."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or Path(name).suffix not in suffixes:
        return None
    path = folder / name
    if path.is_symlink() or not path.is_file() or os.path.dirname(os.path.realpath(path)) != os.path.realpath(folder):
        return None
    return path


#: What any answer but a page may do in a browser: nothing (an image or JSON opened on its own runs
#: no script and cannot be framed).
BARE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def page_csp(html: bytes) -> str:
    """The Content-Security-Policy of one of our pages: its own inline scripts by their SHA-256 (no
    ``'unsafe-inline'`` for scripts, so an injected one never runs), everything else from this
    origin only, never framed."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
                      for m in _SCRIPT.findall(html))
    return (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src 'self' blob: data:; "
            "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def answer(body: bytes, content_type: str) -> web.Response:
    """A complete answer the browser never caches (the page polls it); a page carries its CSP."""
    headers = {"Cache-Control": "no-store"}
    if content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = page_csp(body)
    return web.Response(body=body, content_type=content_type.split(";")[0],
                        charset="utf-8" if "charset" in content_type else None, headers=headers)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer (errors too): no type sniffing, no framing, no referrer; :data:`BARE_CSP` where
    the answer is not a page with its own policy."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Content-Security-Policy", BARE_CSP)


def secure_app(middlewares: list, **options: Any) -> web.Application:
    """An application (``options``: :class:`aiohttp.web.Application`'s) with :func:`security_headers`
    on every answer."""
    app = web.Application(middlewares=middlewares, **options)
    app.on_response_prepare.append(security_headers)
    return app


def host_allowed(request: web.Request, bound: str) -> bool:
    """Whether the request's Host header names localhost or the address the server is bound to (any
    IP address of this machine when bound to all of them, ``0.0.0.0`` or ``::``). A name other than
    localhost is refused: a page elsewhere that makes its own name resolve to this machine (DNS
    rebinding) cannot reach the server through it."""
    host = request.host
    host = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
    host, bound = host.lower(), bound.strip("[]").lower()
    if host in {"localhost", "127.0.0.1", "::1", bound}:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return bound in ("0.0.0.0", "::", "")


def host_guard(bound: str):
    """Middleware refusing (403) a request whose Host names neither ``bound`` nor localhost."""
    @web.middleware
    async def check_host(request: web.Request, handler):
        if not host_allowed(request, bound):
            return web.Response(status=403, text="refused: the Host header names another address")
        return await handler(request)
    return check_host


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, tuple[str, int]]:
    """Serve ``app`` on ``host:port`` (0: a free port) in the running event loop; its runner (whose
    ``cleanup`` stops it) and the address bound. An address this machine cannot serve on is one line."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise OutputError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return runner, runner.addresses[0][:2]


def address_url(host: str, port: int) -> str:
    """``http://host:port/``, an IPv6 address in brackets."""
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class AppServer:
    """An aiohttp application served from its own event loop in a daemon thread, bound at
    construction (port 0: a free one), so a run (or a test) goes on in the calling thread."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0):
        self.loop = asyncio.new_event_loop()
        try:
            self.runner, self.server_address = self.loop.run_until_complete(start_server(app, host, port))
        except OutputError:
            self.loop.close()
            raise
        self.thread = threading.Thread(target=self.loop.run_forever, name="jaxstyle-server", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return address_url(*self.server_address)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=180)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()
