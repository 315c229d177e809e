"""A whole run, top to bottom: config -> plan -> for each stage: targets -> tiles -> loop -> blend.

A direct run is the plan of one stage, one tile and one pass; coarse-to-fine runs and tiled runs
take the same path (:mod:`jaxstyle.engine.plan`). Every variant of the batch (seeds x sweep) goes through
every stage and tile together, in one compiled program per tile shape.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .balance import anchor_of, auto_terms, group_key, measure_factors, sparsity
from .checkpoint import Checkpoint, Cursor
from .config import Config
from .inputs import (Inputs, artwork_measures, finish_images, input_lines, prepare_images, start_images,
                     trim_report)
from .loop import solve
from ..model.losses import LossWeights, Objective, Targets
from .memory import require_fits
from ..media.images import fit_shape
from ..media.metrics import seam_ratio
from .plan import (Stage, blend_ramp, pass_tiles, plan_stages, stage_peak_bytes, stage_work, tile_borders,
                   tile_grid, tile_style_share, upsample)
from .program import Program, resolved_strategy, restore_state, state_leaves, to_host
from .progress import RunHooks, Tick
from ..core.fileio import json_float
from .solvers import Solver, kept_memory, warm_memory
from .variants import Variant, batch_weights, expand_variants, objective_for, split_over_devices
from ..model.vgg import CONV_NAMES, min_image_side, prepare_kernels, winograd_layers
from ..model.weights import load_vgg19

Log = Callable[[str], None]


@dataclass
class Summary:
    """What a run of the plan measured, from which the driver writes report.json
    (:func:`jaxstyle.driver.report.build_report`): each variant's initial and final loss parts
    (``{"total", "content", "style", ...}``, ``(V,)`` each), its iterations, evaluations and the
    iteration it went non-finite at (-1: never), ``(V,)`` each; the seconds compiling and running;
    the devices; the final ``(H, W, 3)``; the strategy; the memory estimate in bytes; the stages'
    entries; the loss history; what was trimmed from each artwork; where a resumed run began."""

    interrupted: bool
    initial: dict
    final: dict
    iterations: np.ndarray
    evaluations: np.ndarray
    nonfinite: np.ndarray
    compile_s: float
    run_s: float
    devices: int
    shape: tuple
    strategy: str
    memory_bytes: int
    stages: list
    history: list = field(default_factory=list)
    style_trim: Any = None
    resumed_from: str | None = None


@dataclass
class RunResult:
    """Images ``(V, H, W, 3)`` in [0, 1] (clipped), the variants, report.json's content (filled in
    by the driver from ``summary``), the loss history, and a :class:`Checkpoint` when the run was
    interrupted."""

    images: np.ndarray
    variants: list[Variant]
    report: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    #: The batch as optimised ``(V, H, W, 3)``, before clipping and colour recombination (a clip's
    #: next pass or frame continues from it).
    raw: np.ndarray | None = None
    summary: Summary | None = None
    #: A clip's: its frames ``(V, F, H, W, 3)`` (``images`` are their last) and the clip
    #: (:class:`jaxstyle.media.video.Clip`).
    frames: np.ndarray | None = None
    clip: Any = None
    #: A clip's frame run with ``FrameBatch.keep_memory``: its final L-BFGS memory, slots first.
    memory: dict | None = None


@dataclass
class FrameBatch:
    """What a clip (:mod:`jaxstyle.driver.clip`) gives one run: each batch slot's own photograph and the
    temporal term's inputs, all at the final size, B slots (the run's variants) first.

    content: ``(B, H, W, 3)`` each slot's frame; prior: ``(B, J, H, W, 3)`` the stylised frames it
    is tied to, warped into it; weight: ``(B, J, H, W)`` their consistency weights (zeros: no tie);
    start: ``(B, H, W, 3)`` start images, or None for the config's ``init``; hold: ``(B, H, W)``, 1
    where a pixel keeps its start value (``Targets.hold``), or None; iterations: None for
    the config's whole plan (its pyramid), or a number for one stage at the final size, at most;
    settle, window: the settling test that may end a slot sooner (:func:`jaxstyle.engine.solvers.settled`;
    window 0: none); memory: the L-BFGS memory (:func:`jaxstyle.engine.solvers.kept_memory`, slots
    first) the final stage starts with, or None; keep_memory: return the final stage's in
    :attr:`RunResult.memory`. The prior is held constant while the run optimises, so the slots stay
    independent of each other.
    """

    content: np.ndarray
    prior: np.ndarray
    weight: np.ndarray
    start: np.ndarray | None = None
    iterations: int | None = None
    hold: np.ndarray | None = None
    settle: float = 0.0
    window: int = 0
    memory: dict | None = None
    keep_memory: bool = False

    def padded(self, n: int) -> "FrameBatch":
        """The arrays padded to ``n`` slots with copies of the last (see ``split_over_devices``)."""
        pad = lambda a: None if a is None else np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)])  # noqa: E731
        memory = None if self.memory is None else {k: pad(np.asarray(a)) for k, a in self.memory.items()}
        return FrameBatch(pad(self.content), pad(self.prior), pad(self.weight), pad(self.start), self.iterations,
                          pad(self.holds), self.settle, self.window, memory, self.keep_memory)

    @property
    def holds(self) -> np.ndarray:
        """``hold``, zeros (nothing held) when None: every run of a clip has the same argument
        structure, so its compiled programs are shared."""
        return self.hold if self.hold is not None else np.zeros(self.weight.shape[:1] + self.weight.shape[2:], np.float32)


@dataclass
class Setup:
    """What a run needs and does not change between stages."""

    cfg: Config
    variants: list[Variant]
    padded: list[Variant]
    objective: Objective
    params: Any
    weights: LossWeights
    solver: Solver
    strategy: str
    mesh: Any
    devices: int
    final_inputs: Inputs
    stages: list[Stage]
    estimates: list[int]
    frames: FrameBatch | None = None
    #: Compiled programs and functions, kept across the runs of one clip (frames, passes).
    cache: dict = field(default_factory=dict)

    def __post_init__(self):
        overlap = self.cfg.tile_overlap
        self.pass_tiles = [pass_tiles(s, overlap) for s in self.stages]
        self.work = [stage_work(s, overlap) for s in self.stages]
        # Iterations per pixel before each stage: the x axis of the loss history.
        self.offsets = list(np.cumsum([0] + [s.iterations_per_tile() * s.passes for s in self.stages[:-1]]))
        o, c = self.objective, self.cache
        self.grams_fn = c["grams"] = c.get("grams") or jax.jit(o.style_grams)
        self.targets_fn = c["targets"] = c.get("targets") or jax.jit(o.targets_from_grams)
        self.loss_fn = c["loss"] = c.get("loss") or jax.jit(o.parts)
        # A clip's slots each have their own photograph: their targets, one batch axis first.
        self.slot_targets_fn = c["slot_targets"] = c.get("slot_targets") or jax.jit(
            jax.vmap(o.targets_from_grams, in_axes=(None, 0, None, None, None)))
        self.programs = c.setdefault("programs", {})

    @property
    def n(self) -> int:
        return len(self.variants)

    def program(self, tile: tuple[int, int]) -> tuple[Program, bool]:
        """The program for one tile shape (and batch size), and whether it still needs compiling."""
        key = (tile, len(self.padded))
        fresh = key not in self.programs
        if fresh:
            self.programs[key] = Program(self.solver, self.strategy, self.cfg.optimizer.unroll, self.mesh)
        return self.programs[key], fresh

    def targets(self, data: "StageData", origin: tuple[int, int], shape: tuple[int, int]) -> Targets:
        """The targets of the crop at ``origin`` of ``shape`` ``(h, w)``: shared by every variant, or
        for a clip one per slot (a leading batch axis), with the slots' priors."""
        (y0, x0), (th, tw) = origin, shape
        crop = lambda a: a[..., y0:y0 + th, x0:x0 + tw, :]  # noqa: E731
        masks = None if data.masks is None else data.masks[:, y0:y0 + th, x0:x0 + tw]
        if self.frames is None:
            return self.targets_fn(self.params, crop(data.content), data.grams, self.cfg.blend, masks)
        t = self.slot_targets_fn(self.params, crop(data.content), data.grams, self.cfg.blend, masks)
        return t._replace(prior=crop(data.prior), prior_weight=crop(data.weight[..., None])[..., 0],
                          hold=crop(data.hold[..., None])[..., 0])

    def arguments(self, targets: Targets, weights: LossWeights) -> tuple[tuple, tuple]:
        """``(shared, per_variant)`` for the solver: a clip's targets differ per slot."""
        if self.frames is None:
            return (self.params, targets), (weights,)
        return (self.params,), (targets, weights)

    def full_losses(self, x: np.ndarray, targets: Targets, weights: LossWeights) -> dict[str, np.ndarray]:
        """The whole image's loss parts, one variant at a time: a forward pass over a print-size
        batch would not fit where a tile does."""
        pick = lambda tree, i: jax.tree_util.tree_map(lambda a: a[i], tree)  # noqa: E731
        parts = [jax.device_get(self.loss_fn(jnp.asarray(xi), self.params,
                                             targets if self.frames is None else pick(targets, i),
                                             pick(weights, i)))
                 for i, xi in enumerate(x[: self.n])]
        return {k: np.array([p[k] for p in parts]) for k in parts[0]}

    def style_factors(self, shape: tuple[int, int], inputs: Inputs, grams: dict, masks) -> np.ndarray | None:
        """``weighting: auto``'s factor on each batch slot's style term at a stage of ``shape``
        (:mod:`jaxstyle.engine.balance`; 1 for ``fixed``), or None where no slot weighs
        automatically, or every factor is 1 (a dense artwork: the fixed weighting's program exactly).
        Measured at ``shape``, or where that is larger than the artworks' own long side at ``shape``
        shrunk to it, the first time that shape is seen, and kept (a clip's later runs use its first
        frame's; a resumed run the checkpoint's)."""
        auto = [v.weighting == "auto" for v in self.padded]
        if not any(auto):
            return None
        keys = [group_key(v.content_layers, v.style_layers, v.style_loss, v.content_loss) for v in self.padded]
        sparse = self.artworks()[0]
        if sparse <= 0.0:
            return None
        # Past the artworks' own pixels an enlarged artwork adds blur, not marks, and its ends would
        # describe the blur (a 259 px cartoon at 512 px: a factor 7 times its own size's), so the ends
        # are measured at the stage's shape shrunk to the artworks' own long side.
        # (A checkpoint from before this measured at the stage's own shape: its factors are kept.)
        factors = self.cache.setdefault("factors", {})
        own = factors.get(f"{shape[0]}x{shape[1]}", {})
        at = tuple(shape) if all(k in own for k, a in zip(keys, auto) if a) else self.measuring_shape(shape)
        known = factors.setdefault(f"{at[0]}x{at[1]}", {})
        missing = [a and k not in known for k, a in zip(keys, auto)]
        if any(missing):
            if at != tuple(shape):
                inputs = prepare_images(self.cfg, self.objective.layers, shape=at,
                                        frames=None if self.frames is None else self.frames.content[:1])
                grams = self.grams_fn(self.params, [jnp.asarray(s) for s in inputs.styles])
                masks = None if inputs.masks is None else jnp.asarray(inputs.masks)
            photo = jnp.asarray(inputs.content if self.frames is None else inputs.content[0])
            targets = self.targets_fn(self.params, photo, grams, self.cfg.blend, masks)
            known.update(measure_factors(self.loss_fn, self.params, targets, self.weights, keys, missing, photo,
                                         [jnp.asarray(a) for a in inputs.styles], self.cfg.blend, sparse,
                                         [anchor_of(v.style_loss, v.content_loss) for v in self.padded]))
        out = np.array([known[k] if a else 1.0 for k, a in zip(keys, auto)], np.float32)
        return None if np.all(out == 1.0) else out

    def measuring_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Where a stage of ``shape`` measures the ends: ``shape`` shrunk to the artworks' own long
        side, but never below what the network's deepest layer needs (a tiny artwork)."""
        h, w = shape
        need = min_image_side(self.objective.layers)
        floor = -(-need * max(h, w) // min(h, w))  # the long side that gives the short side ``need``
        return fit_shape(shape, min(max(h, w), max(self.artworks()[1], floor)))

    def artworks(self) -> tuple[float, int]:
        """The artworks' sparsity and the largest one's long side (:func:`artworks_of`)."""
        return artworks_of(self.cfg, self.cache)


def artworks_of(cfg: Config, cache: dict) -> tuple[float, int]:
    """The artworks' sparsity (:func:`jaxstyle.engine.balance.sparsity`) and the largest one's long
    side as the run uses it (its border cut), each artwork read once per run (kept in ``cache``)."""
    key = json.dumps([cfg.styles, cfg.blend, cfg.style_trim])
    known = cache.setdefault("artworks", {})
    if key not in known:
        shares, sides = artwork_measures(cfg)
        known[key] = (sparsity(shares, cfg.blend), max(sides))
    return known[key]


def weighting_lines(cfg: Config, variants: list[Variant], cache: dict) -> list[str]:
    """The log line that says what ``weighting: auto`` does for a sparse artwork (none for a dense
    one, whose run is the fixed weighting's)."""
    auto = [v for v in variants if v.weighting == "auto"]
    sparse = artworks_of(cfg, cache)[0] if auto else 0.0
    if sparse <= 0.0:
        return []
    ranged = any(v.terms.get("range", 0.0) > 0.0 for v in auto)
    return [f"weighting: auto: the artwork has flat areas (sparsity {sparse:.2f}), so its style term is weighed by "
            "the ends' factor at each stage" + (" and the range term keeps the pixels in [0, 1]" if ranged else "")
            + " (docs/calibration.md)"]


def with_auto_terms(cfg: Config, variants: list[Variant], cache: dict) -> list[Variant]:
    """``variants`` with ``weighting: auto``'s ``range`` term where the artworks are sparse
    (:func:`jaxstyle.engine.balance.auto_terms`); the artworks are read only where some variant
    weighs automatically."""
    if not any(v.weighting == "auto" for v in variants):
        return variants
    sparse = artworks_of(cfg, cache)[0]
    return [dataclasses.replace(v, terms=auto_terms(v.terms, v.weighting, sparse)) for v in variants]


def uses_winograd(cfg: Config) -> bool:
    """Whether this run's convolutions may take the Winograd path (``convolution: auto`` on a CPU)."""
    return cfg.convolution == "auto" and jax.default_backend() == "cpu"


def run_winograd_layers(cfg: Config, stages: Sequence[Stage], layers: Sequence[str]) -> list[str]:
    """The convolutions that take the Winograd path at some stage's (tile) size: the only ones
    whose Winograd kernels a run makes (none where :func:`uses_winograd` is false)."""
    if not uses_winograd(cfg):
        return []
    used = set().union(*(winograd_layers(*s.tile, layers) for s in stages))
    return [name for name in CONV_NAMES if name in used]


def prepare(cfg: Config, params=None, variants: list[Variant] | None = None, frames: FrameBatch | None = None,
            cache: dict | None = None) -> Setup:
    """Variants, objective, images, the plan and its memory check, the network, the solver.

    A clip's run gives its batch slots as ``variants`` and their photographs as ``frames``; with
    ``frames.iterations`` its plan is one stage at the final size."""
    cache = {} if cache is None else cache
    variants = with_auto_terms(cfg, expand_variants(cfg) if variants is None else variants, cache)
    objective = objective_for(variants, cfg)
    mesh, devices, padded = split_over_devices(variants)
    if frames is not None:
        frames = frames.padded(len(padded))
    final_inputs = prepare_images(cfg, objective.layers, frames=None if frames is None else frames.content)
    stages = plan_stages(final_inputs.content.shape[-3:-1], cfg)
    if frames is not None and frames.iterations is not None:
        stages = [dataclasses.replace(stages[-1], iterations=frames.iterations)]
    history = cfg.optimizer.options.get("history_size", 0)
    winograd = run_winograd_layers(cfg, stages, objective.layers)
    estimates = [stage_peak_bytes(s, len(variants), objective.layers, history, bool(winograd), objective,
                                  cfg.style_scale, len(cfg.styles)) for s in stages]
    if cfg.memory_check:
        worst = stages[int(np.argmax(estimates))]
        require_fits(max(estimates), f"{len(variants)} variant(s) at {worst.shape[1]}x{worst.shape[0]} px"
                     + (f" in {worst.tile[1]}x{worst.tile[0]} tiles" if worst.tiled else ""))
    # The input gradient's kernels, and the Winograd forms where they pay, are made once here, not in
    # every evaluation (docs/performance.md). Off a CPU the device's own convolutions are faster.
    params = prepare_kernels(load_vgg19(cfg.weights) if params is None else params, objective.layers,
                             winograd=winograd)
    o = cfg.optimizer
    solver = Solver(objective, o.name, o.iterations, o.tol, tuple(sorted(o.options.items())))
    return Setup(cfg, variants, padded, objective, params, batch_weights(padded, objective), solver,
                 resolved_strategy(o.strategy), mesh, devices, final_inputs, stages, estimates, frames, cache)


@dataclass
class Progress:
    """What accumulates over tiles and stages, and what a checkpoint keeps of it."""

    iterations: np.ndarray
    evaluations: np.ndarray
    nonfinite: np.ndarray
    stages: list = field(default_factory=list)
    history: list = field(default_factory=list)
    initial: dict | None = None
    compile_s: float = 0.0
    last_parts: dict | None = None
    last_parts_stage: int = -1
    stage_end: dict | None = None
    listener: Callable[[dict], None] | None = None
    memory: dict | None = None

    @classmethod
    def start(cls, n: int, resume: Checkpoint | None) -> "Progress":
        if resume is None:
            return cls(np.zeros(n, np.int64), np.zeros(n, np.int64), np.full(n, -1, np.int64))
        return cls(resume.iterations.copy(), resume.evaluations.copy(), np.full(n, -1, np.int64),
                   list(resume.stages), list(resume.history), resume.initial)

    def add_tile(self, iterations: np.ndarray, evaluations: np.ndarray, nonfinite_at: np.ndarray, n: int) -> None:
        """Count a finished tile's iterations and evaluations (host arrays, one per batch slot), and
        note where a variant first went non-finite."""
        bad = np.asarray(nonfinite_at)[:n]
        self.nonfinite = np.where((self.nonfinite < 0) & (bad >= 0), self.iterations + bad, self.nonfinite)
        self.iterations += np.asarray(iterations)[:n]
        self.evaluations += np.asarray(evaluations)[:n]

    def record(self, where: tuple[int, int, int], iteration: int, elapsed: float, parts: dict, scope: str) -> None:
        """One history entry: every variant's loss parts at ``iteration`` (per pixel, counted over
        the whole run) of stage, pass and tile ``where``; ``scope`` is ``"image"`` for the whole
        image's losses, ``"tile"`` for one tile's."""
        entry = {"stage": where[0] + 1, "pass": where[1] + 1, "tile": where[2] + 1, "scope": scope,
                 "iteration": int(iteration), "elapsed_s": round(elapsed, 3),
                 **{k: [json_float(v) for v in np.asarray(parts[k])] for k in ("total", "content", "style")}}
        self.history.append(entry)
        if self.listener is not None:
            self.listener(entry)


@dataclass
class StageData:
    """One stage's images and targets."""

    index: int
    stage: Stage
    inputs: Inputs
    content: jax.Array
    masks: jax.Array | None
    prior: jax.Array | None
    weight: jax.Array | None
    hold: jax.Array | None
    grams: dict
    full_targets: Targets | None
    tile_weights: LossWeights
    t0: float
    #: The whole image's weights (``weighting: auto``'s factor in beta) and the factor per slot
    #: (None: every slot's is 1).
    full_weights: LossWeights | None = None
    factor: np.ndarray | None = None


@dataclass
class Stop:
    """Where a run was interrupted: the cursor, the tile's solver state, the images to show (the
    tile's progress blended in) and the tile's iterations and evaluations so far."""

    cursor: Cursor
    state: list | None = None
    preview: np.ndarray | None = None
    partial: tuple | None = None


@dataclass(frozen=True)
class Hooks(RunHooks):
    """A run's view of its caller's :class:`RunHooks`: the same, its watchers resolved, with the
    run's clock."""

    t0: float = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def begin_stage(setup: Setup, k: int, x: np.ndarray | None, progress: Progress) -> tuple[StageData, np.ndarray]:
    """The stage's images and targets, and the batch at its size (the start images, or the coarser
    result enlarged)."""
    cfg, stage = setup.cfg, setup.stages[k]
    final = stage.shape == tuple(setup.final_inputs.content.shape[-3:-1])
    frames = setup.frames
    inputs = setup.final_inputs if final else \
        prepare_images(cfg, setup.objective.layers, shape=stage.shape, frames=None if frames is None else frames.content)
    content = jnp.asarray(inputs.content)
    masks = None if inputs.masks is None else jnp.asarray(inputs.masks)
    prior = weight = hold = None
    if frames is not None:  # the temporal term (and holding) works at the final size; coarser stages have none
        prior = jnp.asarray(frames.prior if final else np.zeros((*frames.prior.shape[:2], *stage.shape, 3), np.float32))
        weight = jnp.asarray(frames.weight if final else np.zeros((*frames.weight.shape[:2], *stage.shape), np.float32))
        hold = jnp.asarray(frames.holds if final else np.zeros((frames.weight.shape[0], *stage.shape), np.float32))
    grams = setup.grams_fn(setup.params, [jnp.asarray(s) for s in inputs.styles])
    if x is None:
        x = frames.start if frames is not None and frames.start is not None else \
            start_images(cfg, setup.padded, inputs)
    elif x.shape[1:3] != stage.shape:
        x = upsample(x, stage.shape, cfg.upsample)
    x = np.array(x, np.float32)
    factor = setup.style_factors(stage.shape, inputs, grams, masks)
    full = setup.weights if factor is None else setup.weights._replace(beta=setup.weights.beta * factor)
    weights = full._replace(beta=full.beta * tile_style_share(stage, setup.objective.losses))
    data = StageData(k, stage, inputs, content, masks, prior, weight, hold, grams, None, weights, time.perf_counter(),
                     full, factor)
    if stage.tiled:
        data.full_targets = setup.targets(data, (0, 0), stage.shape)
    if k == len(setup.stages) - 1 and stage.tiled and progress.initial is None:
        progress.initial = setup.full_losses(x, data.full_targets, data.full_weights)
    return data, x


def blend(x: np.ndarray, result: np.ndarray, origin: tuple[int, int], stage: Stage, overlap: int,
          copy: bool = False) -> np.ndarray:
    """``x`` with a tile's ``result`` written back at ``origin``, weighted by ramps across the overlap."""
    (y0, x0), (h, w), (th, tw) = origin, stage.shape, stage.tile
    wt = (blend_ramp(y0, th, h, overlap)[:, None] * blend_ramp(x0, tw, w, overlap)[None, :])
    wt = wt[None, :, :, None].astype(np.float32)
    out = x.copy() if copy else x
    region = x[:, y0:y0 + th, x0:x0 + tw]
    out[:, y0:y0 + th, x0:x0 + tw] = region * (1 - wt) + result * wt
    return out


def chunk_marks(setup: Setup, stage: Stage) -> tuple[int, ...]:
    """What ends a chunk: the progress interval (without one, about 20 chunks a tile, so the history
    and a live page still see the run move), in an untiled stage the save interval, and a clip
    frame's settling window (the loop ends a batch whose variants have all settled only between
    chunks). Where a chunk ends does not change the result: the loop carries its state across."""
    cfg = setup.cfg
    every = cfg.print_every or max(1, round(stage.iterations_per_tile() / 20))
    return (every, 0 if stage.tiled else cfg.save_every, setup.frames.window if setup.frames is not None else 0)


def on_chunk(setup: Setup, data: StageData, hooks: Hooks, progress: Progress, where: tuple[int, int, int],
             origin: tuple[int, int], x: np.ndarray) -> Callable:
    """After each chunk of tile ``where`` (at ``origin`` of the stage's batch ``x``): the history,
    the :class:`Tick` and (a run of one untiled stage) the intermediate images."""
    cfg, stage, (k, p, j) = setup.cfg, data.stage, where
    total, tiles = stage.iterations_per_tile(), setup.pass_tiles[k]
    before = (sum(tiles[:p]) + j) * total  # tile iterations of this stage before this tile
    area = stage.tile[0] * stage.tile[1]

    def report(state, end: int) -> None:
        parts = {key: np.asarray(v)[: setup.n] for key, v in to_host(state.opt.aux).items()}
        progress.record(where, setup.offsets[k] + p * total + end, hooks.elapsed(), parts,
                        "tile" if stage.tiled else "image")

        def settled() -> bool:  # a clip's frame that ends before its last iteration still says where it ended
            return setup.frames is not None and bool(setup.frames.window) and bool(np.all(to_host(state.done)))

        def images() -> np.ndarray:  # valid during the tick only: the next chunk reuses the state's buffers
            now = to_host(state.x)
            now = blend(x, now, origin, stage, cfg.tile_overlap, copy=True) if stage.tiled else now
            return finish_images(cfg, now[: setup.n], data.inputs.photo)
        hooks.watch.tick(Tick(k, len(setup.stages), stage.shape, p, stage.passes, j, tiles[p], end, total,
                        before + end, sum(tiles) * total, parts, hooks.elapsed(), progress.compile_s,
                        sum(setup.work[:k]) + (before + end) * area, sum(setup.work),
                        bool(cfg.print_every) and (end % cfg.print_every == 0 or end == total or settled()), images))
        if hooks.save_intermediate and chunk_marks(setup, stage)[1] and end % cfg.save_every == 0 and end != total:
            tag = f"iter{end:05d}" if len(setup.stages) == 1 else f"stage{k + 1}-iter{end:05d}"
            hooks.save_intermediate(tag, finish_images(cfg, to_host(state.x)[: setup.n], data.inputs.photo))
    return report


def solve_tile(setup: Setup, data: StageData, x: np.ndarray, where: tuple[int, int, int],
               origin: tuple[int, int], restored: tuple[list | None, int], progress: Progress,
               hooks: Hooks) -> tuple[np.ndarray, Stop | None]:
    """Optimise one tile from ``x`` (continuing ``restored``, a saved state and its iterations) and
    blend it back; or stop, before it starts or between chunks."""
    leaves, skip = restored
    if hooks.stop_requested():
        return x, Stop(Cursor(*where, skip), leaves)
    (y0, x0), (th, tw) = origin, data.stage.tile
    program, fresh = setup.program((th, tw))
    shared, pv = setup.arguments(setup.targets(data, origin, (th, tw)), data.tile_weights)
    xt, shared, pv = program.place(jnp.asarray(x[:, y0:y0 + th, x0:x0 + tw]), shared, pv)
    if fresh:
        progress.compile_s += program.compile(xt, shared, pv)
    state = program.init(xt, shared, pv)
    if setup.frames is not None and setup.frames.window:  # a clip's frame may end once it has settled
        v = state.done.shape[0]
        state = program.place_state(state._replace(settle=jnp.full(v, setup.frames.settle, jnp.float32),
                                                   window=jnp.full(v, setup.frames.window, jnp.int32)))
    last = data.index == len(setup.stages) - 1 and not data.stage.tiled
    if last and setup.frames is not None and setup.frames.memory is not None:  # where the frame before left off
        state = program.place_state(state._replace(opt=warm_memory(state.opt, setup.frames.memory)))
    if progress.initial is None and last:
        progress.initial = to_host(state.opt.aux)
    if leaves is not None:  # continue the interrupted tile exactly where it stood
        state = program.place_state(restore_state(leaves, state))
    state, done, stopped = solve(program, state, shared, pv, data.stage.iterations_per_tile(), skip,
                                 chunk_marks(setup, data.stage), hooks.stop_requested,
                                 on_chunk(setup, data, hooks, progress, where, origin, x))
    # Only what the blend, the counts and the report need comes to the host; the whole solver state
    # (its L-BFGS history holds 2m images per variant) only when a checkpoint needs it.
    result, parts, iterations, evaluations, nonfinite_at = to_host(
        (state.x, state.opt.aux, state.iterations, state.opt.num_fun_eval, state.nonfinite_at))
    blended = blend(x, result, origin, data.stage, setup.cfg.tile_overlap, copy=stopped)
    progress.last_parts, progress.last_parts_stage = parts, data.index
    if last and setup.frames is not None and setup.frames.keep_memory and not stopped:
        memory = kept_memory(state.opt)
        progress.memory = None if memory is None else {k: np.asarray(a)[: setup.n] for k, a in to_host(memory).items()}
    if stopped:
        # The checkpoint keeps the batch as the tile found it and the tile's solver state; only
        # the images written now show the tile's progress.
        partial = (np.asarray(iterations)[: setup.n], np.asarray(evaluations)[: setup.n])
        return x, Stop(Cursor(*where, done), state_leaves(state), blended, partial)
    progress.add_tile(iterations, evaluations, nonfinite_at, setup.n)
    return blended, None


def run_stage(setup: Setup, data: StageData, x: np.ndarray, cursor: Cursor, resume: Checkpoint | None,
              progress: Progress, hooks: Hooks) -> tuple[np.ndarray, Stop | None]:
    """Every pass over every tile of one stage, from ``cursor`` on."""
    k, stage, cfg = data.index, data.stage, setup.cfg
    for p in range(stage.passes):
        grid = tile_grid(stage, cfg.tile_overlap, p)
        for j, origin in enumerate(grid):
            if cursor.before(k, p, j):
                continue
            restored = (resume.state, cursor.done) if resume is not None and cursor.at(k, p, j) else (None, 0)
            x, stop = solve_tile(setup, data, x, (k, p, j), origin, restored, progress, hooks)
            if stop is not None:
                return x, stop
        if stage.tiled:  # the whole image's losses after every pass, for the history and the report
            progress.stage_end = setup.full_losses(x, data.full_targets, data.full_weights)
            progress.record((k, p, len(grid) - 1), setup.offsets[k] + (p + 1) * stage.iterations_per_tile(),
                            hooks.elapsed(), progress.stage_end, "image")
    return x, None


def end_stage(setup: Setup, data: StageData, x: np.ndarray, progress: Progress, hooks: Hooks) -> dict:
    """The stage's entry in the report (and its end losses); the coarse stages' images saved."""
    cfg, stage, k = setup.cfg, data.stage, data.index
    end = progress.stage_end if stage.tiled else {key: np.asarray(v)[: setup.n] for key, v in progress.last_parts.items()}
    entry = {"shape": list(stage.shape), "iterations": stage.iterations,
             "tile": list(stage.tile) if stage.tiled else None, "passes": stage.passes,
             "tiles_per_pass": setup.pass_tiles[k],
             "run_s": round(time.perf_counter() - data.t0, 3),
             "memory_estimate_mb": round(setup.estimates[k] / 2**20, 1),
             "winograd_layers": winograd_layers(*stage.tile, setup.objective.layers)
             if uses_winograd(cfg) else [],
             "total_loss": [json_float(v) for v in end["total"]],
             "style_factor": [1.0] * setup.n if data.factor is None else [round(float(f), 6) for f in data.factor[: setup.n]]}
    if stage.tiled:
        rows, cols = tile_borders(stage, cfg.tile_overlap)
        entry["seam_ratio"] = round(max(seam_ratio(np.clip(im, 0, 1), rows, cols) for im in x[: setup.n]), 4)
    progress.stages.append(entry)
    if len(setup.stages) > 1:
        hooks.log(f"stage {k + 1}/{len(setup.stages)} done: {stage.shape[1]}x{stage.shape[0]} px"
                  + (f", {sum(entry['tiles_per_pass'])} tiles in {stage.passes} pass(es)" if stage.tiled else "")
                  + f", total loss {np.min(end['total']):.4g}, {entry['run_s']:.1f} s")
        if hooks.save_intermediate is not None and k < len(setup.stages) - 1 and cfg.save_every:
            hooks.save_intermediate(f"stage{k + 1}", finish_images(cfg, x[: setup.n], data.inputs.photo))
    return end


def run_plan(cfg: Config, params=None, run_hooks: RunHooks = RunHooks(), variants: list[Variant] | None = None,
             frames: FrameBatch | None = None, cache: dict | None = None, announce: bool = True) -> RunResult:
    """Optimise a batch that shares one objective through every stage and tile of its plan: one
    program per tile shape. The result carries a :class:`Summary`; its ``report`` is the driver's
    to fill (:func:`jaxstyle.driver.job.run`).

    ``run_hooks.should_stop`` is asked before each tile and between chunks; when it answers True the
    run ends there, with a :class:`Checkpoint` in the result; ``run_hooks.resume`` continues from one
    and ends where the uninterrupted run ends. A clip's runs (:mod:`jaxstyle.driver.clip`) give
    their slots as ``variants``, their photographs and temporal inputs as ``frames``, and one
    ``cache`` of compiled programs for all of them."""
    setup = prepare(cfg, params, variants, frames, cache)
    resume, log = run_hooks.resume, run_hooks.log
    if resume is not None:  # the factors the interrupted run measured, whatever this machine would
        for shape, groups in resume.factors.items():
            setup.cache.setdefault("factors", {}).setdefault(shape, {}).update(groups)
    watch = run_hooks.watchers()
    hooks = Hooks(log, run_hooks.should_stop, watch, resume, run_hooks.save_intermediate,
                  time.perf_counter() - (resume.run_s if resume else 0.0))
    cursor = resume.cursor if resume is not None else Cursor()
    progress = Progress.start(setup.n, resume)
    for entry in progress.history:  # a resumed run's history so far
        watch.record(entry)
    progress.listener = watch.record
    x = None if resume is None else np.concatenate(
        [resume.images, np.repeat(resume.images[-1:], len(setup.padded) - setup.n, axis=0)]).astype(np.float32)
    last = setup.stages[-1]
    if announce:
        for line in input_lines(cfg, setup.final_inputs.trims) + weighting_lines(cfg, setup.variants, setup.cache):
            log(line)
        log(f"{setup.n} variant(s) at {last.shape[1]}x{last.shape[0]} px, {cfg.optimizer.iterations} "
            f"{cfg.optimizer.name} iterations, on {jax.devices()[0].platform}" if len(setup.stages) == 1 else
            f"{setup.n} variant(s), {len(setup.stages)} stage(s) up to {last.shape[1]}x{last.shape[0]} px, "
            f"on {jax.devices()[0].platform}")
    stop, end, data = None, None, None
    for k in range(cursor.stage, len(setup.stages)):
        data, x = begin_stage(setup, k, x, progress)
        x, stop = run_stage(setup, data, x, cursor, resume, progress, hooks)
        if stop is not None:
            break
        end = end_stage(setup, data, x, progress, hooks)
    return finish(setup, data, x, progress, stop, end, hooks, resume)


def finish(setup: Setup, data: StageData, x: np.ndarray, progress: Progress, stop: Stop | None,
           end: dict | None, hooks: Hooks, resume: Checkpoint | None) -> RunResult:
    """The result: images, report, history, and the checkpoint of an interrupted run."""
    cfg, n = setup.cfg, setup.n
    run_s = hooks.elapsed()
    checkpoint, iterations, evaluations = None, progress.iterations, progress.evaluations
    if stop is not None:
        initial = None if progress.initial is None else {k: np.asarray(v) for k, v in progress.initial.items()}
        checkpoint = Checkpoint(stop.cursor, x[:n].copy(), run_s, progress.stages, iterations, evaluations,
                                stop.state, initial, progress.history,
                                factors=copy.deepcopy(setup.cache.get("factors", {})))
        if stop.partial is not None:  # this report counts the interrupted tile's iterations too
            iterations, evaluations = iterations + stop.partial[0], evaluations + stop.partial[1]
        x = stop.preview if stop.preview is not None else x
        final = {key: np.full(n, np.nan) for key in ("total", "content", "style")}
        if progress.last_parts_stage == len(setup.stages) - 1 and not setup.stages[-1].tiled:
            final = {key: np.asarray(v)[:n] for key, v in progress.last_parts.items()}
    else:
        final = end
    initial = progress.initial if progress.initial is not None else {key: np.full(n, np.nan) for key in final}
    for i in np.flatnonzero(progress.nonfinite >= 0):
        hooks.log(f"variant {i} (seed {setup.variants[i].seed}): loss or image became non-finite at iteration "
                  f"{progress.nonfinite[i]}; keeping its last finite image")
    summary = Summary(stop is not None, initial, final, iterations, evaluations, progress.nonfinite,
                      progress.compile_s, run_s, setup.devices, tuple(setup.final_inputs.content.shape[-3:]),
                      setup.strategy, max(setup.estimates), progress.stages, progress.history,
                      trim_report(setup.final_inputs.trims), None if resume is None else resume.cursor.where)
    photo = data.inputs.photo if data is not None else setup.final_inputs.photo
    return RunResult(finish_images(cfg, x[:n], photo), setup.variants, {}, progress.history, checkpoint,
                     np.array(x[:n], np.float32), summary, memory=progress.memory)
