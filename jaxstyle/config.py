"""Run configuration: YAML in, a validated, typed :class:`Config` out.

Defaults are the paper's settings (conv4_2 content, conv1_1..conv5_1 style at w_l = 1/5, average
pooling, L-BFGS, white-noise initialisation) with three measured departures: the mean-normalised
losses (``losses``), whose alpha/beta gives one balance at every size; white noise of a small
amplitude around mid-grey; and an automatic coarse-to-fine pyramid (``scales: auto``). Relative
paths are taken relative to the current working directory. Every mistake raises
:class:`ConfigError` with one line that names the key.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from .errors import ConfigError
from .images import DEFAULT_MAX_PIXELS
from .losses import NORMALISATIONS, TERMS
from .optim import SolverConfig
from .vgg import check_layers

PAPER_STYLE_LAYERS = {f"conv{i}_1": 0.2 for i in range(1, 6)}

DEFAULTS: dict[str, Any] = {
    "content": None,
    "style": None,
    "output": "outputs/run",
    "size": 512,
    "losses": "mean",
    "alpha": 1.0,
    "beta": None,
    "content_layers": {"conv4_2": 1.0},
    "style_layers": dict(PAPER_STYLE_LAYERS),
    "pooling": "avg",
    "init": "noise",
    "noise": "normal",
    "noise_amplitude": None,
    "seeds": [0],
    "terms": {},
    "sweep": {},
    "optimizer": asdict(SolverConfig()),
    "save_every": 0,
    "print_every": 50,
    "overwrite": False,
    "max_pixels": DEFAULT_MAX_PIXELS,
    "memory_check": True,
    "weights": None,
    "style_blend": None,
    "style_scale": 1.0,
    "preserve_colors": "none",
    "masks": None,
    "denoise": 0,
    "remat": False,
    "scales": "auto",
    "scale_iterations": "auto",
    "upsample": "cubic",
    "tile_size": 0,
    "tile_overlap": 64,
    "tile_passes": 2,
}
#: beta when the config gives none: alpha/beta 1e-3 is the paper's; the mean form's is measured
#: (docs/calibration.md) to give the same balance at 128, 256 and 512 px.
DEFAULT_BETA = {"paper": 1000.0, "mean": 10.0}
#: ``init: noise`` is mid-grey plus noise of this amplitude (std of ``normal``, half-width of
#: ``uniform``); ``noise: uniform`` alone gives the paper's white noise, uniform on [0, 1].
NOISE_DISTRIBUTIONS = ("normal", "uniform")
DEFAULT_NOISE_AMPLITUDE = {"normal": 0.02, "uniform": 0.5}
UPSAMPLE_METHODS = ("nearest", "linear", "cubic", "lanczos3")
#: ``scales: auto``: coarser stages halve the long side while it stays at least this many pixels,
#: so the coarsest stage has a long side from 128 to 255 px (sizes below 256 px run directly).
PYRAMID_MIN_SIDE = 128
#: ``optimizer.iterations`` when the config gives none: the paper's 500 for a run of one stage; the
#: last stage of a multi-stage run refines what its coarser stages made.
DIRECT_ITERATIONS, LAST_STAGE_ITERATIONS = 500, 60
#: ``scale_iterations: auto``: the coarsest stage, which starts from noise, gets this many times the
#: last stage's iterations; the stages between get as many as the last.
COARSEST_FACTOR = 2
COLOR_MODES = ("none", "luminance", "histogram", "chroma")
SWEEPABLE = ("alpha", "beta", "content_layers", "style_layers", "terms")


class _Loader(yaml.SafeLoader):
    """YAML 1.1's float syntax needs a dot and a signed exponent (``1.0e+3``); accept ``1e3`` and
    ``1e-4`` too, as everyone writes loss weights that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str):
    """Parse YAML with the float syntax above."""
    return yaml.load(text, Loader=_Loader)


@dataclass(frozen=True)
class Config:
    """A validated run configuration (see ``DEFAULTS`` and the README for each key)."""

    content: str
    style: str | list[str]
    output: str
    size: int | list[int]
    losses: str
    alpha: float
    beta: float
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    pooling: str
    init: str
    noise: str
    noise_amplitude: float
    seeds: list[int]
    terms: dict[str, float]
    sweep: dict[str, list]
    optimizer: SolverConfig
    save_every: int
    print_every: int
    overwrite: bool
    max_pixels: int
    memory_check: bool = True
    weights: str | None = None
    style_blend: list[float] | None = None
    style_scale: float = 1.0
    preserve_colors: str = "none"
    masks: list[str] | None = None
    denoise: int = 0
    remat: bool = False
    scales: list[int] = field(default_factory=list)
    scale_iterations: list[int] = field(default_factory=list)
    upsample: str = "cubic"
    tile_size: int = 0
    tile_overlap: int = 64
    tile_passes: int = 2
    source: dict = field(default_factory=dict, compare=False)

    @property
    def styles(self) -> list[str]:
        """The style image paths (``style`` may name one or several)."""
        return [self.style] if isinstance(self.style, str) else list(self.style)

    @property
    def blend(self) -> list[float]:
        """Blend weights of the style images, summing to 1 (equal unless ``style_blend`` says)."""
        w = self.style_blend or [1.0] * len(self.styles)
        return [x / sum(w) for x in w]

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain data (what report.json records)."""
        d = asdict(self)
        d.pop("source")
        return d


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _number(name: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, not {value!r}")
    return float(value)


def _positive(name: str, value: Any) -> float:
    value = _number(name, value)
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, not {value!r}")
    return value


def _whole(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value!r}")
    return value


def _layer_weights(name: str, value: Any) -> dict[str, float]:
    if isinstance(value, (list, tuple)):  # a plain list of layers: equal weights summing to 1
        value = {str(l): 1.0 / len(value) for l in value} if value else {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must map layer names to weights, e.g. {{conv4_2: 1.0}}")
    check_layers(list(value))
    return {str(k): _number(f"{name}.{k}", v) for k, v in value.items()}


def _terms(name: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must map term names to weights, e.g. {{tv: 1e-3}}")
    for k in value:
        if k not in TERMS:
            raise ConfigError(f"unknown loss term '{k}' in {name}{_suggest(str(k), TERMS)}; "
                              f"known terms: {', '.join(sorted(TERMS))}")
    return {str(k): _number(f"{name}.{k}", v) for k, v in value.items()}


def _check_keys(data: Mapping, valid, where: str) -> None:
    for key in data:
        if key not in valid:
            raise ConfigError(f"unknown config key '{where}{key}'{_suggest(str(key), valid)}")


def validate(raw: Mapping[str, Any]) -> Config:
    """Fill defaults into ``raw`` and check every value; returns a :class:`Config`."""
    if not isinstance(raw, Mapping):
        raise ConfigError("the config must be a YAML mapping of keys to values")
    _check_keys(raw, DEFAULTS, "")
    d = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if key == "optimizer":
            if not isinstance(value, Mapping):
                raise ConfigError("optimizer must be a mapping, e.g. {name: lbfgs, iterations: 500}")
            _check_keys(value, DEFAULTS["optimizer"], "optimizer.")
            d["optimizer"].update(value)
        else:
            d[key] = value
    if not isinstance(d["content"], (str, Path)) or not str(d["content"]):
        raise ConfigError("'content' must be the path of an image file")
    style = d["style"]
    if isinstance(style, Path):
        style = str(style)
    if isinstance(style, list) and len(style) == 1:
        style = style[0]
    if not (isinstance(style, str) and style) and not (
            isinstance(style, list) and style and all(isinstance(x, str) and x for x in style)):
        raise ConfigError("'style' must be the path of an image file, or a list of them")
    n_styles = 1 if isinstance(style, str) else len(style)
    blend = d["style_blend"]
    if blend is not None:
        if not isinstance(blend, list) or len(blend) != n_styles:
            raise ConfigError(f"style_blend must be a list of {n_styles} weight(s), one per style image")
        blend = [_number("style_blend[]", w) for w in blend]
        if sum(blend) <= 0:
            raise ConfigError("style_blend must not be all zero")
    masks = d["masks"]
    if masks is not None:
        if not isinstance(masks, list) or len(masks) != n_styles or not all(isinstance(m, str) for m in masks):
            raise ConfigError(f"masks must be a list of {n_styles} mask image path(s), one per style image")
        if blend is not None:
            raise ConfigError("masks and style_blend cannot be combined: masks give each region one "
                              "style, style_blend mixes styles everywhere")
    if d["preserve_colors"] not in COLOR_MODES:
        raise ConfigError(f"preserve_colors must be one of {', '.join(COLOR_MODES)}, not {d['preserve_colors']!r}")
    denoise = _whole("denoise", d["denoise"])
    if denoise not in (0, 3, 5):
        raise ConfigError(f"denoise must be 0 (off), 3 or 5 (median filter size), not {denoise}")
    if not isinstance(d["output"], (str, Path)) or not str(d["output"]):
        raise ConfigError("'output' must be a directory path")
    if not isinstance(d["init"], (str, Path)) or not str(d["init"]):
        raise ConfigError("'init' must be noise, content, style or an image path")
    if d["losses"] not in NORMALISATIONS:
        raise ConfigError(f"losses must be one of {', '.join(NORMALISATIONS)}, not {d['losses']!r}")
    if d["beta"] is None:
        d["beta"] = DEFAULT_BETA[d["losses"]]
    if d["noise"] not in NOISE_DISTRIBUTIONS:
        raise ConfigError(f"noise must be one of {', '.join(NOISE_DISTRIBUTIONS)}, not {d['noise']!r}")
    if d["noise_amplitude"] is None:
        d["noise_amplitude"] = DEFAULT_NOISE_AMPLITUDE[d["noise"]]
    if d["pooling"] not in ("avg", "max"):
        raise ConfigError(f"pooling must be 'avg' or 'max', not {d['pooling']!r}")
    seeds = d["seeds"]
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError("seeds must be a non-empty list of whole numbers, e.g. [0, 1, 2, 3]")
    seeds = [_whole("seeds[]", s) for s in seeds]
    if max(seeds) >= 2**31:
        raise ConfigError(f"seeds must be below 2**31, not {max(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds must not repeat")
    sweep = d["sweep"] or {}
    if not isinstance(sweep, Mapping):
        raise ConfigError("sweep must map keys to lists of values, e.g. {alpha: [1e-4, 1e-3]}")
    for key, values in sweep.items():
        if key not in SWEEPABLE:
            raise ConfigError(f"cannot sweep '{key}'{_suggest(str(key), SWEEPABLE)}; "
                              f"sweepable: {', '.join(SWEEPABLE)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key} must be a non-empty list")
    checked_sweep = {
        k: [(_layer_weights(f"sweep.{k}[]", v) if k.endswith("layers") else
             _terms(f"sweep.{k}[]", v) if k == "terms" else _number(f"sweep.{k}[]", v)) for v in vs]
        for k, vs in sweep.items()}
    size = _size(d["size"])
    scales = _scales(d["scales"], int(max(np.atleast_1d(size))))
    if "iterations" not in (raw.get("optimizer") or {}):
        d["optimizer"]["iterations"] = LAST_STAGE_ITERATIONS if scales else DIRECT_ITERATIONS
    optimizer = SolverConfig(**d["optimizer"]).validate()
    cfg = Config(
        content=str(d["content"]), style=style, output=str(d["output"]),
        size=size, losses=d["losses"],
        alpha=_number("alpha", d["alpha"]), beta=_number("beta", d["beta"]),
        content_layers=_layer_weights("content_layers", d["content_layers"]),
        style_layers=_layer_weights("style_layers", d["style_layers"]),
        pooling=d["pooling"], init=str(d["init"]), noise=d["noise"],
        noise_amplitude=_number("noise_amplitude", d["noise_amplitude"]), seeds=seeds, terms=_terms("terms", d["terms"]),
        sweep=checked_sweep, optimizer=optimizer,
        save_every=_whole("save_every", d["save_every"]), print_every=_whole("print_every", d["print_every"]),
        overwrite=_bool("overwrite", d["overwrite"]),
        max_pixels=_whole("max_pixels", d["max_pixels"], 1),
        memory_check=_bool("memory_check", d["memory_check"]),
        weights=None if d["weights"] is None else str(d["weights"]),
        style_blend=blend, style_scale=_positive("style_scale", d["style_scale"]),
        preserve_colors=d["preserve_colors"], masks=masks, denoise=denoise,
        remat=_bool("remat", d["remat"]),
        **_highres(d, scales, optimizer.iterations),
        source=dict(raw),
    )
    if not cfg.content_layers and not cfg.style_layers and "content_layers" not in sweep \
            and "style_layers" not in sweep:
        raise ConfigError("content_layers and style_layers are both empty: nothing to optimise")
    return cfg


def _size(value: Any) -> int | list[int]:
    """The long side in pixels, or an exact ``[height, width]``."""
    if isinstance(value, list):
        if len(value) != 2:
            raise ConfigError(f"size must be the long side in pixels or [height, width], not {value!r}")
        return [_whole("size[]", v, 1) for v in value]
    return _whole("size", value, 1)


def auto_scales(size: int) -> list[int]:
    """Long sides of the automatic pyramid's coarser stages for a final long side ``size``: halved
    (rounding up) while at least :data:`PYRAMID_MIN_SIDE`; coarsest first. 512 -> [128, 256]."""
    scales, side = [], size
    while (side + 1) // 2 >= PYRAMID_MIN_SIDE:
        side = (side + 1) // 2
        scales.insert(0, side)
    return scales


def auto_scale_iterations(n_coarse: int, last: int) -> list[int]:
    """Iterations of ``n_coarse`` coarser stages, coarsest first, when the last stage runs ``last``:
    :data:`COARSEST_FACTOR` times ``last`` for the coarsest, ``last`` for the others."""
    return [COARSEST_FACTOR * last if i == 0 else last for i in range(n_coarse)]


def _scales(value: Any, size: int) -> list[int]:
    if value == "auto":
        return auto_scales(size)
    scales = value or []
    if isinstance(scales, int) and not isinstance(scales, bool):
        scales = [scales]
    if not isinstance(scales, list):
        raise ConfigError("scales must be auto or a list of long sides in pixels, coarsest first, e.g. [256, 512]")
    scales = [_whole("scales[]", s, 1) for s in scales]
    if any(b <= a for a, b in zip(scales, scales[1:])) or (scales and scales[-1] >= size):
        raise ConfigError(f"scales must increase and stay below size ({size}), not {scales}")
    return scales


def _highres(d: Mapping[str, Any], scales: list[int], iterations: int) -> dict[str, Any]:
    """Check the coarse-to-fine and tiling keys (``scales`` already resolved by :func:`_scales`)."""
    its = d["scale_iterations"]
    if its in ("auto", None, []):
        its = auto_scale_iterations(len(scales), iterations)
    elif isinstance(its, int) and not isinstance(its, bool):
        its = [its] * len(scales)
    if not isinstance(its, list) or len(its) != len(scales):
        raise ConfigError(f"scale_iterations must be auto, one whole number or a list of {len(scales)}, "
                          "one per scale")
    its = [_whole("scale_iterations[]", n) for n in its]
    if any(n > 10**7 for n in its):
        raise ConfigError("scale_iterations must be at most 10000000")
    if d["upsample"] not in UPSAMPLE_METHODS:
        raise ConfigError(f"upsample must be one of {', '.join(UPSAMPLE_METHODS)}, not {d['upsample']!r}")
    overlap = _whole("tile_overlap", d["tile_overlap"])
    tile = _whole("tile_size", d["tile_size"])
    if tile and tile <= 2 * overlap:
        raise ConfigError(f"tile_size ({tile}) must be more than twice tile_overlap ({overlap}), or 0 for no tiling")
    passes = _whole("tile_passes", d["tile_passes"], 1)
    if passes > 100:
        raise ConfigError(f"tile_passes must be at most 100, not {passes}")
    return {"scales": scales, "scale_iterations": its, "upsample": d["upsample"], "tile_size": tile,
            "tile_overlap": overlap, "tile_passes": passes}


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optimizer.iterations=100"`` -> (["optimizer", "iterations"], 100); the value is YAML."""
    if "=" not in text:
        raise ConfigError(f"--set needs key=value, got '{text}'")
    key, value = text.split("=", 1)
    try:
        parsed = yaml_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value '{value}'") from None
    return key.strip().split("."), parsed


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or start from defaults with ``path=None``) and apply ``--set`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}: invalid YAML{where}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {'.'.join(keys)}: '{k}' is not a mapping")
        node[keys[-1]] = value
    return validate(raw)
