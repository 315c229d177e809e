"""What the studio's page shows of its folder's runs: a card per run (its state, images, files,
settings), a run's config as it ran, and the form that gives it back ("use these settings"). Reads
only; every report and config is checked for shape, since a folder may hold anything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..core.errors import ConfigError
from ..engine.config import validate, yaml_load
from .server import CONTENT_TYPES
from .queue import CHECKPOINT, RUN_NAME, STATE_DIR

#: What the studio serves of a run's folder and of its inputs, by suffix.
TYPES = {**CONTENT_TYPES, ".jpeg": "image/jpeg", ".tiff": "image/tiff", ".bmp": "image/bmp", ".gif": "image/gif",
         ".webm": "video/webm", ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".mov": "video/quicktime"}
SERVED_SUFFIXES = tuple(TYPES)


def differing_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a config (report.json's, resolved, or a submitted one) that differ from the
    defaults, but for ``content``, ``style`` and ``output``. Settings derived from the size (the
    stages, the iterations) count as differing only if they differ from the defaults at that size."""
    try:
        defaults = validate({"content": config["content"], "style": config["style"],
                             "size": config.get("size", 512)}).to_dict()
    except (ConfigError, KeyError):
        return {}
    skip = {"content", "style", "output"}
    out: dict[str, Any] = {}
    if config.get("size", 512) != validate({"content": config["content"], "style": config["style"]}).size:
        out["size"] = config["size"]
    for k, v in config.items():
        if k in skip or k not in defaults or k in out:
            continue
        if isinstance(v, Mapping) and isinstance(defaults[k], Mapping):
            for kk, vv in v.items():
                if defaults[k].get(kk) != vv:
                    out[f"{k}.{kk}"] = vv
        elif defaults[k] != v:
            out[k] = v
    return out


def report_of(folder: Path) -> dict:
    """A run's report.json as far as the studio reads it: a mapping whose ``config`` is a
    mapping, ``variants`` a list of mappings, ``timing`` a mapping and ``sheet`` a name; a
    report of any other shape (a foreign file, a half-written one) is ``{"unreadable": True}``;
    none at all is ``{}``."""
    try:
        report = json.loads((folder / "report.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError):
        return {"unreadable": True}
    shapes = {"config": dict, "variants": list, "timing": dict, "sheet": str}
    if not isinstance(report, dict) or any(k in report and not isinstance(report[k], t) for k, t in shapes.items()) \
            or not all(isinstance(v, dict) for v in report.get("variants", [])):
        return {"unreadable": True}
    return report


class Views:
    """The cards and forms of ``studio``'s runs (a :class:`jaxstyle.serve.studio.Studio`), each
    read again only when its report or its studio config changes: the page asks every second."""

    def __init__(self, studio):
        self.studio = studio
        self._cache: dict[str, tuple] = {}

    def config_of(self, name: str) -> dict | None:
        """The config a run ran with (its report), or was submitted with (the studio's copy),
        validated (resolved); None if it has none that validates."""
        config = report_of(self.studio.folder / name).get("config") or self.job_config(name)
        if not isinstance(config, dict):
            return None
        try:
            return validate({**config, "output": str(self.studio.folder / name)}).to_dict()
        except ConfigError:
            return None

    def job_config(self, name: str) -> dict | None:
        try:
            config = yaml_load((self.studio.jobs_dir / f"{name}.yaml").read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return config if isinstance(config, dict) else None

    def cards(self) -> list[dict]:
        """Every run in the folder, command-line runs included, and every queued one, newest first."""
        names = {p.name for p in self.studio.folder.iterdir() if p.is_dir() and not p.is_symlink()
                 and p.name != STATE_DIR and RUN_NAME.match(p.name)}
        names |= {j["name"] for j in self.studio.jobs}
        cards = []
        for name in names:
            folder, job = self.studio.folder / name, self.studio.job(name)
            report, view = self.view(name)
            message = (job or {}).get("message", "")
            if job is not None and job["state"] in ("waiting", "running"):
                state = job["state"]
            elif report.get("unreadable"):
                state, message = "unreadable", "its report.json is not one the studio can read"
            elif (folder / CHECKPOINT).exists():
                state = "interrupted"
            elif report.get("variants"):
                state = "finished"
            else:
                state = job["state"] if job is not None else "failed"
            files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()
                           and p.suffix in SERVED_SUFFIXES) if folder.is_dir() else []
            images = [v["image"] for v in report.get("variants", []) if isinstance(v.get("image"), str)]
            seconds = (report.get("timing") or {}).get("run_s")
            submitted = (job or {}).get("submitted")
            cards.append({
                "name": name, "state": state, "message": message,
                "time": submitted if isinstance(submitted, (int, float)) else
                (folder.stat().st_mtime if folder.is_dir() else 0),
                "seconds": seconds if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None,
                "sheet": report.get("sheet") if report.get("sheet") in files else (images[0] if images else None),
                "images": [i for i in images if i in files], "files": files, **view,
            })
        return sorted(cards, key=lambda c: -c["time"])

    def view(self, name: str) -> tuple[dict, dict]:
        """A run's report and what its card shows of its config (inputs, settings, the form), read
        again only when its report or its studio config changes: the page asks every second."""
        stamps = []
        for path in (self.studio.folder / name / "report.json", self.studio.jobs_dir / f"{name}.yaml"):
            try:
                st_ = path.stat()
                stamps.append((st_.st_mtime_ns, st_.st_size))
            except OSError:
                stamps.append(None)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == stamps:
            return cached[1], cached[2]
        report = report_of(self.studio.folder / name)
        config = self.config_of(name) or {}
        styles = config.get("style") if isinstance(config.get("style"), list) else [config.get("style")]
        view = {"content": self.input_id(config.get("content")), "styles": [self.input_id(s) for s in styles],
                "settings": differing_settings(config) if config else {}, "form": self.form_of(config)}
        self._cache[name] = (stamps, report, view)
        return report, view

    def input_id(self, path: Any) -> str | None:
        """The id of an input path the studio may show (examples, uploads, runs), else None."""
        if not isinstance(path, str) or not self.studio.inside(path):
            return None
        real = Path(os.path.realpath(path))
        for prefix, root in (("examples", self.studio.examples), ("uploads", self.studio.uploads)):
            if real.parent == Path(os.path.realpath(root)):
                return f"{prefix}/{real.name}"
        return f"runs/{real.parent.name}/{real.name}"

    def form_of(self, config: Mapping[str, Any]) -> dict:
        """The form that gives ``config`` back ("use these settings"): the knobs, and every other
        setting that differs from the defaults in the advanced box."""
        if not config:
            return {}
        styles = config.get("style") if isinstance(config.get("style"), list) else [config.get("style")]
        form = {"content": self.input_id(config.get("content")), "styles": [self.input_id(s) for s in styles],
                "size": config.get("size"), "seeds": " ".join(str(s) for s in config.get("seeds", [0])),
                "style_loss": config.get("style_loss"), "preserve_colors": config.get("preserve_colors"),
                "style_scale": config.get("style_scale"), "preset": "default"}
        rest = {k: v for k, v in differing_settings(config).items()
                if k not in ("size", "seeds", "style_loss", "preserve_colors", "style_scale")}
        nested: dict[str, Any] = {}
        for k, v in rest.items():
            if "." in k:
                top, sub = k.split(".", 1)
                nested.setdefault(top, {})[sub] = v
            else:
                nested[k] = v
        form["advanced"] = yaml.safe_dump(nested, sort_keys=False) if nested else ""
        return form
