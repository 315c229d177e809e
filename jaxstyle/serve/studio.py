"""The studio (``jaxstyle studio``): start, queue, watch and revisit runs from a local web page.

One aiohttp application serves the page (``studio.html``), a small JSON API and the files of the
runs in its folder. Runs wait in a queue stored in ``<folder>/.studio/queue.json`` and run one at
a time in a worker process: the command line itself (``python -m jaxstyle.cli --config ...
--serve PORT``), so a studio run is exactly a command-line run, and stopping one is the command
line's clean interrupt (SIGINT: the chunk finishes, a checkpoint is written). While a run goes,
``/watch/`` shows its live page, relayed from the worker's own server.

Safety (docs/studio.md): every request needs the token printed with the address (then kept in a
cookie), the Host header must name the bound address or localhost, uploads are capped in bytes
and pixels and decoded before they are kept under generated names, a submitted config may read
only examples, uploads and earlier runs, always writes a new folder inside the studio folder, and
names no term file unless the studio was started with ``--allow-terms``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import aiohttp
import yaml
from aiohttp import web
from PIL import Image

from ..engine.presets import PRESETS, apply_preset, check_preset
from ..engine.config import COLOR_MODES, Config, validate, yaml_load, yaml_problem
from ..core.errors import ConfigError, JaxstyleError, quote
from .server import address_url, answer, host_guard, page_answer, safe_file, secure_app, start_server
from .queue import CHECKPOINT, RUN_NAME, STATE_DIR, RunQueue, StudioError
from .views import SERVED_SUFFIXES, TYPES, Views, report_of
from ..model.style_losses import STYLE_LOSSES
from ..model.terms import is_file_term
from ..engine.variants import expand_variants
from ..media.video import VIDEO_SUFFIXES, count_selected

#: The largest upload, in bytes, and in pixels (checked from the header, before decoding).
UPLOAD_BYTES = 64 * 1024 * 1024
UPLOAD_PIXELS = 40_000_000
#: Where the studio keeps its own state inside its folder.
#: The token's cookie is named per port (``jaxstyle_studio_8765``): cookies do not separate the ports
#: of one host, so two studios on one machine would otherwise replace each other's.
COOKIE = "jaxstyle_studio"
#: The header the page sends with every request. A page of another origin can send it only after a
#: CORS preflight, which the studio refuses; a plain form or ``text/plain`` post cannot send it.
STUDIO_HEADER = "X-Jaxstyle-Studio"
#: A JSON request's largest body and deepest nesting (a form is a few hundred bytes, two levels).
JSON_BYTES, JSON_DEPTH = 256 * 1024, 16
#: The states a job in the queue file may have.
#: The image formats an upload may be, by what decoding it says (never by its name).
UPLOAD_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}
#: Clips by their container (FFmpeg's demuxer names), in the order they are matched.
CLIP_CONTAINERS = (("mp4", ".mp4"), ("webm", ".webm"), ("matroska", ".mkv"), ("avi", ".avi"))
#: What the input lists offer: images and clips by their ending.
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", *VIDEO_SUFFIXES)
#: A run folder's name: what the studio generates, and all a request may name.
INPUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.[A-Za-z0-9]{2,4}$")
#: Files of a run the studio serves (by exact name, directly inside the run's folder).
WORKER = web.AppKey("worker", asyncio.Task)


class Caps(NamedTuple):
    """What one studio accepts (``jaxstyle studio --max-...``); a request past a cap is one line."""

    queue: int = 100          # runs waiting at once
    variants: int = 16        # images one submission makes (seeds x sweep)
    size: int = 2048          # the long side, in pixels
    iterations: int = 5000    # iterations of one run, all stages together
    frames: int = 300         # frames of one clip
    uploads_mb: int = 2048    # all uploads together, in MiB


def cookie_name(port: int) -> str:
    """The token cookie of the studio on ``port``."""
    return f"{COOKIE}_{port}"


# ---- the form -> a config ------------------------------------------------------------------------
def form_config(form: Mapping[str, Any], resolve_input) -> dict:
    """The raw config a submitted form asks for (before the path rules and the output are applied).

    ``form``: ``content`` and ``styles`` (input ids, see :meth:`Studio.input_path`), ``size``,
    ``balance`` (log10 of Eq. 7's alpha/beta, -3..1, or absent for the default), ``seeds``,
    ``style_loss``, ``preserve_colors``, ``style_scale``, ``preset`` (its name is checked here, its
    settings applied by :func:`jaxstyle.engine.presets.apply_preset`) and ``advanced`` (YAML for any other key; the form's
    own knobs win over it). ``resolve_input(id) -> absolute path``. Nothing here validates the config
    or touches a path the form names: the studio's rules come first.
    """
    advanced = form.get("advanced") or ""
    if not isinstance(advanced, str):
        raise StudioError("advanced settings must be YAML text")
    try:
        raw = yaml_load(advanced) if advanced.strip() else {}
    except yaml.YAMLError as exc:
        raise StudioError(f"advanced settings: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise StudioError("advanced settings must be a YAML mapping of config keys to values")
    if not form.get("content"):
        raise StudioError("choose a photo")
    styles = form.get("styles") or []
    if isinstance(styles, str):
        styles = [styles]
    if not isinstance(styles, list) or not styles:
        raise StudioError("choose at least one artwork")
    raw["content"] = resolve_input(form["content"])
    raw["style"] = [resolve_input(s) for s in styles] if len(styles) > 1 else resolve_input(styles[0])
    for key in ("size", "style_loss", "preserve_colors", "style_scale"):
        if form.get(key) not in (None, ""):
            raw[key] = form[key]
    if form.get("seeds") not in (None, ""):
        seeds = form["seeds"]
        if isinstance(seeds, str):
            try:
                seeds = [int(s) for s in seeds.replace(",", " ").split()[:1000]]
            except ValueError:
                raise StudioError(f"seeds must be whole numbers separated by spaces, not {quote(form['seeds'])}") from None
        raw["seeds"] = seeds
    if form.get("balance") not in (None, ""):
        try:
            balance = float(form["balance"])
        except (TypeError, ValueError):
            raise StudioError(f"balance must be a number, not {quote(form['balance'])}") from None
        if not math.isfinite(balance) or not -3.0 <= balance <= 1.0:
            raise StudioError(f"balance (log10 alpha/beta) must be between -3 and 1, not {balance:g}")
        alpha = raw.get("alpha", 1.0)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise StudioError(f"alpha must be a number to set the balance, not {quote(alpha)}")
        raw["beta"] = alpha / 10.0 ** balance
    check_preset(form.get("preset"))
    return raw


def studio_rules(raw: dict, inside, allow_terms: bool) -> tuple[dict, list[str]]:
    """``raw`` with the studio's path rules applied: every input path must be one ``inside`` accepts
    (examples, uploads, earlier runs), ``weights`` may not be set, term files need ``allow_terms``;
    ``output`` and ``overwrite`` from the page are dropped. Returns the config and notes for the page."""
    raw, notes = dict(raw), []
    for key in ("output", "overwrite"):
        if key in raw:
            raw.pop(key)
            notes.append(f"{key} from the page is ignored: every studio run writes a new folder")
    if raw.get("weights") is not None:
        raise StudioError("weights cannot be set from the studio: runs use the installed weights")
    paths = [("content", raw.get("content"))]
    style = raw.get("style")
    paths += [("style", s) for s in (style if isinstance(style, list) else [style])]
    paths += [("masks", m) for m in (raw.get("masks") or [])] if isinstance(raw.get("masks"), list) else []
    init = raw.get("init")
    if isinstance(init, str) and init not in ("noise", "content", "style"):
        paths.append(("init", init))
    for key, value in paths:
        if value is None:
            continue
        if not isinstance(value, str) or not inside(value):
            raise StudioError(f"{key}: {value} is not an example, an upload or an earlier run's file")
    sweep = raw.get("sweep") if isinstance(raw.get("sweep"), Mapping) else {}
    entries = [raw.get("terms"), *(sweep.get("terms") if isinstance(sweep.get("terms"), list) else [])]
    files = [str(t) for e in entries if isinstance(e, Mapping) for t in e if is_file_term(str(t))]
    if files and not allow_terms:
        raise StudioError(f"term file {files[0]} refused: term files are code; start the studio with --allow-terms")
    return raw, notes


def check_upload(data: bytes, max_pixels: int = UPLOAD_PIXELS) -> str:
    """The file extension an upload is stored under, from decoding it: an image, or a clip (with
    PyAV, the video extra); a :class:`StudioError` for anything that is not a whole image or clip
    of at most ``max_pixels`` per frame."""
    if len(data) > UPLOAD_BYTES:
        raise StudioError(f"the file is larger than {UPLOAD_BYTES // 2 ** 20} MiB")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
            if w * h > max_pixels:  # from the header: a decompression bomb is never decoded
                raise StudioError(f"the image has {w} x {h} pixels, more than the studio's {max_pixels:,}")
            if fmt not in UPLOAD_FORMATS:
                raise StudioError(f"{fmt} images are not accepted; use PNG, JPEG, WebP, TIFF, BMP or GIF")
            im.load()
            return UPLOAD_FORMATS[fmt]
    except StudioError:
        raise
    except Image.DecompressionBombError:  # Pillow's own, far larger, limit: refused at the header too
        raise StudioError(f"the image has more than the studio's {max_pixels:,} pixels") from None
    except (OSError, ValueError, SyntaxError):
        pass
    suffix = clip_suffix(data, max_pixels)
    if suffix is None:
        raise StudioError("the file is not an image or a clip that can be decoded")
    return suffix


def clip_suffix(data: bytes, max_pixels: int) -> str | None:
    """A clip's file extension if ``data`` is a container with a video stream whose first frame
    decodes (frames of at most ``max_pixels``); None otherwise, or without PyAV."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                return None
            ctx = container.streams.video[0].codec_context
            if ctx.width * ctx.height > max_pixels:
                raise StudioError(f"the clip's frames have {ctx.width} x {ctx.height} pixels, more than the "
                                  f"studio's {max_pixels:,}")
            next(container.decode(video=0))
            names = container.format.name.split(",")
    except StudioError:
        raise
    except Exception:  # FFmpeg's many error types, and StopIteration for a stream without a frame
        return None
    return next((suffix for name, suffix in CLIP_CONTAINERS if name in names), None)


# ---- the studio's state --------------------------------------------------------------------------
class Studio:
    """The folder's runs and inputs, what may be queued, and the cards: the studio's views
    (its queue and worker: :class:`jaxstyle.serve.queue.RunQueue`). Used from the server's event
    loop only."""

    def __init__(self, folder: Path, examples: Path, allow_terms: bool = False, python: str = sys.executable,
                 caps: Caps = Caps()):
        self.folder, self.examples = folder.resolve(), examples.resolve()
        self.allow_terms, self.python, self.caps = allow_terms, python, caps
        self.state_dir = self.folder / STATE_DIR
        self.uploads = self.state_dir / "uploads"
        self.jobs_dir = self.state_dir / "jobs"
        for d in (self.uploads, self.jobs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.queue = RunQueue(self.folder, self.state_dir, python)
        self.views = Views(self)

    @property
    def jobs(self) -> list[dict]:
        return self.queue.jobs

    def job(self, name: str) -> dict | None:
        return self.queue.job(name)

    # -- inputs --
    def input_lists(self) -> dict[str, list[str]]:
        """The examples' and the uploads' images (and clips), by id."""
        def listing(folder: Path, prefix: str) -> list[str]:
            if not folder.is_dir():
                return []
            return [f"{prefix}/{p.name}" for p in sorted(folder.iterdir())
                    if p.is_file() and not p.is_symlink() and INPUT_NAME.match(p.name)
                    and p.suffix.lower() in INPUT_SUFFIXES]
        return {"examples": listing(self.examples, "examples"), "uploads": listing(self.uploads, "uploads")}

    def input_path(self, ident: str) -> Path:
        """``examples/<name>``, ``uploads/<name>`` or ``runs/<run>/<file>`` -> the file's path; a
        :class:`StudioError` for anything else."""
        parts = ident.split("/") if isinstance(ident, str) else []
        if len(parts) == 2 and parts[0] in ("examples", "uploads") and INPUT_NAME.match(parts[1]):
            path = (self.examples if parts[0] == "examples" else self.uploads) / parts[1]
        elif len(parts) == 3 and parts[0] == "runs" and RUN_NAME.match(parts[1]) and INPUT_NAME.match(parts[2]):
            path = self.folder / parts[1] / parts[2]
        else:
            raise StudioError(f"unknown input {quote(ident)}")
        if not path.is_file() or not self.inside(str(path)):
            raise StudioError(f"unknown input {quote(ident)}")
        return path

    def inside(self, value: str) -> bool:
        """Whether a path names a file in the examples, the uploads or an earlier run's folder."""
        real = os.path.realpath(value)
        roots = [os.path.realpath(self.examples), os.path.realpath(self.uploads)]
        if any(os.path.commonpath([real, r]) == r for r in roots) and os.path.isfile(real):
            return True
        folder = os.path.realpath(self.folder)
        rel = os.path.relpath(real, folder)
        parts = Path(rel).parts
        return (len(parts) == 2 and not rel.startswith("..") and parts[0] != STATE_DIR
                and RUN_NAME.match(parts[0]) is not None and os.path.isfile(real))

    def store_upload(self, data: bytes) -> str:
        held = sum(p.stat().st_size for p in self.uploads.iterdir() if p.is_file())
        if held + len(data) > self.caps.uploads_mb * 2 ** 20:
            raise StudioError(f"the uploads would pass the studio's {self.caps.uploads_mb} MiB "
                              "(--max-uploads-mb); delete some from the uploads folder")
        suffix = check_upload(data)
        name = f"{secrets.token_hex(8)}{suffix}"
        tmp = self.uploads / f".{name}.part"
        tmp.write_bytes(data)
        os.replace(tmp, self.uploads / name)
        return f"uploads/{name}"

    # -- runs --
    def new_name(self, raw: dict) -> str:
        stem = lambda p: re.sub(r"[^A-Za-z0-9_-]+", "_", Path(p).stem)[:30] or "input"  # noqa: E731
        style = raw["style"][0] if isinstance(raw["style"], list) else raw["style"]
        base = f"{time.strftime('%Y%m%d-%H%M%S')}-{stem(raw['content'])}-in-{stem(style)}"
        name, n = base, 1
        while (self.folder / name).exists() or self.job(name):
            n += 1
            name = f"{base}-{n}"
        return name

    def submit(self, form: Mapping[str, Any]) -> tuple[dict, list[str]]:
        """Check a form and queue its run; the job and notes for the page. The studio's rules come
        before anything reads the config's paths or validates it."""
        self.check_queue()
        raw = form_config(form, lambda ident: str(self.input_path(ident)))
        raw, notes = studio_rules(raw, self.inside, self.allow_terms)
        raw = apply_preset(raw, form.get("preset"))
        name = self.new_name(raw)
        raw["output"] = str(self.folder / name)
        cfg = validate(raw)  # the command line's checks and messages, before anything is queued
        self.check_caps(cfg)
        job = {"name": name, "state": "waiting", "submitted": time.time(), "resume": False, "message": ""}
        (self.jobs_dir / f"{name}.yaml").write_text(yaml.safe_dump(cfg.source, sort_keys=False))
        self.queue.add(job)
        return job, notes

    def check_queue(self) -> None:
        waiting = self.queue.waiting()
        if waiting >= self.caps.queue:
            raise StudioError(f"{waiting} runs are waiting, the studio's most (--max-queue): wait or remove some")

    def check_caps(self, cfg: Config) -> None:
        """Refuse a run past the studio's caps (:class:`Caps`), in one line naming the option."""
        caps, n = self.caps, len(expand_variants(cfg))
        if n > caps.variants:
            raise StudioError(f"this run makes {n} images (seeds x sweep); the studio's most is {caps.variants} "
                              "(--max-variants)")
        side = max(cfg.size) if isinstance(cfg.size, list) else cfg.size
        if side > caps.size:
            raise StudioError(f"size {side} px is more than the studio's {caps.size} px (--max-size)")
        iterations = cfg.optimizer.iterations + sum(cfg.scale_iterations)
        if iterations > caps.iterations:
            raise StudioError(f"this run has {iterations} iterations in all; the studio's most is "
                              f"{caps.iterations} (--max-iterations)")
        if cfg.is_clip:
            frames = count_selected(cfg.content, cfg.video)
            if frames is None or frames > caps.frames:
                raise StudioError(f"this clip has {'an unknown number of' if frames is None else frames} frames "
                                  f"in its selection; the studio's most is {caps.frames} (--max-frames; "
                                  "video.frames or video.every choose fewer)")

    def resume(self, name: str) -> dict:
        folder = self.run_folder(name)
        if not (folder / CHECKPOINT).exists():
            raise StudioError(f"{name} has no checkpoint to resume from")
        job = self.job(name)
        if job is not None and job["state"] in ("waiting", "running"):
            raise StudioError(f"{name} is already {job['state']}")
        self.check_queue()
        config_file = self.jobs_dir / f"{name}.yaml"
        # A studio run's config, or a command-line run's (its report holds the config it ran with):
        # either way it passes the studio's rules and caps again before it is queued.
        config = self.views.job_config(name) if config_file.exists() else report_of(folder).get("config")
        if not isinstance(config, dict) or not config:
            raise StudioError(f"{name} has no config the studio can read to resume from")
        raw, _ = studio_rules(config, self.inside, self.allow_terms)
        cfg = validate({**raw, "output": str(folder)})
        self.check_caps(cfg)
        config_file.write_text(yaml.safe_dump(cfg.source, sort_keys=False))
        job = job if job is not None else {"name": name, "submitted": time.time()}
        job.update(state="waiting", resume=True, message="")
        self.queue.add(job)
        return job

    def remove(self, name: str) -> None:
        job = self.job(name)
        if job is None or job["state"] != "waiting":
            raise StudioError(f"{name} is not waiting in the queue")
        self.queue.drop(job)
        if not (self.folder / name).exists():
            (self.jobs_dir / f"{name}.yaml").unlink(missing_ok=True)

    def delete(self, name: str) -> None:
        """A run's folder and the studio's records of it (a run that failed before it made its
        folder has only the records)."""
        job = self.job(name)
        if job is not None and job["state"] in ("waiting", "running"):
            raise StudioError(f"{name} is {job['state']}: remove or stop it first")
        if job is None or (self.folder / name).exists():
            shutil.rmtree(self.run_folder(name))
        if job is not None:
            self.queue.drop(job)
        (self.jobs_dir / f"{name}.yaml").unlink(missing_ok=True)
        (self.state_dir / "logs" / f"{name}.log").unlink(missing_ok=True)

    def run_folder(self, name: str) -> Path:
        if not isinstance(name, str) or not RUN_NAME.match(name) or name == STATE_DIR:
            raise StudioError(f"no run named {quote(name)}")
        folder = self.folder / name
        if not folder.is_dir() or folder.is_symlink():
            raise StudioError(f"no run named {quote(name)}")
        return folder



# ---- the server ----------------------------------------------------------------------------------
def token_guard(token: str):
    """The middleware that asks every request for the token (the printed address's, then the
    per-port cookie) and every other method than GET for a same-site origin; a refusal of the
    studio's is a JSON error of status 400."""

    @web.middleware
    async def guard(request: web.Request, handler):
        cookie = cookie_name(local_port(request))
        given = request.query.get("token")
        if given is not None and same_secret(given, token):
            if request.method == "GET" and request.path == "/":
                # The address printed at start: keep the token in a cookie and drop it from the bar.
                response = web.HTTPFound("/")
                response.set_cookie(cookie, token, httponly=True, samesite="Strict")
                raise response
        elif not same_secret(request.cookies.get(cookie, ""), token):
            return web.Response(status=403, text="refused: open the address the studio printed (it carries the token)")
        if request.method not in ("GET", "HEAD"):
            refused = cross_site(request)
            if refused:
                return web.Response(status=403, text=f"refused: {refused}")
        try:
            return await handler(request)
        except JaxstyleError as exc:  # the studio's refusals and the config module's messages
            return web.json_response({"error": str(exc)}, status=400)
    return guard


def api_routes(studio: Studio) -> list:
    """The page and the JSON API: state, upload, submit, and the actions on a run."""

    async def page(request: web.Request) -> web.Response:
        return page_answer("studio.html")

    async def state(request: web.Request) -> web.Response:
        running = next((j["name"] for j in studio.jobs if j["state"] == "running"), None)
        return web.json_response({"inputs": studio.input_lists(), "cards": studio.views.cards(), "running": running,
                                  "queue": [j["name"] for j in studio.jobs if j["state"] == "waiting"],
                                  "options": {"style_loss": ["gram", *STYLE_LOSSES],
                                              "preserve_colors": list(COLOR_MODES), "preset": list(PRESETS)}},
                                 headers={"Cache-Control": "no-store"})

    async def upload(request: web.Request) -> web.Response:
        try:
            reader = await request.multipart()
            part = await reader.next()
            while part is not None and part.name != "file":
                part = await reader.next()
            if part is None:
                raise StudioError("no file in the upload")
            data = bytearray()
            while chunk := await part.read_chunk(1 << 20):
                data += chunk
                if len(data) > UPLOAD_BYTES:
                    raise StudioError(f"the file is larger than {UPLOAD_BYTES // 2 ** 20} MiB")
        except (ValueError, AssertionError, aiohttp.ClientError):
            raise StudioError("the upload is not a multipart form") from None
        return web.json_response({"id": studio.store_upload(bytes(data))})

    async def submit(request: web.Request) -> web.Response:
        form = await json_body(request)
        if not isinstance(form, dict):
            raise StudioError("the request is not a form")
        job, notes = studio.submit(form)
        return web.json_response({"name": job["name"], "notes": notes})

    async def action(request: web.Request) -> web.Response:
        name, what = request.match_info["name"], request.match_info["action"]
        {"remove": studio.remove, "stop": studio.queue.stop, "resume": studio.resume, "delete": studio.delete}[what](name)
        return web.json_response({"ok": True})

    return [web.get("/", page), web.get("/api/state", state), web.post("/api/upload", upload),
            web.post("/api/runs", submit), web.post(r"/api/runs/{name}/{action:remove|stop|resume|delete}", action)]


def file_routes(studio: Studio) -> list:
    """The runs' files (and a run's config as YAML), the inputs, and the running job's live page."""

    async def run_file(request: web.Request) -> web.Response:
        name, file = request.match_info["name"], request.match_info["file"]
        if file == "config.yaml":
            config = studio.views.config_of(name) if RUN_NAME.match(name) else None
            if config is None:
                raise web.HTTPNotFound()
            return web.Response(body=yaml.safe_dump(config, sort_keys=False).encode(),
                                content_type="application/x-yaml",
                                headers={"Content-Disposition": f'attachment; filename="{name}.yaml"'})
        try:
            folder = studio.run_folder(name)
        except StudioError:
            raise web.HTTPNotFound() from None
        return serve_file(folder, file)

    async def input_file(request: web.Request) -> web.Response:
        kind, file = request.match_info["kind"], request.match_info["file"]
        folder = studio.examples if kind == "examples" else studio.uploads
        return serve_file(folder, file)

    async def watch(request: web.Request) -> web.Response:
        """The running job's live page, relayed from the worker's own server."""
        port = studio.queue.watch_port
        if port is None:
            raise web.HTTPNotFound(text="no run is going")
        url = f"http://127.0.0.1:{port}/{request.match_info['rest']}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
                async with session.get(url, params=request.query) as r:
                    headers = {"Content-Type": r.headers.get("Content-Type", "application/octet-stream"),
                               "Cache-Control": "no-store"}
                    if "Content-Security-Policy" in r.headers:  # the live page's own, its script by hash
                        headers["Content-Security-Policy"] = r.headers["Content-Security-Policy"]
                    return web.Response(body=await r.read(), status=r.status, headers=headers)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raise web.HTTPServiceUnavailable(text="the run's page is not up yet") from None

    return [web.get("/runs/{name}/{file}", run_file), web.get(r"/inputs/{kind:examples|uploads}/{file}", input_file),
            web.get("/watch/{rest:.*}", watch)]


def make_app(studio: Studio, token: str, bound: str, run_queue: bool = True) -> web.Application:
    """The studio's aiohttp application: its token and Host checks, the page, the API, the files;
    with ``run_queue`` (the default; False holds the queue, for tests) the worker runs the queue."""
    # client_max_size: an upload's body; JSON bodies are read with their own cap (json_body).
    app = secure_app([host_guard(bound), token_guard(token)], client_max_size=UPLOAD_BYTES + (1 << 20))
    app.add_routes([*api_routes(studio), *file_routes(studio)])

    async def start_worker(app: web.Application) -> None:
        app[WORKER] = asyncio.create_task(studio.queue.worker())

    async def stop_worker(app: web.Application) -> None:
        await studio.queue.shutdown()
        await app[WORKER]  # it records how the running job ended, then starts no other
    if run_queue:
        app.on_startup.append(start_worker)
        app.on_cleanup.append(stop_worker)
    return app


def local_port(request: web.Request) -> int:
    """The port the request came in on (the socket's, not what the Host header says)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if sockname else 0


def same_secret(given: str, token: str) -> bool:
    """Whether ``given`` is the token, in constant time; any text (non-ASCII too) is only refused."""
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode())


def cross_site(request: web.Request) -> str | None:
    """Why a state-changing request is refused as possibly sent by another page, or None.

    As Jupyter's server does: the ``Origin`` must be the studio's own (scheme, host and port: another
    port of this host is another origin, although the browser calls it same-site and sends the
    cookie), ``Sec-Fetch-Site`` where the browser sends it must be ``same-origin``, and the request
    must carry :data:`STUDIO_HEADER`, which no form and no "simple" cross-origin request can send.
    """
    port = local_port(request)
    host = request.host or ""
    host_port = host.rsplit(":", 1)[1] if host.rsplit(":", 1)[-1].isdigit() and not host.endswith("]") else "80"
    if request.headers.get("Origin") != f"http://{host}" or host_port != str(port):
        return "this request does not come from the studio's own page (Origin)"
    if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        return "this request does not come from the studio's own page (Sec-Fetch-Site)"
    if request.headers.get(STUDIO_HEADER) != "1":
        return f"this request lacks the studio's {STUDIO_HEADER} header"
    return None


async def json_body(request: web.Request) -> Any:
    """A request's JSON body, at most :data:`JSON_BYTES` and :data:`JSON_DEPTH` deep; one line else."""
    if request.content_length is not None and request.content_length > JSON_BYTES:
        raise StudioError(f"the request is larger than {JSON_BYTES // 1024} KiB")
    data = bytearray()
    while chunk := await request.content.read(1 << 16):  # to the end of the body, which may come in pieces
        data += chunk
        if len(data) > JSON_BYTES:
            raise StudioError(f"the request is larger than {JSON_BYTES // 1024} KiB")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise StudioError("the request is not JSON") from None
    if nesting(value) > JSON_DEPTH:
        raise StudioError(f"the request is nested more than {JSON_DEPTH} levels deep")
    return value


def nesting(value: Any) -> int:
    """How deep lists and mappings nest in ``value`` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((x, depth + 1) for x in (item.values() if isinstance(item, dict) else item))
    return deepest


def serve_file(folder: Path, name: str) -> web.Response:
    """A file directly inside ``folder`` by its exact name, of a type the studio serves; 404 else."""
    path = safe_file(folder, name, SERVED_SUFFIXES) if INPUT_NAME.match(name) else None
    if path is None:
        raise web.HTTPNotFound()
    return answer(path.read_bytes(), TYPES[path.suffix])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jaxstyle studio", description="Start, queue, watch and revisit runs "
                                 "from a web page on this machine (docs/studio.md).")
    ap.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: a free one)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--folder", default="outputs", help="where runs are written and found (default outputs/)")
    ap.add_argument("--examples", default="examples", help="the folder of example images offered (default examples/)")
    ap.add_argument("--allow-terms", action="store_true",
                    help="accept term files (terms: file.py:function) in submitted configs: they are code")
    defaults = Caps()
    for name, meaning in (("queue", "runs waiting at once"), ("variants", "images of one run (seeds x sweep)"),
                          ("size", "long side of a run, px"), ("iterations", "iterations of a run, all stages"),
                          ("frames", "frames of a clip"), ("uploads_mb", "all uploads together, MiB")):
        ap.add_argument(f"--max-{name.replace('_', '-')}", dest=name, type=int, default=getattr(defaults, name),
                        metavar="N", help=f"most {meaning} (default {getattr(defaults, name)})")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``jaxstyle studio``: serve until Ctrl-C; a running job is stopped cleanly first. Every option
    is checked, and the port tried, before the folder is made."""
    args = parser().parse_args(argv)
    folder, examples = Path(args.folder), Path(args.examples)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535 (0: a free one), not {args.port}")
    caps = Caps(*(getattr(args, name) for name in Caps._fields))
    small = next((name for name in Caps._fields if getattr(caps, name) < 1), None)
    if small is not None:
        raise ConfigError(f"--max-{small.replace('_', '-')} must be at least 1, not {getattr(caps, small)}")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--folder {folder} exists and is not a directory")
    try_bind(args.host, args.port)
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)

    async def serve() -> None:
        studio = Studio(folder, examples, args.allow_terms, caps=caps)
        runner, (host, port) = await start_server(make_app(studio, token, args.host), args.host, args.port)
        print(f"studio: {address_url(host, port)}?token={token}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        await stop.wait()
        print("stopping the studio (a running job writes its checkpoint first)", flush=True)
        await runner.cleanup()
    asyncio.run(serve())
    return 0


def try_bind(host: str, port: int) -> None:
    """Refuse, in one line, an address this machine cannot serve on (busy, not its own), before
    anything is made; the server binds it again right after."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror included
        raise StudioError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
