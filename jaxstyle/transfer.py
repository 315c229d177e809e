"""A whole style-transfer run from a :class:`~jaxstyle.config.Config`.

config -> images -> targets (P^l, A^l, once) -> batch of variants (seeds x sweep) -> one compiled
L-BFGS program over the batch -> PNGs, a contact sheet and ``report.json``.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import __version__
from .config import Config
from .errors import ImageError, OutputError
from .images import contact_sheet, load_image, resize, save_png
from .losses import LossWeights, Objective
from .optim import Program, Solver, aux_of, evals_of
from .vgg import min_image_side
from .weights import load_vgg19


@dataclass(frozen=True)
class Variant:
    """One image of a batch: its seed and its loss weights."""

    seed: int
    alpha: float
    beta: float
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    terms: dict[str, float]

    def label(self, swept: tuple[str, ...]) -> str:
        parts = [f"seed {self.seed}"]
        if "alpha" in swept or "beta" in swept:
            parts.append(f"a/b {self.alpha / self.beta:.0e}" if self.beta else f"a {self.alpha:g}")
        if "style_layers" in swept:
            parts.append("+".join(l.replace("conv", "") for l, w in self.style_layers.items() if w) or "no style")
        if "content_layers" in swept:
            parts.append("+".join(l for l, w in self.content_layers.items() if w) or "no content")
        if "terms" in swept:
            parts.append(" ".join(f"{k} {v:g}" for k, v in self.terms.items()))
        return ", ".join(parts)


def expand_variants(cfg: Config) -> list[Variant]:
    """Every combination of the sweep's values, each with every seed (seeds vary fastest)."""
    keys = list(cfg.sweep)
    combos = itertools.product(*(cfg.sweep[k] for k in keys)) if keys else [()]
    out = []
    for combo in combos:
        setting = dict(zip(keys, combo))
        for seed in cfg.seeds:
            out.append(Variant(
                seed=seed, alpha=setting.get("alpha", cfg.alpha), beta=setting.get("beta", cfg.beta),
                content_layers=dict(setting.get("content_layers", cfg.content_layers)),
                style_layers=dict(setting.get("style_layers", cfg.style_layers)),
                terms=dict(setting.get("terms", cfg.terms))))
    return out


def objective_for(variants: list[Variant], pooling: str) -> Objective:
    """The one objective all variants share: every layer and term any of them weights."""
    content = tuple(dict.fromkeys(l for v in variants for l in v.content_layers))
    style = tuple(dict.fromkeys(l for v in variants for l in v.style_layers))
    terms = tuple(dict.fromkeys(t for v in variants for t in v.terms))
    return Objective(content, style, pooling, terms)


def batch_weights(variants: list[Variant], objective: Objective, dtype=jnp.float32) -> LossWeights:
    """Loss weights with a leading variant axis; a layer a variant does not use gets weight 0."""
    arr = lambda xs: jnp.asarray(np.asarray(xs, np.float64), dtype)
    return LossWeights(
        alpha=arr([v.alpha for v in variants]), beta=arr([v.beta for v in variants]),
        content={l: arr([v.content_layers.get(l, 0.0) for v in variants]) for l in objective.content_layers},
        style={l: arr([v.style_layers.get(l, 0.0) for v in variants]) for l in objective.style_layers},
        terms={t: arr([v.terms.get(t, 0.0) for v in variants]) for t in objective.terms},
    )


def initial_images(init: str, seeds: list[int], content: np.ndarray, style: np.ndarray,
                   max_pixels: int) -> np.ndarray:
    """``(V, H, W, 3)`` starting images.

    ``noise``: white noise, each pixel and channel drawn independently and uniformly from [0, 1]
    with ``jax.random.key(seed)``; ``content`` / ``style``: that image (seeds then give identical
    starts); anything else: an image file resized to the content's size.
    """
    shape = content.shape
    if init == "noise":
        return np.stack([np.asarray(jax.random.uniform(jax.random.key(s), shape, jnp.float32)) for s in seeds])
    if init == "content":
        start = content
    elif init == "style":
        start = style
    else:
        start = load_image(init, shape=shape[:2], max_pixels=max_pixels)
    return np.broadcast_to(start, (len(seeds),) + shape).copy()


@dataclass
class RunResult:
    """Images ``(V, H, W, 3)`` in [0, 1] (clipped), per-variant losses and the run's report."""

    images: np.ndarray
    variants: list[Variant]
    report: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def _losses(aux: dict[str, jax.Array], i: int) -> dict[str, float]:
    return {k: float(v[i]) for k, v in aux.items()}


def versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers (recorded in report.json)."""
    import importlib.metadata as md

    out = {"jaxstyle": __version__, "python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "jaxopt", "optax", "flax", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def prepare_images(cfg: Config, layers: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The content image at ``size`` and the style image resized to the content's size (paper)."""
    content = load_image(cfg.content, size=cfg.size, max_pixels=cfg.max_pixels)
    style = load_image(cfg.style, max_pixels=cfg.max_pixels)
    need = min_image_side(layers)
    if min(content.shape[:2]) < need:
        deepest = max(layers, key=lambda l: min_image_side([l]))
        raise ImageError(f"content image is {content.shape[1]}x{content.shape[0]} px at size {cfg.size}: "
                         f"too small for layer {deepest}, which needs at least {need} px on each side")
    return content, resize(style, content.shape[:2])


def chunk_ends(iterations: int, *every: int) -> list[int]:
    """Iteration counts at which the host reports or saves (and the run ends)."""
    marks = {iterations}
    for e in every:
        if e:
            marks.update(range(e, iterations, e))
    return sorted(m for m in marks if m > 0)


def run(cfg: Config, params=None, log: Callable[[str], None] = print,
        save_intermediate: Callable[[int, np.ndarray], None] | None = None) -> RunResult:
    """Optimise every variant of ``cfg`` in one compiled, vmapped program."""
    variants = expand_variants(cfg)
    objective = objective_for(variants, cfg.pooling)
    content, style = prepare_images(cfg, objective.layers)
    if params is None:
        params = load_vgg19(cfg.weights)
    targets = jax.jit(objective.targets)(params, jnp.asarray(content), jnp.asarray(style))
    weights = batch_weights(variants, objective)
    x0 = jnp.asarray(initial_images(cfg.init, [v.seed for v in variants], content, style, cfg.max_pixels))

    solver = Solver(objective, cfg.optimizer)
    strategy = cfg.optimizer.resolved_strategy()
    program = Program(solver, strategy, cfg.optimizer.unroll)
    shared, per_variant = (params, targets), (weights,)
    log(f"{len(variants)} variant(s) at {content.shape[1]}x{content.shape[0]} px, "
        f"{cfg.optimizer.iterations} {cfg.optimizer.name} iterations, on {jax.devices()[0].platform}")
    compile_s = program.compile(x0, shared, per_variant)
    t0 = time.perf_counter()
    state = program.init(x0, shared, per_variant)
    initial = aux_of(state.opt)
    history = []
    done_iters = 0
    for end in chunk_ends(cfg.optimizer.iterations, cfg.print_every, cfg.save_every):
        state = program.advance(state, shared, per_variant, end - done_iters)
        done_iters = end
        aux = jax.device_get(aux_of(state.opt))
        history.append({"iteration": end, "total": [float(t) for t in aux["total"]]})
        if cfg.print_every and (end % cfg.print_every == 0 or end == cfg.optimizer.iterations):
            log(_progress_line(end, cfg.optimizer.iterations, aux, time.perf_counter() - t0))
        if save_intermediate and cfg.save_every and end % cfg.save_every == 0 \
                and end != cfg.optimizer.iterations:
            save_intermediate(end, np.asarray(state.x))
        if bool(jnp.all(state.done)):
            break
    jax.block_until_ready(state)
    run_s = time.perf_counter() - t0

    final = jax.device_get(aux_of(state.opt))
    evals = np.asarray(evals_of(state.opt))
    nonfinite = np.asarray(state.nonfinite_at)
    iters = np.asarray(state.iterations)
    for i in np.flatnonzero(nonfinite >= 0):
        log(f"variant {i} (seed {variants[i].seed}): loss or image became non-finite at iteration "
            f"{nonfinite[i]}; keeping its last finite image")
    report = {
        "config": cfg.to_dict(),
        "variants": [],
        "iterations": int(iters.max(initial=0)),
        "evaluations": int(evals.sum()),
        "timing": {"compile_s": round(compile_s, 4), "run_s": round(run_s, 4)},
        "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
        "versions": versions(),
        "image_size": [int(content.shape[0]), int(content.shape[1])],
        "strategy": strategy,
    }
    initial = jax.device_get(initial)
    for i, v in enumerate(variants):
        entry = {"seed": v.seed, "initial_loss": _losses(initial, i), "final_loss": _losses(final, i),
                 "iterations": int(iters[i]), "evaluations": int(evals[i]), "alpha": v.alpha,
                 "beta": v.beta, "content_layers": v.content_layers, "style_layers": v.style_layers,
                 "terms": v.terms}
        if nonfinite[i] >= 0:
            entry["nonfinite_at"] = int(nonfinite[i])
        report["variants"].append(entry)
    images = np.clip(np.asarray(state.x, np.float32), 0.0, 1.0)
    return RunResult(images, variants, report, history)


def _progress_line(it: int, total: int, aux: dict, elapsed: float) -> str:
    t, c, s = (np.asarray(aux[k]) for k in ("total", "content", "style"))
    if t.size == 1:
        vals = f"total {t[0]:.4g}  content {c[0]:.4g}  style {s[0]:.4g}"
    else:
        vals = f"total min {t.min():.4g} / max {t.max():.4g} over {t.size} variants"
    width = 20
    bar = "#" * round(width * it / max(total, 1))
    return f"[{bar:<{width}}] {it:>5}/{total}  {vals}  ({elapsed:.1f} s)"


# ---- outputs ---------------------------------------------------------------------------------
def image_name(index: int, variant: Variant, iteration: int | None = None) -> str:
    """``000_seed0.png`` (final) or ``000_seed0_iter00050.png`` (intermediate)."""
    suffix = f"_iter{iteration:05d}" if iteration is not None else ""
    return f"{index:03d}_seed{variant.seed}{suffix}.png"


def planned_outputs(cfg: Config, variants: list[Variant]) -> list[Path]:
    out = Path(cfg.output)
    files = [out / image_name(i, v) for i, v in enumerate(variants)] + [out / "report.json"]
    if len(variants) > 1:
        files.append(out / "sheet.png")
    return files


def prepare_output(cfg: Config) -> list[Path]:
    """Create the output folder and refuse (before any work) to overwrite earlier results."""
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output '{out}' exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {out} is not writable")
    files = planned_outputs(cfg, expand_variants(cfg))
    if not cfg.overwrite:
        existing = [f for f in files if f.exists()]
        if existing:
            raise OutputError(f"{existing[0]} already exists; choose another output or set overwrite: true")
    return files


def write_json(data: Any, path: Path) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_outputs(cfg: Config, result: RunResult) -> Path:
    """PNGs, the contact sheet (more than one variant) and report.json (written last)."""
    out = Path(cfg.output)
    for i, (v, img) in enumerate(zip(result.variants, result.images)):
        save_png(img, out / image_name(i, v))
        result.report["variants"][i]["image"] = image_name(i, v)
    if len(result.variants) > 1:
        swept = tuple(cfg.sweep)
        labels = [v.label(swept) for v in result.variants]
        sheet = contact_sheet(list(result.images), labels, tile=min(256, max(result.images.shape[1:3])))
        save_png(sheet, out / "sheet.png")
        result.report["sheet"] = "sheet.png"
    return write_json(result.report, out / "report.json")


def run_and_save(cfg: Config, log: Callable[[str], None] = print) -> RunResult:
    """Check the output, run, write everything; what ``scripts/transfer.py`` does."""
    prepare_output(cfg)
    variants = expand_variants(cfg)
    out = Path(cfg.output)

    def save_intermediate(iteration: int, images: np.ndarray) -> None:
        for i, (v, img) in enumerate(zip(variants, images)):
            save_png(np.clip(img, 0, 1), out / image_name(i, v, iteration))

    result = run(cfg, log=log, save_intermediate=save_intermediate)
    path = write_outputs(cfg, result)
    log(f"wrote {len(result.variants)} image(s) and {path}")
    return result
