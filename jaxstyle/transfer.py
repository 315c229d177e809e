"""A whole style-transfer run from a :class:`~jaxstyle.config.Config`.

config -> images -> targets (P^l, A^l, once) -> batch of variants (seeds x sweep) -> one compiled
L-BFGS program over the batch -> PNGs, a contact sheet and ``report.json``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import __version__, color
from .config import Config
from .errors import ImageError, OutputError
from .fileio import atomic_write
from .images import contact_sheet, load_image, resize, save_png
from .losses import LossWeights, Objective
from .memory import check_fits, estimate_peak_bytes
from .optim import Program, Solver, aux_of, evals_of, restore_state, state_leaves, to_host, variant_mesh
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


def objective_for(variants: list[Variant], cfg: Config) -> Objective:
    """The one objective all variants share: every layer and term any of them weights."""
    content = tuple(dict.fromkeys(l for v in variants for l in v.content_layers))
    style = tuple(dict.fromkeys(l for v in variants for l in v.style_layers))
    terms = tuple(dict.fromkeys(t for v in variants for t in v.terms))
    return Objective(content, style, cfg.pooling, terms, remat=cfg.remat, losses=cfg.losses)


def batch_weights(variants: list[Variant], objective: Objective, dtype=jnp.float32) -> LossWeights:
    """Loss weights with a leading variant axis; a layer a variant does not use gets weight 0."""
    arr = lambda xs: jnp.asarray(np.asarray(xs, np.float64), dtype)
    return LossWeights(
        alpha=arr([v.alpha for v in variants]), beta=arr([v.beta for v in variants]),
        content={l: arr([v.content_layers.get(l, 0.0) for v in variants]) for l in objective.content_layers},
        style={l: arr([v.style_layers.get(l, 0.0) for v in variants]) for l in objective.style_layers},
        terms={t: arr([v.terms.get(t, 0.0) for v in variants]) for t in objective.terms},
    )


def noise_image(seed: int, shape: tuple[int, ...], distribution: str = "normal",
                amplitude: float = 0.02) -> np.ndarray:
    """White noise around mid-grey, each pixel and channel independent, from ``jax.random.key(seed)``.

    ``normal``: 0.5 + amplitude * N(0, 1); ``uniform``: uniform on [0.5 - amplitude, 0.5 + amplitude]
    (amplitude 0.5 is the paper's white noise on [0, 1]). Not clipped: the optimisation is not
    bounded either.
    """
    key = jax.random.key(seed)
    if distribution == "uniform":
        x = jax.random.uniform(key, shape, jnp.float32, 0.5 - amplitude, 0.5 + amplitude)
    else:
        x = 0.5 + amplitude * jax.random.normal(key, shape, jnp.float32)
    return np.asarray(x)


def initial_images(init: str, seeds: list[int], content: np.ndarray, style: np.ndarray,
                   max_pixels: int, noise: str = "normal", amplitude: float = 0.02) -> np.ndarray:
    """``(V, H, W, 3)`` starting images.

    ``noise``: white noise around mid-grey, one draw per seed (:func:`noise_image` with ``noise``
    and ``amplitude``); ``content`` / ``style``: that image (seeds then give identical starts);
    anything else: an image file resized to the content's size.
    """
    shape = content.shape
    if init == "noise":
        return np.stack([noise_image(s, shape, noise, amplitude) for s in seeds])
    if init == "content":
        start = content
    elif init == "style":
        start = resize(style, shape[:2])
    else:
        start = load_image(init, shape=shape[:2], max_pixels=max_pixels)
    return np.broadcast_to(start, (len(seeds),) + shape).copy()


def start_images(cfg: Config, variants: list[Variant], inputs: "Inputs") -> np.ndarray:
    """``(V, H, W, 3)`` starting images of ``variants`` at ``inputs``' size (see :func:`initial_images`);
    gray with ``preserve_colors: luminance``, whose optimisation runs on gray images."""
    x0 = initial_images(cfg.init, [v.seed for v in variants], inputs.content, inputs.styles[0], cfg.max_pixels,
                        cfg.noise, cfg.noise_amplitude)
    if cfg.preserve_colors == "luminance":
        x0 = np.stack([color.gray_rgb(color.rgb_to_yiq(x)[..., 0]) for x in x0])
    return x0


def split_over_devices(variants: list[Variant]) -> tuple[Any, int, list[Variant]]:
    """``(mesh, devices, padded)``: the mesh the batch is split over (None on one device), its size,
    and the variants padded with copies of the last to a multiple of it (the copies are dropped
    before anything is written)."""
    mesh = variant_mesh()
    n_dev = 1 if mesh is None else mesh.size
    return mesh, n_dev, variants + [variants[-1]] * (-len(variants) % n_dev)


@dataclass
class RunResult:
    """Images ``(V, H, W, 3)`` in [0, 1] (clipped), per-variant losses and the run's report."""

    images: np.ndarray
    variants: list[Variant]
    report: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: "Checkpoint | None" = None


#: Settings that may differ between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("overwrite", "print_every", "save_every")


@dataclass
class Checkpoint:
    """Everything needed to continue an interrupted run exactly: the solver state's leaves."""

    iteration: int
    leaves: list[np.ndarray]
    initial: dict[str, np.ndarray]
    run_s: float

    @property
    def where(self) -> str:
        return f"iteration {self.iteration}"

    @classmethod
    def capture(cls, state, iteration: int, initial, run_s: float) -> "Checkpoint":
        return cls(iteration, state_leaves(state), {k: np.asarray(v) for k, v in to_host(initial).items()}, run_s)

    def restore(self, like):
        """The saved state, in the structure of ``like`` (a freshly initialised state)."""
        return restore_state(self.leaves, like)

    def save(self, path: Path, config: dict) -> Path:
        arrays = {f"leaf{i}": a for i, a in enumerate(self.leaves)}
        arrays.update({f"initial_{k}": v for k, v in self.initial.items()})
        meta = json.dumps({"kind": "direct", "iteration": self.iteration, "run_s": self.run_s, "config": config})

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.frombuffer(meta.encode(), np.uint8), **arrays)
        return atomic_write(path, write)

    @classmethod
    def load(cls, path: Path, config: dict) -> "Checkpoint":
        meta, z = read_checkpoint(path, config)
        if meta.get("kind", "direct") != "direct":
            raise OutputError(f"{path} is not a checkpoint of a direct run")
        n = sum(1 for k in z if k.startswith("leaf"))
        leaves = [z[f"leaf{i}"] for i in range(n)]
        initial = {k[len("initial_"):]: v for k, v in z.items() if k.startswith("initial_")}
        return cls(int(meta["iteration"]), leaves, initial, float(meta["run_s"]))


def read_checkpoint(path: Path, config: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of a checkpoint, after checking it was written for ``config``."""
    if not path.is_file():
        raise OutputError(f"nothing to resume: {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError) as exc:
        raise OutputError(f"cannot read checkpoint {path}: {exc}") from None
    saved = {k: v for k, v in meta["config"].items() if k not in RESUMABLE_CHANGES}
    # Round-trip through JSON so tuples and lists compare as they were saved.
    now = json.loads(json.dumps({k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}))
    if now != saved:
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise OutputError(f"cannot resume: the config changed since the checkpoint ({', '.join(changed)})")
    return meta, arrays


def _json_float(value) -> float | None:
    # JSON has no Infinity or NaN: a non-finite loss is written as null.
    return float(value) if np.isfinite(value) else None


def _losses(aux: dict[str, jax.Array], i: int) -> dict[str, float | None]:
    return {k: _json_float(v[i]) for k, v in aux.items()}


def base_report(cfg: Config, variants: list[Variant], interrupted: bool, iterations: int, evaluations: int,
                compile_s: float, run_s: float, devices: int, shape, strategy: str, memory_bytes: int) -> dict:
    """The fields of report.json that every kind of run writes (``variants`` filled by the caller)."""
    return {
        "config": cfg.to_dict(),
        "losses": cfg.losses,
        "interrupted": interrupted,
        "variants": [],
        "iterations": iterations,
        "evaluations": evaluations,
        "timing": {"compile_s": round(compile_s, 4), "run_s": round(run_s, 4)},
        "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
        "devices": devices,
        "versions": versions(),
        "image_size": [int(shape[0]), int(shape[1])],
        "strategy": strategy,
        "memory_estimate_mb": round(memory_bytes / 2**20, 1),
    }


def variant_entry(v: Variant, initial: dict, final: dict, iterations: int, evaluations: int,
                  nonfinite_at: int) -> dict:
    """One variant's entry in report.json."""
    entry = {"seed": v.seed, "initial_loss": initial, "final_loss": final, "iterations": iterations,
             "evaluations": evaluations, "alpha": v.alpha, "beta": v.beta,
             "content_layers": v.content_layers, "style_layers": v.style_layers, "terms": v.terms}
    if nonfinite_at >= 0:
        entry["nonfinite_at"] = nonfinite_at
    return entry


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


@dataclass
class Inputs:
    """The images a run optimises against, as the network sees them.

    content: ``(H, W, 3)`` the photograph at ``size`` (gray luminance with
    ``preserve_colors: luminance``); styles: the artworks at the photograph's size times
    ``style_scale`` (colour-matched or luminance-matched when asked); photo: the photograph in
    colour, for recombining colours afterwards; masks: ``(K, H, W)`` region masks or None.
    """

    content: np.ndarray
    styles: list[np.ndarray]
    photo: np.ndarray
    masks: np.ndarray | None = None


def prepare_images(cfg: Config, layers: tuple[str, ...], shape: tuple[int, int] | None = None) -> Inputs:
    """Load, size and colour-prepare the content, style and mask images of ``cfg``.

    ``shape``: the photograph's ``(height, width)`` (a coarse-to-fine stage); default: ``cfg.size``
    (its long side, or its exact ``[height, width]``).
    """
    if shape is None and isinstance(cfg.size, list):
        shape = (cfg.size[0], cfg.size[1])
    photo = load_image(cfg.content, size=cfg.size if shape is None else None, shape=shape,
                       max_pixels=cfg.max_pixels)
    need = min_image_side(layers)
    if min(photo.shape[:2]) < need:
        deepest = max(layers, key=lambda l: min_image_side([l]))
        raise ImageError(f"content image is {photo.shape[1]}x{photo.shape[0]} px at size {max(photo.shape[:2])}: "
                         f"too small for layer {deepest}, which needs at least {need} px on each side")
    h, w = photo.shape[:2]
    shape = (max(1, round(h * cfg.style_scale)), max(1, round(w * cfg.style_scale)))
    if min(shape) < need:
        raise ImageError(f"style_scale {cfg.style_scale} makes the style images {shape[1]}x{shape[0]} px, "
                         f"too small for the layers used (at least {need} px on each side)")
    styles = [load_image(p, shape=shape, max_pixels=cfg.max_pixels) for p in cfg.styles]
    content = photo
    if cfg.preserve_colors == "histogram":
        styles = [np.clip(color.match_color_histogram(s, photo), 0, 1).astype(np.float32) for s in styles]
    elif cfg.preserve_colors == "luminance":
        y = color.rgb_to_yiq(photo)[..., 0]
        content = color.gray_rgb(y)
        styles = [color.gray_rgb(np.clip(color.match_luminance(color.rgb_to_yiq(s)[..., 0], y), 0, 1))
                  for s in styles]
    masks = None
    if cfg.masks:
        masks = np.stack([load_image(m, shape=(h, w), max_pixels=cfg.max_pixels).mean(-1) for m in cfg.masks])
    return Inputs(content, styles, photo, masks)


def finish_images(cfg: Config, images: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """Colour recombination and denoising after optimisation; ``(V, H, W, 3)`` clipped to [0, 1]."""
    images = np.asarray(images, np.float64)
    if cfg.preserve_colors in ("luminance", "chroma"):
        # Luminance of the result, I and Q (chroma) of the photograph.
        images = np.stack([color.combine_luminance(color.rgb_to_yiq(im)[..., 0], photo) for im in images])
    if cfg.denoise:
        images = np.stack([median_filter(im, cfg.denoise) for im in images])
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def median_filter(image: np.ndarray, size: int) -> np.ndarray:
    """Per-channel ``size`` x ``size`` median (edges replicated): removes pixel-level noise."""
    r = size // 2
    padded = np.pad(image, ((r, r), (r, r), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    shifts = [padded[dy:dy + h, dx:dx + w] for dy in range(size) for dx in range(size)]
    return np.median(np.stack(shifts), axis=0)


def chunk_ends(iterations: int, *every: int) -> list[int]:
    """Iteration counts at which the host reports or saves (and the run ends)."""
    marks = {iterations}
    for e in every:
        if e:
            marks.update(range(e, iterations, e))
    return sorted(m for m in marks if m > 0)


def run(cfg: Config, params=None, log: Callable[[str], None] = print,
        save_intermediate: Callable[[str, np.ndarray], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        resume: Checkpoint | None = None) -> RunResult:
    """Optimise every variant of ``cfg`` in one compiled, vmapped program.

    ``should_stop`` is asked between chunks; when it answers True the run ends there, marked
    interrupted, with a :class:`Checkpoint` in the result. ``resume`` continues from one.
    Configs with ``scales`` or ``tile_size`` run through :func:`jaxstyle.highres.run_stages`.
    """
    from .highres import run_stages, uses_stages

    if uses_stages(cfg):
        return run_stages(cfg, params, log, save_intermediate, should_stop, resume)
    variants = expand_variants(cfg)
    objective = objective_for(variants, cfg)
    inputs = prepare_images(cfg, objective.layers)
    content = inputs.content
    sizing = (*content.shape[:2], len(variants), objective.layers, cfg.optimizer.history_size)
    need = check_fits(*sizing) if cfg.memory_check else estimate_peak_bytes(*sizing)
    if params is None:
        params = load_vgg19(cfg.weights)
    targets = jax.jit(objective.targets)(
        params, jnp.asarray(content), [jnp.asarray(s) for s in inputs.styles], cfg.blend,
        None if inputs.masks is None else jnp.asarray(inputs.masks))
    mesh, n_dev, padded = split_over_devices(variants)
    x0 = start_images(cfg, padded, inputs)
    weights = batch_weights(padded, objective)

    solver = Solver(objective, cfg.optimizer)
    strategy = cfg.optimizer.resolved_strategy()
    program = Program(solver, strategy, cfg.optimizer.unroll, mesh)
    x0, shared, per_variant = program.place(jnp.asarray(x0), (params, targets), (weights,))
    log(f"{len(variants)} variant(s) at {content.shape[1]}x{content.shape[0]} px, "
        f"{cfg.optimizer.iterations} {cfg.optimizer.name} iterations, on {jax.devices()[0].platform}")
    compile_s = program.compile(x0, shared, per_variant)
    t0 = time.perf_counter()
    state = program.init(x0, shared, per_variant)
    initial = aux_of(state.opt)
    history = []
    done_iters = 0
    interrupted = False
    if resume is not None:
        state = program.place_state(resume.restore(state))
        initial, done_iters = resume.initial, resume.iteration
        t0 -= resume.run_s
    for end in chunk_ends(cfg.optimizer.iterations, cfg.print_every, cfg.save_every):
        if end <= done_iters:
            continue
        if should_stop is not None and should_stop():
            interrupted = True
            break
        state = program.advance(state, shared, per_variant, end - done_iters)
        done_iters = end
        aux = to_host(aux_of(state.opt))
        history.append({"iteration": end, "elapsed_s": round(time.perf_counter() - t0, 3),
                        "total": [_json_float(t) for t in aux["total"][: len(variants)]]})
        if cfg.print_every and (end % cfg.print_every == 0 or end == cfg.optimizer.iterations):
            log(_progress_line(end, cfg.optimizer.iterations, aux, time.perf_counter() - t0))
        if save_intermediate and cfg.save_every and end % cfg.save_every == 0 \
                and end != cfg.optimizer.iterations:
            save_intermediate(f"iter{end:05d}", finish_images(cfg, to_host(state.x), inputs.photo))
        if bool(np.all(to_host(state.done))):
            break
    jax.block_until_ready(state)
    run_s = time.perf_counter() - t0
    checkpoint = Checkpoint.capture(state, done_iters, initial, run_s) if interrupted else None
    state, initial = jax.tree_util.tree_map(lambda a: np.asarray(a)[: len(variants)], to_host((state, initial)))

    final = aux_of(state.opt)
    evals = np.asarray(evals_of(state.opt))
    nonfinite = np.asarray(state.nonfinite_at)
    iters = np.asarray(state.iterations)
    for i in np.flatnonzero(nonfinite >= 0):
        log(f"variant {i} (seed {variants[i].seed}): loss or image became non-finite at iteration "
            f"{nonfinite[i]}; keeping its last finite image")
    report = base_report(cfg, variants, interrupted, int(iters.max(initial=0)), int(evals.sum()), compile_s,
                         run_s, n_dev, content.shape, strategy, need)
    if resume is not None:
        report["resumed_from"] = resume.iteration
    report["variants"] = [variant_entry(v, _losses(initial, i), _losses(final, i), int(iters[i]), int(evals[i]),
                                        int(nonfinite[i])) for i, v in enumerate(variants)]
    images = finish_images(cfg, state.x, inputs.photo)
    return RunResult(images, variants, report, history, checkpoint)


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
def image_name(index: int, variant: Variant, stage: str | None = None) -> str:
    """``000_seed0.png`` (final) or ``000_seed0_iter00050.png`` / ``000_seed0_stage1.png`` (intermediate)."""
    suffix = f"_{stage}" if stage else ""
    return f"{index:03d}_seed{variant.seed}{suffix}.png"


def planned_outputs(cfg: Config, variants: list[Variant]) -> list[Path]:
    out = Path(cfg.output)
    files = [out / image_name(i, v) for i, v in enumerate(variants)] + [out / "report.json"]
    if len(variants) > 1:
        files.append(out / "sheet.png")
    return files


def prepare_output(cfg: Config) -> None:
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
    if not cfg.overwrite:
        existing = [f for f in planned_outputs(cfg, expand_variants(cfg)) if f.exists()]
        if existing:
            raise OutputError(f"{existing[0]} already exists; choose another output or set overwrite: true")


def write_json(data: Any, path: Path) -> Path:
    """Write JSON atomically (see :func:`jaxstyle.fileio.atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


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


CHECKPOINT = "checkpoint.npz"


def run_and_save(cfg: Config, log: Callable[[str], None] = print,
                 should_stop: Callable[[], bool] | None = None, resume: bool = False) -> RunResult:
    """Check the output, run, write everything; what ``scripts/transfer.py`` does.

    An interrupted run writes its images so far, ``report.json`` (``"interrupted": true``) and
    ``checkpoint.npz``; ``resume=True`` continues from that checkpoint. Under
    ``jax.distributed`` (several processes) every process runs its share and process 0 alone
    writes the outputs.
    """
    out = Path(cfg.output)
    checkpoint = None
    if jax.process_index() != 0:
        return run(cfg, log=lambda line: None, should_stop=should_stop)
    if resume:
        from .highres import StageCheckpoint, uses_stages

        kind = StageCheckpoint if uses_stages(cfg) else Checkpoint
        checkpoint = kind.load(out / CHECKPOINT, cfg.to_dict())
    else:
        prepare_output(cfg)
    with output_lock(out):
        return _run_and_save(cfg, out, log, should_stop, checkpoint)


@contextlib.contextmanager
def output_lock(out: Path):
    """Hold ``out/.jaxstyle.lock`` for the run, so two runs never write to one folder at once."""
    lock = out / ".jaxstyle.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, OSError):  # unreadable, or that process is gone: a stale lock
                lock.unlink(missing_ok=True)
                continue
            raise OutputError(f"another run (pid {pid}) is writing to {out}; wait for it or choose "
                              "another output") from None
        except OSError as exc:
            raise OutputError(f"cannot write to {out}: {exc.strerror or exc}") from None
    else:
        raise OutputError(f"cannot take the lock {lock}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _run_and_save(cfg: Config, out: Path, log, should_stop, checkpoint) -> RunResult:
    variants = expand_variants(cfg)

    def save_intermediate(stage: str, images: np.ndarray) -> None:
        for i, (v, img) in enumerate(zip(variants, images)):
            save_png(img, out / image_name(i, v, stage))

    result = run(cfg, log=log, save_intermediate=save_intermediate, should_stop=should_stop,
                 resume=checkpoint)
    path = write_outputs(cfg, result)
    if result.checkpoint is not None:
        result.checkpoint.save(out / CHECKPOINT, cfg.to_dict())
        log(f"interrupted at {result.checkpoint.where}: wrote the images so far, {path} "
            f"and {out / CHECKPOINT}; continue with --resume")
    else:
        if (out / CHECKPOINT).exists():
            (out / CHECKPOINT).unlink()
        log(f"wrote {len(result.variants)} image(s) and {path}")
    return result
