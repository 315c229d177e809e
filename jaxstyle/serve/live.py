"""The live page (``--serve``): an aiohttp application, in a thread beside the run, that shows the
variants as they form, their loss curves, the config, the stage, the iteration and the ETA. The
studio (:mod:`jaxstyle.serve.studio`) shows a running job through the same page and routes.

The run hands :class:`LiveState` each :class:`~jaxstyle.engine.progress.Tick` and history entry; the
server answers from it. Images are taken from the run at each tick (they live in the run's buffers
only until the next chunk) and encoded only when the page asks for them, so an unwatched page
costs the run almost nothing.

What is served: the page, its state (``/state.json``), the variants' current images
(``/live/thumb/<i>.png``, ``/live/full/<i>.png``) and, by exact name, the files this run wrote
(``/files/<name>``: images, sheet, report, curves). Any other path, a name with a slash, a file
that has become a symlink or that resolves outside the output folder is 404. The server binds to
127.0.0.1 unless told otherwise: anyone who can reach the port sees the images and the config. A
request whose Host header names another address than the bound one or localhost is refused, so a
web page elsewhere cannot read the run through a name it makes resolve to this machine.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from aiohttp import web
from PIL import Image

from ..media.images import to_uint8
from ..engine.progress import Tick
from .server import CONTENT_TYPES, AppServer, answer, host_guard, page_answer, safe_file, secure_app

#: Longest side of the thumbnails in the page's grid.
THUMB = 320


class LiveState:
    """What the page shows, written by the run's thread and read by the server's (under a lock).

    ``labels``: one per variant, as on the contact sheet; ``config``: the resolved config.
    """

    def __init__(self, labels: Sequence[str], config: dict, output: str | Path):
        self.lock = threading.Lock()
        self.labels, self.config, self.output = list(labels), config, Path(output)
        self.version = 0
        self.status, self.message = "starting", "compiling and computing the targets"
        self.progress: dict[str, Any] = {}
        self.history: list[dict] = []
        self.images: list[np.ndarray | None] = [None] * len(self.labels)
        self.image_version = 0
        self.files: dict[str, str] = {}  # what the page links: {"report": "report.json", ...}
        self.variant_files: list[str | None] = [None] * len(self.labels)
        self._encoded: dict[tuple, bytes] = {}

    # ---- written by the run ----------------------------------------------------------------------
    def record(self, entry: dict) -> None:
        """A history entry of the run (see :meth:`jaxstyle.engine.pipeline.Progress.record`)."""
        with self.lock:
            self.history.append(entry)
            self.version += 1

    def tick(self, tick: Tick) -> None:
        """Take the run's state after a chunk: where it stands, its ETA and its images."""
        images = tick.images() if tick.images is not None else None
        eta = tick.eta_s
        with self.lock:
            self.status, self.message = "running", ""
            self.progress = {"where": tick.where, "stage": tick.stage + 1, "stages": tick.stages,
                             "iteration": tick.iteration, "tile_iterations": tick.tile_iterations,
                             "elapsed_s": round(tick.elapsed_s, 1), "eta_s": None if eta is None else round(eta, 1),
                             "fraction": tick.work / max(tick.work_total, 1)}
            if images is not None:
                for i, im in enumerate(images):
                    self.images[tick.first + i] = to_uint8(im)
                self.image_version += 1
                self._encoded.clear()
            self.version += 1

    def end(self, status: str, message: str, images: np.ndarray | None = None, report: dict | None = None) -> None:
        """The run is over: ``status`` is ``finished``, ``interrupted`` or ``failed``; ``report``
        names the files it wrote."""
        with self.lock:
            self.status, self.message = status, message
            if images is not None:
                self.images = [to_uint8(im) for im in images]
                self.image_version += 1
                self._encoded.clear()
            if report is not None:
                self.files = {"report": "report.json", **{k: report[k] for k in ("sheet", "curves") if k in report}}
                # An image's file, or a clip's video.
                self.variant_files = [v.get("image") or v.get("video") for v in report.get("variants", [])]
            self.progress = {**self.progress, "eta_s": 0.0 if status == "finished" else None}
            self.version += 1

    # ---- read by the server ----------------------------------------------------------------------
    def snapshot(self, since: int = 0) -> dict:
        """The page's state, with the history from entry ``since`` on."""
        with self.lock:
            return {"version": self.version, "status": self.status, "message": self.message,
                    "labels": self.labels, "config": self.config, "progress": self.progress,
                    "history_start": since, "history": self.history[since:], "image_version": self.image_version,
                    "has_image": [im is not None for im in self.images], "files": self.files,
                    "variant_files": self.variant_files}

    def png(self, index: int, thumb: bool) -> bytes | None:
        """Variant ``index``'s current image as PNG (a thumbnail of at most :data:`THUMB` px)."""
        with self.lock:
            if not 0 <= index < len(self.images) or self.images[index] is None:
                return None
            key, image = (index, thumb, self.image_version), self.images[index]
            cached = self._encoded.get(key)
        if cached is not None:
            return cached
        pil = Image.fromarray(image)
        if thumb and max(pil.size) > THUMB:
            pil.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        pil.save(buf, format="PNG", compress_level=1)
        with self.lock:
            if key[2] == self.image_version:
                self._encoded[key] = buf.getvalue()
        return buf.getvalue()

    def served_file(self, name: str) -> Path | None:
        """The path of a file this run wrote, by its exact name; None for anything else."""
        with self.lock:
            names = set(self.files.values()) | {f for f in self.variant_files if f}
        return safe_file(self.output, name, CONTENT_TYPES) if name in names else None




def live_routes(state: LiveState) -> list[web.RouteDef]:
    """The run page's routes: the page, ``state.json``, the variants' images and the run's own
    files. The page asks for everything by relative address, so the studio can relay it from
    under ``/watch/``."""
    async def page(request: web.Request) -> web.Response:
        return page_answer("live.html")

    async def state_json(request: web.Request) -> web.Response:
        since = request.query.get("since", "0")
        return answer(json.dumps(state.snapshot(int(since) if since.isdigit() else 0)).encode(), "application/json")

    async def image(request: web.Request) -> web.Response:
        data = state.png(int(request.match_info["index"]), request.match_info["kind"] == "thumb")
        if data is None:
            raise web.HTTPNotFound()
        return answer(data, "image/png")

    async def file(request: web.Request) -> web.Response:
        path = state.served_file(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return answer(path.read_bytes(), CONTENT_TYPES.get(path.suffix, "application/octet-stream"))

    return [web.get("/", page), web.get("/index.html", page), web.get("/state.json", state_json),
            web.get(r"/live/{kind:thumb|full}/{index:\d+}.png", image), web.get("/files/{name}", file)]


class LiveServer(AppServer):
    """The run page alone (``--serve``). GET only; a request whose Host names another address than
    the bound one or localhost is refused (403)."""

    def __init__(self, state: LiveState, host: str = "127.0.0.1", port: int = 0):
        app = secure_app([host_guard(host)])
        app.add_routes(live_routes(state))
        self.state = state
        super().__init__(app, host, port)
