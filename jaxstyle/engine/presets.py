"""Presets: named sets of settings, one table that the studio's form, the scripts and the command
line read. A preset's settings go over a config's (the preset wins for the keys it names)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core.errors import ConfigError, quote
from .config import validate

#: The main job's iterations (examples/config.yaml): the last stage's, the coarser stages' twice that.
QUICK_ITERATIONS = 30


@dataclass(frozen=True)
class Preset:
    """A preset: what it is for, the config keys it sets (nested as in a config file), and for
    ``fine`` a rule: the iterations the default gives this config, times ``iterations_factor``."""

    about: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    iterations_factor: int = 0


PRESETS: dict[str, Preset] = {
    "quick": Preset("the main job's iterations: 30 at the last stage, the coarser stages twice that",
                    {"optimizer": {"iterations": QUICK_ITERATIONS}}),
    "default": Preset("the defaults (docs/config.md)"),
    "fine": Preset("twice the iterations the default gives this size", iterations_factor=2),
    # Every setting in which the defaults depart from the paper's procedure as printed (PAPER.md):
    # its normalisation (Eq. 2 and 5) and with it its alpha/beta, white noise uniform on [0, 1], one
    # stage at the full size, the whole artwork, VGG's zero padding, no lattice term (the paper has
    # none). The paper names no iteration count; 500 L-BFGS iterations is where its loss settles.
    "paper": Preset("the paper's procedure as printed: its loss normalisation and alpha/beta, white noise, one "
                    "stage of 500 L-BFGS iterations, the whole artwork, zero padding, no lattice term",
                    {"losses": "paper", "init": "noise", "noise": "uniform", "scales": [], "style_trim": "none",
                     "padding": "zero", "pooling": "avg", "lattice": 0.0,
                     "optimizer": {"name": "lbfgs", "iterations": 500}}),
    # The quality benchmark's reference (scripts/bench/quality.py): the paper's procedure with the
    # default loss normalisation and alpha/beta, weighed by alpha/beta alone, so its picture is
    # the procedure's and its balance the default's; runs are compared by the yardstick.
    "reference": Preset("the quality benchmark's reference: the paper's procedure with the default loss "
                        "normalisation and alpha/beta (weighting: fixed)",
                        {"losses": "mean", "weighting": "fixed", "init": "noise", "noise": "uniform", "scales": [],
                         "style_trim": "none", "padding": "zero", "pooling": "avg", "lattice": 0.0,
                         "optimizer": {"name": "lbfgs", "iterations": 500}}),
}


def check_preset(name: Any) -> str:
    """``name`` if it names a preset (None and ``""`` name the default); a :class:`ConfigError` else."""
    name = name or "default"
    if not isinstance(name, str) or name not in PRESETS:  # a page's JSON may send a list or a mapping
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, not {quote(name)}")
    return name


def preset_settings(name: str | None, raw: Mapping[str, Any]) -> dict:
    """The settings preset ``name`` gives the config ``raw`` (a rule's are computed from ``raw``,
    which is then validated)."""
    preset = PRESETS[check_preset(name)]
    settings = copy.deepcopy(dict(preset.settings))
    if preset.iterations_factor:
        optimizer = dict(raw.get("optimizer") or {}) if isinstance(raw.get("optimizer"), Mapping) else {}
        base = validate({**raw, "output": "/nonexistent", "optimizer": {**optimizer, "iterations": None}})
        settings["optimizer"] = {"iterations": preset.iterations_factor * base.optimizer.iterations}
    return settings


def apply_preset(raw: Mapping[str, Any], name: str | None, ruled: Mapping[str, Any] | None = None) -> dict:
    """``raw`` with preset ``name``'s settings over it; a nested mapping (``optimizer``, ``video``)
    is merged key by key. ``ruled``: the config a rule's settings are computed from, where later
    overrides will change ``raw`` (default ``raw``)."""
    out = dict(raw)
    for key, value in preset_settings(name, raw if ruled is None else ruled).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            value = {**out[key], **value}
        out[key] = value
    return out
