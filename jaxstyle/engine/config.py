"""Run configuration: YAML in, a validated, typed :class:`Config` out.

Every key is declared once, as a field of :class:`Config` made by :func:`key`: its default (a value,
or one computed from keys declared before it), its check (type and bounds), how the docs show the
default and a one-line meaning. Validation (:func:`validate`) and the docs' table
(:func:`config_table`, docs/config.md) are both made from those declarations. The optimiser's own
keys are declared beside each optimiser (:data:`jaxstyle.engine.solvers.REGISTRY`).

Defaults are the paper's settings (conv4_2 content, conv1_1..conv5_1 style at w_l = 1/5, average
pooling, L-BFGS, white-noise initialisation) with three measured departures: the mean-normalised
losses, faint noise around mid-grey and an automatic coarse-to-fine pyramid (docs/quality.md).
Relative paths are taken relative to the current working directory. Every mistake raises
:class:`ConfigError` with one line that names the key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import yaml

from ..core.errors import ConfigError, quote
from .plan import DIRECT_ITERATIONS, LAST_STAGE_ITERATIONS, auto_scale_iterations, auto_scales
from ..media.images import DEFAULT_MAX_PIXELS
from ..model.losses import NORMALISATIONS, TERMS
from ..model.style_losses import CONTENT_LOSSES, POOLED, STYLE_LOSSES
from ..model.terms import check_term_file, is_file_term
from .program import STRATEGIES
from .solvers import REGISTRY, non_negative, one_of, whole
from ..model.vgg import check_layers
from ..media.video import VIDEO_SUFFIXES, Selection, is_clip

PAPER_STYLE_LAYERS = {f"conv{i}_1": 0.2 for i in range(1, 6)}
#: beta when the config gives none: alpha/beta 1e-3 is the paper's; the mean form's 0.1 is measured
#: (docs/calibration.md) to give the same balance at 128, 256 and 512 px.
DEFAULT_BETA = {"paper": 1000.0, "mean": 10.0}
#: ``init: noise`` is mid-grey plus noise of this amplitude (std of ``normal``, half-width of
#: ``uniform``); ``noise: uniform`` alone gives the paper's white noise, uniform on [0, 1].
NOISE_DISTRIBUTIONS = ("normal", "uniform")
DEFAULT_NOISE_AMPLITUDE = {"normal": 0.02, "uniform": 0.5}
UPSAMPLE_METHODS = ("nearest", "linear", "cubic", "lanczos3")
COLOR_MODES = ("none", "luminance", "histogram", "chroma", "palette")
SWEEPABLE = ("alpha", "beta", "content_layers", "style_layers", "terms", "style_loss", "content_loss", "temporal",
             "lattice", "weighting")
#: ``style_loss: mrf``'s layers: Li and Wand's relu3_1 and relu4_1 (their code's choice too).
MRF_LAYERS = {"conv3_1": 1.0, "conv4_1": 1.0}
#: ``content_loss: self_similarity``'s layers: a hypercolumn from the first to the fourth block, as
#: STROTSS's is (docs/loss-lab.md: conv4_2 alone left the photograph's fine layout free).
SIMILARITY_LAYERS = {"conv1_1": 1.0, "conv2_1": 1.0, "conv3_1": 1.0, "conv4_1": 1.0}
#: ``temporal``'s default with ``losses: mean`` (docs/video.md: how it was measured); with ``paper``
#: the content term grows with the image's area, so the same weight ties frames less.
DEFAULT_TEMPORAL = 5.0
#: ``lattice``'s default: with ``losses: mean`` it removes the 2-px lattice at a yardstick loss within
#: 1 % (docs/highres.md); with ``paper`` the objective stays the paper's, so it is off.
DEFAULT_LATTICE = {"paper": 0.0, "mean": 1000.0}
#: How the style term is weighed against the content term (docs/calibration.md): ``auto`` (the
#: default with ``mean``) measures a factor per stage from the two ends of the trade for a sparse
#: artwork, and adds the ``range`` term there, and leaves a dense painting's alpha/beta exactly;
#: ``fixed`` is alpha/beta alone, as the paper has it.
WEIGHTINGS = ("auto", "fixed")
VIDEO_MODES = ("sequential", "multipass")
IMAGE_FORMATS = ("png", "jpg", "webp", "tiff")


# ---- YAML ---------------------------------------------------------------------------------------
#: A config is a few dozen values: text, nesting and nodes past these are refused, so no YAML (a
#: file, a ``--set`` value, the studio's box) can stall a run or a server or exhaust its memory.
MAX_YAML_CHARS, MAX_YAML_DEPTH, MAX_YAML_NODES = 1_000_000, 32, 20_000


class YAMLLimitError(yaml.YAMLError):
    """YAML refused by a bound (an alias, the nesting, the node count, the length); one line."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with two changes.

    YAML 1.1's float syntax needs a dot and a signed exponent (``1.0e+3``); ``1e3`` and ``1e-4`` are
    accepted too, as everyone writes loss weights that way. Aliases (``*name``) are refused, and
    nesting and the node count are bounded: a few hundred bytes of nested aliases expand to
    gigabytes, and deep nesting overflows Python's stack.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = self._nodes = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise YAMLLimitError(f"YAML aliases (*name) are not accepted (line {mark.line + 1}): write the value out")
        self._depth, self._nodes = self._depth + 1, self._nodes + 1
        if self._depth > MAX_YAML_DEPTH:
            raise YAMLLimitError(f"YAML nested more than {MAX_YAML_DEPTH} levels deep")
        if self._nodes > MAX_YAML_NODES:
            raise YAMLLimitError(f"YAML of more than {MAX_YAML_NODES:,} values")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str):
    """Parse YAML with the float syntax and the bounds above; :class:`YAMLLimitError` past a bound."""
    if len(text) > MAX_YAML_CHARS:
        raise YAMLLimitError(f"YAML of more than {MAX_YAML_CHARS:,} characters")
    return yaml.load(text, Loader=_Loader)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: a bound's own message, or ``invalid YAML at line N``."""
    if isinstance(exc, YAMLLimitError):
        return str(exc)
    mark = getattr(exc, "problem_mark", None)
    return "invalid YAML" + (f" at line {mark.line + 1}" if mark else "")


# ---- checks: (name, value, keys checked so far) -> the checked value -----------------------------
Check = Callable[[str, Any, dict], Any]


#: Other tools' names (neural-style's, with ``-`` or ``_``) for what a config key here does: the
#: did-you-mean names the key, what it means, and its command-line flag.
PEER_NAMES = {
    "content_weight": "'alpha' (--content-weight; ours is alpha/beta 0.1 with beta 10, not neural-style's 5/100)",
    "style_weight": "'beta' (--style-weight; 10 by default, alpha/beta is what counts)",
    "num_iterations": "--iterations (the run's total over every stage) or 'optimizer.iterations' (the last stage's)",
    "iterations": "--iterations (the run's total over every stage) or 'optimizer.iterations' (the last stage's)",
    "image_size": "'size' (--size, the long side in pixels)",
    "content_image": "'content' (the photograph)",
    "style_image": "'style' (the artwork, or a list)",
    "output_image": "'output' (-o, a folder, or a file NAME.png with the quick form)",
    "tv_weight": "'terms: {tv: W}' (--tv-weight)",
    "init_image": "'init' (--init, an image path)",
    "original_colors": "'preserve_colors' (--original-colors is preserve_colors: luminance)",
    "print_iter": "'print_every' (--print-every)",
    "save_iter": "'save_every' (--save-every)",
    "seed": "'seeds' (--seeds, a list: one image each)",
    "style_blend_weights": "'style_blend' (--style-blend-weights)",
    "learning_rate": "'optimizer.learning_rate' (--learning-rate, with optimizer.name: adam)",
    "lbfgs_num_correction": "'optimizer.history_size'",
    "model_file": "'weights' (a converted .h5)",
    "gpu": "nothing: jax runs on the GPU when it finds one ('jaxstyle doctor' says which)",
    "backend": "nothing: jax picks the backend ('jaxstyle doctor' says which)",
    "normalize_gradients": "nothing: 'weighting: auto' balances the terms ('losses: mean', docs/calibration.md)",
}


def _suggest(key: str, valid) -> str:
    peer = PEER_NAMES.get(key.lstrip("-").replace("-", "_"))
    if peer is not None:
        return f" (neural-style's '{key}' is {peer})"
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _number(name: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, not {quote(value)}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, not {quote(value)}")
    return float(value)


def _whole(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, not {quote(value)}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {quote(value)}")
    return value


def number(name: str, value: Any, c: dict) -> float:
    return _number(name, value)


def positive(name: str, value: Any, c: dict) -> float:
    value = _number(name, value)
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, not {quote(value)}")
    return value


def count(minimum: int = 0, maximum: int | None = None) -> Check:
    def check(name: str, value: Any, c: dict) -> int:
        value = _whole(name, value, minimum)
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, not {quote(value)}")
        return value
    return check


def boolean(name: str, value: Any, c: dict) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, not {quote(value)}")
    return value


def choice(*options: str) -> Check:
    def check(name: str, value: Any, c: dict) -> str:
        if isinstance(value, bool):  # YAML reads yes, no, on, off, true and false as booleans
            raise ConfigError(f"{name} must be one of {', '.join(options)}, not the YAML boolean "
                              f"{str(value).lower()} (yes, no, on and off are booleans too): name one of them")
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, not {quote(value)}")
        return value
    return check


def _path_text(name: str, value: str) -> str:
    """A path the file system can be asked about: no NUL, at most 4096 characters and 255 bytes a
    part (beyond these the OS raises instead of answering "no such file")."""
    if "\0" in value or len(value) > 4096 or any(len(part.encode("utf-8", "surrogatepass")) > 255
                                                  for part in value.split("/")):
        raise ConfigError(f"'{name}' is not a usable path: {quote(value)}")
    return value


def path(what: str) -> Check:
    def check(name: str, value: Any, c: dict) -> str:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"'{name}' must be {what}")
        return _path_text(name, str(value))
    return check


def optional_path(name: str, value: Any, c: dict) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"'{name}' must be a path, or null")
    return _path_text(name, str(value))


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
        if k == "temporal":
            raise ConfigError(f"the temporal term is set by the top-level key 'temporal' (clips only), not in {name}")
        if k == "lattice":
            raise ConfigError(f"the lattice term is set by the top-level key 'lattice', not in {name}")
        if is_file_term(str(k)) and k not in TERMS:
            # Its file must exist; it is imported only where it runs (terms.resolve_terms), never to
            # validate: the studio validates configs it may not run.
            check_term_file(str(k))
        elif k not in TERMS:
            raise ConfigError(f"unknown loss term '{k}' in {name}{_suggest(str(k), TERMS)}; "
                              f"known terms: {', '.join(sorted(TERMS))}, or 'path/to/file.py:function'")
    return {str(k): _number(f"{name}.{k}", v) for k, v in value.items()}


def layer_weights(name: str, value: Any, c: dict) -> dict[str, float]:
    return _layer_weights(name, value)


def terms(name: str, value: Any, c: dict) -> dict[str, float]:
    return _terms(name, value)


def size(name: str, value: Any, c: dict) -> int | list[int]:
    """The long side in pixels, or an exact ``[height, width]``."""
    if isinstance(value, list):
        if len(value) != 2:
            raise ConfigError(f"size must be the long side in pixels or [height, width], not {quote(value)}")
        return [_whole("size[]", v, 1) for v in value]
    return _whole(name, value, 1)


def style(name: str, value: Any, c: dict) -> str | list[str]:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not (isinstance(value, str) and value) and not (
            isinstance(value, list) and value and all(isinstance(x, str) and x for x in value)):
        raise ConfigError("'style' must be the path of an image file, or a list of them")
    for p in [value] if isinstance(value, str) else value:
        _path_text(name, p)
    # A video or a folder of frames is refused; an animated GIF counts as its first frame, as for
    # any image.
    clip = next((p for p in ([value] if isinstance(value, str) else value)
                 if Path(p).is_dir() or Path(p).suffix.lower() in VIDEO_SUFFIXES), None)
    if clip is not None:
        raise ConfigError(f"style {clip} is a clip; the style must be an image (a clip can be the content)")
    return value


def _n_styles(c: dict) -> int:
    return 1 if isinstance(c["style"], str) else len(c["style"])


def style_blend(name: str, value: Any, c: dict) -> list[float] | None:
    if value is None:
        return None
    n = _n_styles(c)
    if not isinstance(value, list) or len(value) != n:
        raise ConfigError(f"style_blend must be a list of {n} weight(s), one per style image")
    value = [_number("style_blend[]", w) for w in value]
    if sum(value) <= 0:
        raise ConfigError("style_blend must not be all zero")
    return value


def masks(name: str, value: Any, c: dict) -> list[str] | None:
    if value is None:
        return None
    n = _n_styles(c)
    if not isinstance(value, list) or len(value) != n or not all(isinstance(m, str) for m in value):
        raise ConfigError(f"masks must be a list of {n} mask image path(s), one per style image")
    for m in value:
        _path_text(name, m)
    if c["style_blend"] is not None:
        raise ConfigError("masks and style_blend cannot be combined: masks give each region one "
                          "style, style_blend mixes styles everywhere")
    return value


def seeds(name: str, value: Any, c: dict) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError("seeds must be a non-empty list of whole numbers, e.g. [0, 1, 2, 3]")
    value = [_whole("seeds[]", s) for s in value]
    if max(value) >= 2**31:
        raise ConfigError(f"seeds must be below 2**31, not {max(value)}")
    if len(set(value)) != len(value):
        raise ConfigError("seeds must not repeat")
    return value


def sweep(name: str, value: Any, c: dict) -> dict[str, list]:
    value = value or {}
    if not isinstance(value, Mapping):
        raise ConfigError("sweep must map keys to lists of values, e.g. {alpha: [1e-4, 1e-3]}")
    for k, values in value.items():
        if k not in SWEEPABLE:
            raise ConfigError(f"cannot sweep '{k}'{_suggest(str(k), SWEEPABLE)}; sweepable: {', '.join(SWEEPABLE)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{k} must be a non-empty list")
    if "temporal" in value and not is_clip(c["content"]):
        raise ConfigError("sweep.temporal needs a clip as the content (a video file or a folder of frames)")
    parse = {"terms": _terms, "style_loss": _style_loss, "weighting": lambda n, v: choice(*WEIGHTINGS)(n, v, {}),
             "content_loss": lambda n, v: choice(*CONTENT_LOSSES)(n, v, {})}
    return {k: [(_layer_weights(f"sweep.{k}[]", v) if k.endswith("layers") else
                 parse.get(k, _number)(f"sweep.{k}[]", v)) for v in vs]
            for k, vs in value.items()}


def _style_loss(name: str, value: Any) -> str:
    if value not in STYLE_LOSSES:
        raise ConfigError(f"{name} must be one of {', '.join(STYLE_LOSSES)}, not {quote(value)}"
                          f"{_suggest(str(value), STYLE_LOSSES)}")
    return value


def style_loss(name: str, value: Any, c: dict) -> str:
    return _style_loss(name, value)


def check_style_losses(cfg: "Config") -> None:
    """Alternative style and content losses need the mean-normalised losses, masks need the Gram
    loss, and the pooled losses (``mrf``, ``remd``) an equal blend and their own layers."""
    chosen = [cfg.style_loss, *cfg.sweep.get("style_loss", [])]
    contents = [cfg.content_loss, *cfg.sweep.get("content_loss", [])]
    if cfg.losses != "mean" and "self_similarity" in contents:
        raise ConfigError("content_loss self_similarity needs losses: mean")
    pooled = next((k for k in chosen if k in POOLED), None)
    if pooled is not None and len(set(cfg.blend)) > 1:
        raise ConfigError(f"style_loss {pooled} pools the artworks' patches or samples, so it cannot weigh "
                          "them unequally: remove style_blend")
    if "mrf" in chosen and "style_layers" in cfg.sweep:
        raise ConfigError("style_loss mrf matches patches at mrf_layers, not style_layers: sweep one or the other")
    if "self_similarity" in contents and "content_layers" in cfg.sweep:
        raise ConfigError("content_loss self_similarity compares similarity_layers, not content_layers: "
                          "sweep one or the other")
    other = next((k for k in chosen if k != "gram"), None)
    if other is None:
        return
    if cfg.losses != "mean":
        raise ConfigError(f"style_loss {other} needs losses: mean (Eq. 4's unnormalised form is the Gram loss's)")
    if cfg.masks is not None:
        raise ConfigError(f"style_loss {other} cannot be combined with masks: guided style (masks) is "
                          "defined for the Gram loss only")


def denoise(name: str, value: Any, c: dict) -> int:
    value = _whole(name, value)
    if value not in (0, 3, 5):
        raise ConfigError(f"denoise must be 0 (off), 3 or 5 (median filter size), not {value}")
    return value


def long_side(c: dict) -> int:
    """The final image's long side in pixels (``size`` may be ``[height, width]``)."""
    return int(max(np.atleast_1d(c["size"])))


def scales(name: str, value: Any, c: dict) -> list[int]:
    top = long_side(c)
    if value == "auto":
        return auto_scales(top)
    value = value or []
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError("scales must be auto or a list of long sides in pixels, coarsest first, e.g. [256, 512]")
    value = [_whole("scales[]", s, 1) for s in value]
    if any(b <= a for a, b in zip(value, value[1:])) or (value and value[-1] >= top):
        raise ConfigError(f"scales must increase and stay below size ({top}), not {value}")
    return value


def scale_iterations(name: str, value: Any, c: dict) -> list[int]:
    n = len(c["scales"])
    if value in ("auto", None, []):
        return auto_scale_iterations(n, c["optimizer"].iterations)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * n
    if not isinstance(value, list) or len(value) != n:
        raise ConfigError(f"scale_iterations must be auto, one whole number or a list of {n}, one per scale")
    value = [_whole("scale_iterations[]", v) for v in value]
    if any(v > 10**7 for v in value):
        raise ConfigError("scale_iterations must be at most 10000000")
    return value


def bits(name: str, value: Any, c: dict) -> int:
    value = _whole(name, value)
    if value not in (8, 16):
        raise ConfigError(f"{name} must be 8 or 16, not {value}")
    if value == 16 and c["image_format"] not in ("png", "tiff"):
        raise ConfigError(f"image_bits 16 needs image_format png or tiff, not {c['image_format']}")
    return value


def tile_size(name: str, value: Any, c: dict) -> int:
    value = _whole(name, value)
    if value and value <= 2 * c["tile_overlap"]:
        raise ConfigError(f"tile_size ({value}) must be more than twice tile_overlap ({c['tile_overlap']}), "
                          "or 0 for no tiling")
    return value


# ---- the optimizer section ------------------------------------------------------------------------
@dataclass(frozen=True)
class OptimizerConfig:
    """The ``optimizer`` section: the registry entry, how many iterations (of the last stage),
    when a variant stops, how chunks are compiled, and the entry's own options."""

    name: str = "lbfgs"
    iterations: int = DIRECT_ITERATIONS
    tol: float = 0.0
    strategy: str = "auto"
    unroll: int = 1
    options: dict = field(default_factory=lambda: {"history_size": 20})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "iterations": self.iterations, "tol": self.tol, "strategy": self.strategy,
                "unroll": self.unroll, **self.options}


#: The keys every optimiser shares: default (None: computed), check, meaning.
OPTIMIZER_KEYS: dict[str, tuple[Any, Callable[[str, Any], Any], str, str]] = {
    "name": ("lbfgs", lambda name, v: one_of(*REGISTRY)(name, v),
             "the optimiser, an entry of `jaxstyle.engine.solvers.REGISTRY` (docs/optimizer.md)", "`lbfgs`"),
    "iterations": (None, whole(0, 10**7), "iterations of the last stage (at `size`)",
                   f"{DIRECT_ITERATIONS} for a run of one stage (the paper's), {LAST_STAGE_ITERATIONS} after coarser stages"),
    "tol": (0.0, non_negative, "stop a variant once its gradient's norm is at most this (0: never)", "0"),
    "strategy": ("auto", one_of(*STRATEGIES), "how a chunk is compiled: `loop` (one `fori_loop`), "
                                              "`unroll` (steps called from the host), `auto`", "`auto`"),
    "unroll": (1, whole(1, 100), "steps per compiled call with `unroll`", "1"),
}


def optimizer(name: str, value: Any, c: dict) -> OptimizerConfig:
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise ConfigError("optimizer must be a mapping, e.g. {name: lbfgs, iterations: 500}")
    entry_name = one_of(*REGISTRY)("optimizer.name", value.get("name", "lbfgs"))
    own = REGISTRY[entry_name].options
    for k in value:
        if k not in OPTIMIZER_KEYS and k not in own:
            owners = [n for n, e in REGISTRY.items() if k in e.options]
            hint = f"; it is an option of {', '.join(owners)}" if owners else _suggest(str(k), [*OPTIMIZER_KEYS, *own])
            raise ConfigError(f"unknown config key 'optimizer.{k}' for {entry_name}{hint}")
    common = {}
    for k, (default, check, _, _) in OPTIMIZER_KEYS.items():
        v = value.get(k, default)
        if k == "iterations" and v is None:
            v = LAST_STAGE_ITERATIONS if c["scales"] else DIRECT_ITERATIONS
        common[k] = check(f"optimizer.{k}", v)
    options = {k: opt.check(f"optimizer.{k}", value.get(k, opt.default)) for k, opt in own.items()}
    return OptimizerConfig(**common, options=options)


# ---- the video section ----------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoConfig(Selection):
    """The ``video`` section: which frames of the clip (the :class:`jaxstyle.media.video.Selection` it
    extends), and how they are tied (docs/video.md)."""

    mode: str = "sequential"
    passes: int = 5
    pass_iterations: int = 20
    temporal_from: int = 2
    blend: float = 1.0
    frame_iterations: int = 40
    chunk_frames: int | None = None
    warp: str = "bilinear"
    anchor: bool = True
    hold: float = 0.25
    settle: float = 0.02
    settle_window: int = 5
    warm: bool = False
    photo_change: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The video section's keys: default, check, meaning, how the docs show the default.
VIDEO_KEYS: dict[str, tuple[Any, Callable[[str, Any], Any], str, str]] = {
    "start": (None, lambda n, v: None if v is None else _number(n, v), "first second of the clip to use", "0"),
    "end": (None, lambda n, v: None if v is None else _number(n, v), "second at which the clip ends (not included)",
            "the clip's end"),
    "first": (None, lambda n, v: None if v is None else _whole(n, v), "first frame number to use (instead of "
              "`start`/`end`)", "0"),
    "frames": (None, lambda n, v: None if v is None else _whole(n, v, 1), "how many frames from `first`", "all"),
    "every": (1, lambda n, v: _whole(n, v, 1), "keep every n-th frame; the output's frame rate is the source's / n",
              "1"),
    "fps": (24.0, lambda n, v: positive(n, v, {}), "frame rate of a folder of frames (a video file has its own)",
            "24"),
    "mode": ("sequential", lambda n, v: choice(*VIDEO_MODES)(n, v, {}),
             "`sequential`: frame after frame, each from its warped predecessor (the default: it measured better, "
             "docs/video.md); `multipass`: every frame of a chunk in one batch, passes with a blend between them",
             "`sequential`"),
    "passes": (5, lambda n, v: _whole(n, v, 1), "multipass: passes over the chunk (the first is the image "
               "pipeline from noise, with its pyramid)", "5"),
    "pass_iterations": (20, lambda n, v: _whole(n, v, 1), "multipass: iterations of each later pass", "20"),
    "temporal_from": (2, lambda n, v: _whole(n, v, 1), "multipass: the first pass with the temporal term", "2"),
    "blend": (1.0, lambda n, v: _number(n, v), "multipass: b in (x + b c warp(neighbour)) / (1 + b c) between "
              "passes", "1"),
    "frame_iterations": (40, lambda n, v: _whole(n, v, 1),
                         "sequential: iterations of each frame after the first (the first runs the image's plan)",
                         "40"),
    "chunk_frames": (None, lambda n, v: None if v is None else _whole(n, v, 2),
                     "multipass: frames per batch (chunks overlap by one frame); default: as many as fit in memory",
                     "auto"),
    "warp": ("bilinear", lambda n, v: choice("bilinear", "bicubic")(n, v, {}),
             "how a neighbour's frame is moved along the flow: `bilinear` or `bicubic` (Catmull-Rom)", "`bilinear`"),
    "anchor": (True, lambda n, v: boolean(n, v, {}),
               "sequential: also tie every frame to the first, warped along the flow between them, where the "
               "first frame is seen (less slow drift, docs/video.md)", "true"),
    "hold": (0.25, lambda n, v: _number(n, v),
             "sequential: a pixel that the flow from the first frame moves by less than this many pixels, where "
             "the first frame is seen, keeps the first frame's stylised value (a still background stays still, "
             "docs/video.md); 0: off", "0.25"),
    "settle": (0.02, lambda n, v: _share(n, v),
               "sequential: a frame after the first ends before `frame_iterations` once its objective fell, over "
               "the last `settle_window` iterations, by at most this share of its fall since the frame began "
               "(docs/video.md); 0: every frame runs `frame_iterations`", "0.02"),
    "settle_window": (5, lambda n, v: _whole(n, v, 1),
                      "sequential: iterations between two settling tests; a frame runs at least two", "5"),
    "warm": (False, lambda n, v: boolean(n, v, {}),
             "sequential: each frame's L-BFGS starts with the frame before's curvature memory, warped along the "
             "flow (docs/video.md)", "false"),
    "photo_change": (0.5, lambda n, v: _share(n, v, one=True),
                     "sequential: this share of what the photograph did between two frames that the flow does not "
                     "explain (the frame minus the frame before, warped) is added to the warped frame a frame starts "
                     "from (docs/video.md); 0: the warped frame alone", "0.5"),
}


def _share(name: str, value: Any, one: bool = False) -> float:
    """A number from 0 to 1, 1 included only with ``one``."""
    value = _number(name, value)
    if one and not value <= 1.0:
        raise ConfigError(f"{name} must be from 0 to 1, not {value:g}")
    if not one and not value < 1.0:
        raise ConfigError(f"{name} must be at least 0 and below 1, not {value:g}")
    return value


def video(name: str, value: Any, c: dict) -> VideoConfig:
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise ConfigError("video must be a mapping, e.g. {start: 0, end: 2, every: 2}")
    # A resolved config (report.json, a checkpoint) lists every key at its default: only a setting
    # that differs says the user meant a clip.
    if any(k in VIDEO_KEYS and v != VIDEO_KEYS[k][0] for k, v in value.items()) and not is_clip(c["content"]):
        raise ConfigError(f"video applies to clips only, and content {c['content']} is not one "
                          "(a video file or a folder of numbered frames)")
    for k in value:
        if k not in VIDEO_KEYS:
            raise ConfigError(f"unknown config key 'video.{k}'{_suggest(str(k), VIDEO_KEYS)}")
    checked = {k: check(f"video.{k}", value.get(k, default)) for k, (default, check, _, _) in VIDEO_KEYS.items()}
    v = VideoConfig(**checked)
    if (v.start is not None or v.end is not None) and (v.first is not None or v.frames is not None):
        raise ConfigError("video: give start/end (seconds) or first/frames (frame numbers), not both")
    if v.start is not None and v.end is not None and v.end <= v.start:
        raise ConfigError(f"video.end ({v.end:g}) must come after video.start ({v.start:g})")
    if v.temporal_from > v.passes and value.get("temporal_from") is not None:
        raise ConfigError(f"video.temporal_from ({v.temporal_from}) is after the last pass ({v.passes})")
    if is_clip(c["content"]):
        if c["masks"] is not None:
            raise ConfigError("masks cannot be used with a clip: a mask would have to move with every frame")
        if c["init"] not in ("noise", "content"):
            raise ConfigError(f"init {c['init']} cannot be used with a clip: use noise or content")
    return v


# ---- the keys -------------------------------------------------------------------------------------
REQUIRED = object()


@dataclass(frozen=True)
class Computed:
    """A default computed from keys declared before it."""

    fun: Callable[[dict], Any]


def key(default: Any, check: Check, meaning: str, shown: str | None = None):
    """A config key, declared once: its default (a value, :data:`REQUIRED`, or :class:`Computed`),
    its check, its meaning and (where ``repr`` would not do) how the docs show the default."""
    return field(metadata={"default": default, "check": check, "meaning": meaning, "shown": shown})


@dataclass(frozen=True)
class Config:
    """A validated run configuration. Keys are checked in the order declared, so a default or a
    check may use any key above it."""

    content: str = key(REQUIRED, path("the path of an image file"), "the photograph")
    style: str | list[str] = key(REQUIRED, style, "the artwork, or a list of artworks; resized to the content "
                                 "image's size (times `style_scale`) before its Gram matrices are taken")
    output: str = key("outputs/run", path("a directory path"), "output directory")
    size: int | list[int] = key(512, size, "longest side of the content image, in pixels, or an exact `[height, width]`")
    losses: str = key("mean", choice(*NORMALISATIONS),
                      "`mean`: L_content = 1/(N_l M_l) sum (F - P)^2, E_l = 1/N_l^2 sum (G/M_l - A/M_l^style)^2, "
                      "the same at any size; `paper`: Eq. 1 and 4 as printed (docs/calibration.md)")
    style_loss: str = key("gram", style_loss, "`gram` (the paper's Eq. 4), `mean_cov`, `wasserstein`, "
                          "`histogram`, `mrf` (patches), `remd` (relaxed optimal transport) or `neighbours` (NNST; "
                          "docs/loss-lab.md); the others need `losses: mean`")
    content_loss: str = key("features", choice(*CONTENT_LOSSES),
                            "`features` (the paper's Eq. 1) or `self_similarity` (STROTSS: the layout of the "
                            "self-similarity of `similarity_layers`, appearance free; docs/loss-lab.md); the "
                            "latter needs `losses: mean`")
    similarity_layers: dict[str, float] = key(dict(SIMILARITY_LAYERS), layer_weights,
                                              "`content_loss: self_similarity`'s layers -> weight in the "
                                              "hypercolumn (used instead of `content_layers`)",
                                              "`conv1_1` .. `conv4_1`: 1 each")
    mrf_layers: dict[str, float] = key(dict(MRF_LAYERS), layer_weights,
                                       "`style_loss: mrf`'s layers -> weight (used instead of `style_layers`)",
                                       "`conv3_1`, `conv4_1`: 1 each")
    mrf_patch: int = key(3, count(1, 9), "`style_loss: mrf`'s patch side, in positions of the layer")
    mrf_stride: int = key(2, count(1, 64), "`style_loss: mrf`: patches are taken every this many positions, "
                          "in the output and in the artwork (the match grows with its inverse fourth power); each patch "
                          "entry is weighed by one over the number of patches that cover it")
    samples: int = key(1024, count(2, 65536), "`style_loss: remd` and `content_loss: self_similarity`: positions "
                       "sampled (once per stage, from the variant's seed) in the output and in each artwork")
    alpha: float = key(1.0, number, "Eq. 7's content weight")
    beta: float = key(Computed(lambda c: DEFAULT_BETA[c["losses"]]), number,
                      "Eq. 7's style weight: alpha/beta 0.1 with `mean` (measured), the paper's 1e-3 with `paper`",
                      "10 with `mean`, 1000 with `paper`")
    content_layers: dict[str, float] = key({"conv4_2": 1.0}, layer_weights,
                                           "layer -> weight; several layers are summed")
    style_layers: dict[str, float] = key(dict(PAPER_STYLE_LAYERS), layer_weights,
                                         "layer -> w_l of Eq. 5 (0 switches a layer off); a plain list means "
                                         "equal weights summing to 1", "`conv1_1`..`conv5_1`: 0.2 each")
    pooling: str = key("avg", choice("avg", "max"), "`avg` (paper) or `max`")
    padding: str = key("reflect", choice("zero", "reflect", "replicate"),
                       "the convolutions' padding: `zero` (VGG's own, the paper's), `reflect` (the edge "
                       "mirrored) or `replicate` (the edge repeated), where `padding_layers` says; docs/quality.md")
    padding_layers: str = key("first", choice("all", "first"),
                              "where a `reflect` or `replicate` padding applies: `all` convolutions, or the "
                              "`first` only (the image's own edge; the others pad with zeros)")
    init: str = key("noise", path("noise, content, style or an image path"),
                    "`noise` (see `noise`), `content`, `style`, or an image path")
    noise: str = key("normal", choice(*NOISE_DISTRIBUTIONS),
                     "`init: noise`'s distribution around mid-grey: `normal` (0.5 + amplitude x N(0, 1)) or "
                     "`uniform` (0.5 +- amplitude); `noise: uniform` alone is the paper's white noise on [0, 1]")
    noise_amplitude: float = key(Computed(lambda c: DEFAULT_NOISE_AMPLITUDE[c["noise"]]), number,
                                 "the noise's standard deviation or half-width (docs/quality.md)",
                                 "0.02 with `normal`, 0.5 with `uniform`")
    seeds: list[int] = key([0], seeds, "one variant per seed, in one batch")
    terms: dict[str, float] = key({}, terms, "extra loss terms by name -> weight; built in: `tv` (squared total "
                                  "variation), `range` (the mean squared distance of the image's values from [0, 1], which "
                                  "writing clips: docs/calibration.md); your own: `path/to/file.py:function` (docs/loss-lab.md)")
    weighting: str = key(Computed(lambda c: "auto" if c["losses"] == "mean" else "fixed"), choice(*WEIGHTINGS),
                         "`auto` (with `mean`): for an artwork of flat areas (a drawing or photograph on white, a "
                         "logo, a cartoon), the style term times a factor measured at each stage from the "
                         "photograph's style loss and the artwork's content loss (the two ends of the trade), so "
                         "the photograph is kept, and the `range` term (1000 times the artwork's sparsity, "
                         "unless `terms` weighs it) keeps its colours from being clipped; a dense painting keeps "
                         "alpha/beta exactly (a factor of 1). "
                         "`fixed`: alpha/beta alone, as the paper has it (docs/calibration.md)",
                         "`auto` with `mean`, `fixed` with `paper`")
    lattice: float = key(Computed(lambda c: DEFAULT_LATTICE[c["losses"]]), number,
                         "weight of the lattice term, the energy of a 2-px grid in phase over tens of pixels "
                         "(docs/highres.md); 0: off", "1000 with `mean`, 0 with `paper`")
    sweep: dict[str, list] = key({}, sweep, "lists of values for `alpha`, `beta`, `content_layers`, `style_layers`, "
                                 "`terms`, `style_loss`, `content_loss`, `lattice` (a clip's `temporal` too); every "
                                 "combination (x every seed) is a variant of the same batch (each style and content "
                                 "loss its own program)")
    scales: list[int] = key("auto", scales,
                            "coarse-to-fine: long sides of coarser stages, run first; `auto`: halve `size` while the "
                            "half is at least 128 px (512 -> `[128, 256]`), else from 127 px one half-size stage (200 -> `[100]`; "
                            "below 127 px none); `[]`: one stage")
    optimizer: OptimizerConfig = key({}, optimizer, "the optimiser and its options; see the rows below",
                                     "see below")
    scale_iterations: list[int] = key("auto", scale_iterations,
                                      "iterations of each coarser stage (a number or one per scale); `auto`: twice "
                                      "`optimizer.iterations` for the coarsest, as many for the others")
    upsample: str = key("cubic", choice(*UPSAMPLE_METHODS), "how a stage's result is enlarged")
    tile_overlap: int = key(64, count(), "pixels neighbouring tiles share (blended with a linear ramp)")
    tile_size: int = key(0, tile_size, "optimise any stage larger than this (px) tile by tile; 0: never")
    tile_passes: int = key(2, count(1, 100), "passes over the tiles per stage, each with the grid shifted")
    save_every: int = key(0, count(), "also save the images every N iterations of each untiled stage (named "
                          "`iterNNNNN`, with several stages `stageK-iterNNNNN`) and each coarser stage's result "
                          "(`stageK`)")
    print_every: int = key(50, count(), "progress line every N iterations (0: none; the history and the live "
                                        "page still see about 20 chunks a tile)")
    overwrite: bool = key(False, boolean, "existing outputs are never replaced unless this is true; then the earlier "
                          "run's files (its report's `files`) that this run does not write again are removed once "
                          "its outputs are complete, and no other file")
    compile_cache: bool = key(True, boolean, "keep compiled programs in the user's cache folder "
                              "(`$XDG_CACHE_HOME/jaxstyle/compiled`, private to the user), so a later run of the same "
                              "sizes starts sooner; `false` or `--no-compile-cache`: compile afresh (docs/performance.md)")
    image_format: str = key("png", choice(*IMAGE_FORMATS), "file type of the images: `png`, `jpg`, `webp`, `tiff`")
    image_quality: int = key(95, count(1, 100), "quality of `jpg` and `webp` images")
    image_bits: int = key(8, bits, "bits per channel: 8, or 16 for print (`png` and `tiff` only)")
    max_pixels: int = key(DEFAULT_MAX_PIXELS, count(1), "images with more pixels are refused before they are decoded")
    weights: str | None = key(None, optional_path, "a converted `.h5` to use instead of the default", "the default location")
    memory_check: bool = key(True, boolean, "refuse, before any work, a run whose predicted peak memory exceeds what "
                             "the device has")
    style_blend: list[float] | None = key(None, style_blend, "with several styles: their weights; the target is the "
                                          "weighted sum of their Gram matrices", "equal")
    style_scale: float = key(1.0, positive, "the style images are resized to the content size times this")
    style_trim: str = key("auto", choice("auto", "none"),
                          "`auto`: cut a frame, mount or margin (near-uniform bands) and the band just inside it "
                          "from each artwork's edges before its statistics are taken (docs/quality.md); `none`")
    preserve_colors: str = key("none", choice(*COLOR_MODES),
                               "`luminance`, `histogram` or `chroma` (docs/config.md); `palette`, the other way "
                               "round: the photograph's colours moved to the artworks' before the run (NNST's "
                               "colour step, docs/loss-lab.md)")
    masks: list[str] | None = key(None, masks, "one mask image per style image (white: that style applies)", "none")
    denoise: int = key(0, denoise, "3 or 5: a median filter of that size on the result")
    remat: bool = key(False, boolean, "recompute each VGG block's activations in the backward pass")
    convolution: str = key("auto", choice("auto", "direct"),
                           "`auto`: on a CPU, layers of 256 or more channels on maps of 100 to 3072 positions by "
                           "Winograd's F(2x2, 3x3), a fixed table (docs/performance.md); `direct`: XLA's "
                           "convolution everywhere")
    temporal: float = key(DEFAULT_TEMPORAL, number, "a clip's temporal weight: each frame against its warped "
                          "neighbour (docs/video.md); 0: every frame stylised on its own")
    video: VideoConfig = key({}, video, "a clip's frames and schedule; see the rows below", "see below")
    source: dict = field(default_factory=dict, compare=False, repr=False, metadata={"internal": True})

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
        """The resolved configuration as plain data (what report.json and checkpoints record)."""
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in _keys()}
        out["optimizer"] = self.optimizer.to_dict()
        out["video"] = self.video.to_dict()
        return out

    @property
    def is_clip(self) -> bool:
        """Whether the content is a clip (a video file or a folder of frames)."""
        return is_clip(self.content)


def _keys() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Config) if not f.metadata.get("internal")]


#: Every top-level config key, in the order they are checked.
KEYS: tuple[str, ...] = tuple(f.name for f in _keys())
#: Keys added after checkpoints and reports began recording the config.
ADDED_KEYS = ("content_loss", "similarity_layers", "mrf_layers", "mrf_patch", "mrf_stride", "samples")


def added_keys() -> dict[str, Any]:
    """:data:`ADDED_KEYS` with their defaults: a checkpoint written before a key existed ran as its
    default does."""
    fields = {f.name: f for f in _keys()}
    return {k: copy.deepcopy(fields[k].metadata["default"]) for k in ADDED_KEYS}


#: Keys of the ``video`` section added after checkpoints began recording the config, with the value
#: that a clip's run before them had (a frame started from the warped frame alone); an image's run
#: never read them, so for an image the default stands.
ADDED_VIDEO_KEYS = {"photo_change": 0.0}


def with_added_video_keys(config: dict) -> dict:
    """A saved config (a checkpoint's) with the video keys it predates at the values its run had:
    :data:`ADDED_VIDEO_KEYS` for a clip, the defaults for an image."""
    video = config.get("video")
    if not isinstance(video, dict) or all(k in video for k in ADDED_VIDEO_KEYS):
        return config
    clip = isinstance(config.get("content"), str) and is_clip(config["content"])
    then = {k: v if clip else VIDEO_KEYS[k][0] for k, v in ADDED_VIDEO_KEYS.items()}
    return {**config, "video": {**then, **video}}


def validate(raw: Mapping[str, Any]) -> Config:
    """Fill defaults into ``raw`` and check every value, in declaration order; returns a :class:`Config`."""
    if not isinstance(raw, Mapping):
        raise ConfigError("the config must be a YAML mapping of keys to values")
    names = [f.name for f in _keys()]
    for k in raw:
        if k not in names:
            raise ConfigError(f"unknown config key '{k}'{_suggest(str(k), names)}")
    checked: dict[str, Any] = {}
    for f in _keys():
        meta = f.metadata
        if f.name in raw and not (raw[f.name] is None and isinstance(meta["default"], Computed)):
            value = raw[f.name]
        elif meta["default"] is REQUIRED:
            value = None
        elif isinstance(meta["default"], Computed):
            value = meta["default"].fun(checked)
        else:
            value = copy.deepcopy(meta["default"])
        checked[f.name] = meta["check"](f.name, value, checked)
    cfg = Config(**checked, source=dict(raw))
    check_style_losses(cfg)
    if cfg.losses != "mean" and "auto" in [cfg.weighting, *cfg.sweep.get("weighting", [])]:
        raise ConfigError("weighting: auto needs losses: mean (its anchor is measured in that normalisation); "
                          "use weighting: fixed")
    if not cfg.content_layers and not cfg.style_layers and "content_layers" not in cfg.sweep \
            and "style_layers" not in cfg.sweep:
        raise ConfigError("content_layers and style_layers are both empty: nothing to optimise")
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optimizer.iterations=100"`` -> (["optimizer", "iterations"], 100); the value is YAML."""
    if "=" not in text:
        raise ConfigError(f"--set needs key=value, got '{text}'")
    name, value = text.split("=", 1)
    try:
        parsed = yaml_load(value) if value.strip() else None
    except YAMLLimitError as exc:
        raise ConfigError(f"--set {name}: {exc}") from None
    except yaml.YAMLError:
        raise ConfigError(f"--set {name}: cannot parse value {quote(value)}") from None
    return name.strip().split("."), parsed


def load_config(source: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or start from defaults with ``source=None``) and apply ``--set`` overrides."""
    return validate(apply_overrides(read_config(source), overrides))


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``raw`` with each ``key=value`` (dotted for nested keys, the value YAML) set, in order."""
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {'.'.join(keys)}: '{k}' is not a mapping")
        node[keys[-1]] = value
    return raw


def read_config(source: str | Path | None) -> dict[str, Any]:
    """A YAML config file's mapping (``{}`` for None), bounded and checked to be a mapping."""
    raw: dict[str, Any] = {}
    if source is not None:
        source = Path(source)
        if not source.is_file():
            raise ConfigError(f"config file not found: {source}")
        try:
            if source.stat().st_size > MAX_YAML_CHARS * 4:  # UTF-8: at most 4 bytes a character
                raise YAMLLimitError(f"a config file of more than {MAX_YAML_CHARS:,} characters")
            raw = yaml_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: {yaml_problem(exc)}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {source}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the config must be a mapping of keys to values")
    return raw


# ---- the docs' table ------------------------------------------------------------------------------
def _shown(default: Any) -> str:
    if default is REQUIRED:
        return "(required)"
    text = default if isinstance(default, str) else yaml.safe_dump(default, default_flow_style=True).strip()
    text = text.removesuffix("\n...").strip()
    return f"`{text}`"


def key_rows() -> list[tuple[str, str, str]]:
    """Every key as ``(name, default, meaning)`` (markdown backticks in the last two): the top
    level's, the clip's, the optimizer's shared keys and each optimiser's own."""
    rows = [(f.name, f.metadata["shown"] or _shown(f.metadata["default"]), f.metadata["meaning"])
            for f in _keys() if f.name not in ("optimizer", "video")]
    rows += [(f"video.{k}", shown, meaning) for k, (_, _, meaning, shown) in VIDEO_KEYS.items()]
    rows += [(f"optimizer.{k}", shown, meaning) for k, (_, _, meaning, shown) in OPTIMIZER_KEYS.items()]
    owners: dict[tuple[str, int], list[str]] = {}
    options = {}
    for name, entry in REGISTRY.items():
        for k, opt in entry.options.items():
            owners.setdefault((k, id(opt)), []).append(name)
            options[(k, id(opt))] = opt
    rows += [(f"optimizer.{k} ({', '.join(names)})", _shown(options[(k, ident)].default), options[(k, ident)].meaning)
             for (k, ident), names in owners.items()]
    return rows


def config_table() -> str:
    """The markdown table of every key (docs/config.md): name, default, meaning; then the
    optimizer's keys, shared and per optimiser."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for name, default, meaning in key_rows():
        key, _, owners = name.partition(" ")
        rows.append(f"| `{key}`{' ' + owners if owners else ''} | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def key_row(name: str) -> tuple[str, str]:
    """``(default, meaning)`` of one key (dotted for nested; an optimiser's own by its name alone),
    without markdown."""
    for row, default, meaning in key_rows():
        if row.split(" ")[0] == name:
            return default.replace("`", ""), meaning.replace("`", "")
    raise KeyError(name)
