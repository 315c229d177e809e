"""Print-size output: coarse-to-fine stages and tiled optimisation.

**Coarse-to-fine.** With ``scales: [256, 512]`` and ``size: 1024`` the image is optimised at a long
side of 256 px, upsampled, optimised at 512 px, upsampled and finished at 1024 px. Each stage
recomputes the photograph's content targets and the artwork's Gram targets at its own size, and
starts L-BFGS afresh: its history holds image-sized steps of the previous size, which mean nothing
after a resize.

**Tiling.** A stage larger than ``tile_size`` is optimised tile by tile, in ``tile_passes`` passes
over a grid of overlapping tiles whose offsets shift between passes, so that no tile border stays
in place. Each tile is matched against

* its own content target: P^l of the same crop of the photograph;
* the *whole* artwork's style statistics: per-position Gram matrices of the full style image at the
  stage's size, times the tile's M_l (``Objective.targets_from_grams``), so every tile is pushed
  towards the statistics of the whole painting, not of one region of it.

A tile keeps the whole image's balance of content and style (:func:`tile_style_share`):

* ``losses: paper``: its style weight is beta times its share M_t/M of the image's pixels. The full
  image's style loss (Eq. 4) normalises by M_l^2 of the whole image; a tile whose Gram matrix G_t is
  its share M_t/M of the whole's G has gradient (M/M_t) times the full loss's gradient when
  normalised by its own M_t^2, while Eq. 1's plain sum gives the tile the full loss's content
  gradient. Scaling beta by M_t/M restores the balance.
* ``losses: mean``: beta stays. Both terms are means over the tile's positions, so at a tile pixel
  the content gradient is M/M_t times the full loss's (1/(N M_t) against 1/(N M)), and so is the
  style gradient when the tile's G_t/M_t matches the whole's G/M; their ratio is the full one's.

With a single tile the tiled stage *is* the untiled one in both. The optimised tile is blended back with weights
that ramp linearly across the overlap (1 on image borders), so no pixel near a tile edge, where the
network sees zero padding, decides the result alone.

Everything runs through the same compiled programs as a direct run (one compilation per tile shape);
variants (seeds, sweeps) stay one batch through every stage and tile.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .config import Config
from .errors import OutputError
from .fileio import atomic_write
from .images import fit_shape
from .memory import BASELINE_BYTES, estimate_peak_bytes, forward_peak_bytes, require_fits
from .optim import Program, Solver, aux_of, evals_of, restore_state, state_leaves, to_host
from .vgg import layer_index

@dataclass(frozen=True)
class Stage:
    """One resolution of a run: the image's ``(H, W)``, iterations per pixel, the tile's ``(h, w)``
    (equal to ``shape`` when the stage is not tiled) and the passes over the tile grid."""

    shape: tuple[int, int]
    iterations: int
    tile: tuple[int, int]
    passes: int = 1

    @property
    def tiled(self) -> bool:
        return self.tile != self.shape

    def iterations_per_tile(self) -> int:
        """Each pass gives each tile an equal share of the stage's iterations."""
        return -(-self.iterations // self.passes)


def uses_stages(cfg: Config) -> bool:
    """Whether ``cfg`` asks for coarse-to-fine stages or tiling (else a direct run)."""
    return bool(cfg.scales) or cfg.tile_size > 0


def plan_stages(shape: Sequence[int], cfg: Config) -> list[Stage]:
    """The stages of ``cfg`` for a photograph of final ``shape`` ``(H, W)``, coarsest first."""
    shape = (int(shape[0]), int(shape[1]))
    sizes = [(fit_shape(shape, s), n) for s, n in zip(cfg.scales, cfg.scale_iterations)]
    sizes.append((shape, cfg.optimizer.iterations))
    out = []
    for (h, w), n in sizes:
        t = cfg.tile_size
        tiled = t > 0 and max(h, w) > t
        tile = (min(t, h), min(t, w)) if tiled else (h, w)
        out.append(Stage((h, w), n, tile, cfg.tile_passes if tiled else 1))
    return out


def tile_starts(length: int, tile: int, overlap: int, offset: int = 0) -> list[int]:
    """Starts of the tiles along one axis.

    The first tile starts at 0 and the last ends at ``length``; neighbours overlap by at least
    ``overlap`` pixels; ``offset`` (0 <= offset < tile - overlap) shifts the grid's interior edges.
    """
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts, k = [], 0
    while not starts or starts[-1] < length - tile:
        s = min(max(k * stride - offset, 0), length - tile)
        if not starts or s != starts[-1]:
            starts.append(s)
        k += 1
    return starts


def tile_grid(stage: Stage, overlap: int, pass_index: int) -> list[tuple[int, int]]:
    """``(y, x)`` corners of every tile of one pass, in raster order.

    Pass p shifts the grid by p / passes of a stride along both axes, so the borders of one pass
    fall inside the tiles of the others.
    """
    (h, w), (th, tw) = stage.shape, stage.tile
    ys = tile_starts(h, th, overlap, (pass_index * max(th - overlap, 1)) // stage.passes)
    xs = tile_starts(w, tw, overlap, (pass_index * max(tw - overlap, 1)) // stage.passes)
    return [(y, x) for y in ys for x in xs]


def blend_ramp(start: int, tile: int, length: int, overlap: int) -> np.ndarray:
    """``(tile,)`` write-back weights along one axis: a linear ramp over ``overlap`` pixels at each
    edge that lies inside the image, 1 elsewhere (and at the image's own borders)."""
    i = np.arange(tile, dtype=np.float64)
    w = np.ones(tile)
    if start > 0:
        w = np.minimum(w, (i + 1) / (overlap + 1))
    if start + tile < length:
        w = np.minimum(w, (tile - i) / (overlap + 1))
    return w


def tile_borders(stage: Stage, overlap: int) -> tuple[list[int], list[int]]:
    """Rows and columns where some tile of some pass has an edge inside the image."""
    rows, cols = set(), set()
    (h, w), (th, tw) = stage.shape, stage.tile
    for p in range(stage.passes):
        for y, x in tile_grid(stage, overlap, p):
            rows.update(b for b in (y, y + th) if 0 < b < h)
            cols.update(b for b in (x, x + tw) if 0 < b < w)
    return sorted(rows), sorted(cols)


#: Lines are compared only with lines at the same position modulo the network's total stride: its
#: pooling leaves a periodic texture (most visibly every second line alternates strong and weak),
#: and tile borders all fall on even positions, so a plain average would mistake it for seams.
SEAM_PERIOD = 16


def seam_ratio(image: np.ndarray, rows: Sequence[int], cols: Sequence[int]) -> float:
    """Gradient energy across tile borders divided by that across other lines of the same phase.

    ``image``: ``(H, W, C)``. The energy of line r is the mean over the image of the squared colour
    difference between rows r-1 and r (columns likewise); a border at r is that line. Each border
    is compared with every non-border line r' = r (mod ``SEAM_PERIOD``) of the same axis. 1 means
    the borders look like any other line; a visible seam shows as a ratio well above 1. NaN when
    there is no border (or nothing to compare it with).
    """
    image = np.asarray(image, np.float64)
    on, ref = 0.0, 0.0
    for axis, borders in ((0, rows), (1, cols)):
        diff = np.square(np.diff(image, axis=axis)).sum(-1)
        energy = diff.mean(axis=1 - axis)  # energy[r - 1] is line r
        lines = np.arange(1, energy.size + 1)
        border = np.isin(lines, list(borders))
        for r in borders:
            same = ~border & (lines % SEAM_PERIOD == r % SEAM_PERIOD)
            if same.any():
                on += energy[r - 1]
                ref += energy[same].mean()
    return float(on / ref) if ref > 0 else float("nan")


def upsample(images: np.ndarray, shape: Sequence[int], method: str = "cubic") -> np.ndarray:
    """``(V, h, w, 3)`` -> ``(V, H, W, 3)`` with ``jax.image.resize``'s ``method``."""
    v, _, _, c = images.shape
    return np.asarray(jax.image.resize(jnp.asarray(images), (v, *shape, c), method))


def tile_style_share(stage: Stage, losses: str) -> float:
    """What a tile's beta is multiplied by so that its objective keeps the whole image's balance.

    ``"paper"``: M_t / M (module docstring). ``"mean"``: 1. Both of its terms are means over the
    tile, so each one's gradient at a tile pixel is M / M_t times the whole image's, and their
    ratio is the whole image's already.
    """
    if losses == "mean":
        return 1.0
    (h, w), (th, tw) = stage.shape, stage.tile
    return (th * tw) / (h * w)


def stage_peak_bytes(stage: Stage, batch: int, layers: Sequence[str], history_size: int) -> int:
    """Predicted peak memory of one stage.

    Untiled: :func:`jaxstyle.memory.estimate_peak_bytes` of the image. Tiled: the larger of the
    tile's optimisation and a forward pass over the whole image (targets and the full-image loss),
    plus the whole-image buffers kept on the host (the batch, blending temporaries, the photograph,
    the style and mask images).
    """
    program = estimate_peak_bytes(*stage.tile, batch, layers, history_size)
    if not stage.tiled:
        return program
    h, w = stage.shape
    deepest = max(layers, key=layer_index)
    buffers = (3 * batch + 6) * h * w * 3 * 4
    return max(program, forward_peak_bytes(h, w, deepest) + BASELINE_BYTES) + buffers


# ---- checkpoints ---------------------------------------------------------------------------
@dataclass
class StageCheckpoint:
    """Where an interrupted coarse-to-fine or tiled run stood, exactly enough to end where the
    uninterrupted run ends: the batch ``(V, H, W, 3)`` as it was when tile ``tile`` of pass
    ``pass_index`` of stage ``stage`` started, the solver state of that tile after ``tile_done``
    iterations (``state``, its leaves; None when none had run), the final stage's starting losses
    (``initial``, once known), the iterations and evaluations of the finished tiles, and the report's
    stages so far."""

    images: np.ndarray
    stage: int
    pass_index: int
    tile: int
    tile_done: int
    run_s: float
    stages: list
    iterations: np.ndarray
    evaluations: np.ndarray
    state: list[np.ndarray] | None = None
    initial: dict[str, np.ndarray] | None = None

    @property
    def where(self) -> str:
        return f"stage {self.stage + 1}, pass {self.pass_index + 1}, tile {self.tile + 1}" + (
            f", iteration {self.tile_done}" if self.tile_done else "")

    def save(self, path: Path, config: dict) -> Path:
        meta = json.dumps({"kind": "stages", "stage": self.stage, "pass": self.pass_index, "tile": self.tile,
                           "tile_done": self.tile_done, "run_s": self.run_s, "stages": self.stages,
                           "state_leaves": None if self.state is None else len(self.state), "config": config})
        arrays = {f"state{i}": a for i, a in enumerate(self.state or [])}
        arrays.update({f"initial_{k}": v for k, v in (self.initial or {}).items()})

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.frombuffer(meta.encode(), np.uint8), images=self.images,
                         iterations=self.iterations, evaluations=self.evaluations, **arrays)
        return atomic_write(path, write)

    @classmethod
    def load(cls, path: Path, config: dict) -> "StageCheckpoint":
        from .transfer import read_checkpoint

        meta, z = read_checkpoint(path, config)
        if meta.get("kind") != "stages" or "images" not in z:
            raise OutputError(f"{path} is not a checkpoint of a coarse-to-fine or tiled run")
        if "state_leaves" not in meta:
            raise OutputError(f"{path} was written by an older version that cannot resume exactly; "
                              "start the run afresh")
        n = meta["state_leaves"]
        state = None if n is None else [z[f"state{i}"] for i in range(n)]
        initial = {k[len("initial_"):]: v for k, v in z.items() if k.startswith("initial_")} or None
        return cls(z["images"], int(meta["stage"]), int(meta["pass"]), int(meta["tile"]),
                   int(meta["tile_done"]), float(meta["run_s"]), list(meta["stages"]), z["iterations"],
                   z["evaluations"], state, initial)


# ---- the run ---------------------------------------------------------------------------------
def run_stages(cfg: Config, params, log: Callable[[str], None] = print,
               save_intermediate: Callable[[str, np.ndarray], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               resume: StageCheckpoint | None = None):
    """Coarse-to-fine and/or tiled optimisation of every variant of ``cfg``; see the module docstring.

    Returns a :class:`jaxstyle.transfer.RunResult` whose ``report["stages"]`` describes each stage
    (size, tiles, passes, time, the full-image loss at its end, the seam ratio of tiled stages) and
    whose ``final_loss`` is the full-resolution loss of the result. ``save_intermediate("stage<k>", images)``
    receives each coarse stage's result (with ``save_every`` set). Interrupted between chunks or tiles, the result carries a
    :class:`StageCheckpoint`.
    """
    from . import transfer as T

    variants = T.expand_variants(cfg)
    objective = T.objective_for(variants, cfg)
    final_inputs = T.prepare_images(cfg, objective.layers)
    stages = plan_stages(final_inputs.content.shape[:2], cfg)
    history_size = cfg.optimizer.history_size
    estimates = [stage_peak_bytes(s, len(variants), objective.layers, history_size) for s in stages]
    need = max(estimates)
    if cfg.memory_check:
        worst = stages[int(np.argmax(estimates))]
        require_fits(need, f"{len(variants)} variant(s) at {worst.shape[1]}x{worst.shape[0]} px"
                     + (f" in {worst.tile[1]}x{worst.tile[0]} tiles" if worst.tiled else ""))
    if params is None:
        from .weights import load_vgg19
        params = load_vgg19(cfg.weights)

    mesh, n_dev, padded = T.split_over_devices(variants)
    weights = T.batch_weights(padded, objective)
    solver = Solver(objective, cfg.optimizer)
    strategy = cfg.optimizer.resolved_strategy()
    programs: dict[tuple[int, int], Program] = {}
    compile_s = 0.0
    grams_fn = jax.jit(objective.style_grams)
    targets_fn = jax.jit(objective.targets_from_grams)
    loss_fn = jax.jit(objective.parts)

    def full_losses(x: np.ndarray, params, targets) -> dict[str, np.ndarray]:
        # One image at a time: a forward pass over a print-size batch would not fit where a tile does.
        parts = [jax.device_get(loss_fn(jnp.asarray(xi), params, targets,
                                        jax.tree_util.tree_map(lambda a: a[i], weights)))
                 for i, xi in enumerate(x[: len(variants)])]
        return {k: np.array([p[k] for p in parts]) for k in parts[0]}

    iterations = np.zeros(len(variants), np.int64)
    evaluations = np.zeros(len(variants), np.int64)
    nonfinite = np.full(len(variants), -1, np.int64)
    reports: list[dict] = []
    history: list[dict] = []
    start_stage, start_pass, start_tile, start_done = 0, 0, 0, 0
    x = None
    t0 = time.perf_counter()
    if resume is not None:
        x, reports = np.asarray(resume.images, np.float32), list(resume.stages)
        start = (resume.stage, resume.pass_index, resume.tile)
        start_stage, start_pass, start_tile, start_done = *start, resume.tile_done
        iterations, evaluations = resume.iterations.copy(), resume.evaluations.copy()
        x = np.concatenate([x, np.repeat(x[-1:], len(padded) - len(x), axis=0)])
        t0 -= resume.run_s
    log(f"{len(variants)} variant(s), {len(stages)} stage(s) up to {stages[-1].shape[1]}x{stages[-1].shape[0]} "
        f"px, on {jax.devices()[0].platform}")
    interrupted = None
    carried = resume.state if resume is not None else None  # the interrupted tile's solver state
    initial = None if resume is None else resume.initial
    tile_state, preview, partial = None, None, None
    last_aux, last_aux_stage = None, -1
    inputs = final_inputs
    for k, stage in enumerate(stages):
        if k < start_stage:
            continue
        stage_t0 = time.perf_counter()
        inputs = final_inputs if stage.shape == tuple(final_inputs.content.shape[:2]) else \
            T.prepare_images(cfg, objective.layers, shape=stage.shape)
        content = jnp.asarray(inputs.content)
        masks = None if inputs.masks is None else jnp.asarray(inputs.masks)
        grams = grams_fn(params, [jnp.asarray(s) for s in inputs.styles])
        if x is None:
            x = T.start_images(cfg, padded, inputs)
        elif x.shape[1:3] != stage.shape:
            x = upsample(x, stage.shape, cfg.upsample)
        x = np.array(x, np.float32)
        full_targets = targets_fn(params, content, grams, cfg.blend, masks) if stage.tiled else None
        if k == len(stages) - 1 and stage.tiled and initial is None:
            initial = full_losses(x, params, full_targets)
        h, w = stage.shape
        th, tw = stage.tile
        tile_weights = weights._replace(beta=weights.beta * tile_style_share(stage, objective.losses))
        per_tile = stage.iterations_per_tile()
        for p in range(stage.passes):
            if k == start_stage and p < start_pass:
                continue
            grid = tile_grid(stage, cfg.tile_overlap, p)
            for j, (y0, x0) in enumerate(grid):
                if k == start_stage and p == start_pass and j < start_tile:
                    continue
                resumed = resume is not None and (k, p, j) == (start_stage, start_pass, start_tile)
                skip = start_done if resumed else 0
                restored = carried if resumed else None
                if should_stop is not None and should_stop():
                    interrupted, tile_state = (k, p, j, skip), restored
                    break
                if (th, tw) not in programs:
                    programs[(th, tw)] = Program(solver, strategy, cfg.optimizer.unroll, mesh)
                    compiled = False
                else:
                    compiled = True
                program = programs[(th, tw)]
                crop_masks = None if masks is None else masks[:, y0:y0 + th, x0:x0 + tw]
                targets = targets_fn(params, content[y0:y0 + th, x0:x0 + tw], grams, cfg.blend, crop_masks)
                xt, shared, pv = program.place(jnp.asarray(x[:, y0:y0 + th, x0:x0 + tw]), (params, targets),
                                               (tile_weights,))
                if not compiled:
                    compile_s += program.compile(xt, shared, pv)
                state = program.init(xt, shared, pv)
                if initial is None and k == len(stages) - 1 and not stage.tiled:
                    initial = to_host(aux_of(state.opt))
                if restored is not None:  # continue the interrupted tile exactly where it stood
                    state = program.place_state(restore_state(restored, state))
                done = skip
                for end in T.chunk_ends(per_tile, cfg.print_every):
                    if end <= done:
                        continue
                    if done > skip and should_stop is not None and should_stop():
                        interrupted = (k, p, j, done)
                        break
                    state = program.advance(state, shared, pv, end - done)
                    done = end
                    if not stage.tiled:
                        aux = to_host(aux_of(state.opt))
                        history.append({"stage": k + 1, "iteration": end,
                                        "elapsed_s": round(time.perf_counter() - t0, 3),
                                        "total": [T._json_float(t) for t in aux["total"][: len(variants)]]})
                        if cfg.print_every:
                            log(f"stage {k + 1}/{len(stages)} "
                                + T._progress_line(end, per_tile, aux, time.perf_counter() - t0))
                    if bool(np.all(to_host(state.done))):
                        break
                state = to_host(state)
                wy = blend_ramp(y0, th, h, cfg.tile_overlap)
                wx = blend_ramp(x0, tw, w, cfg.tile_overlap)
                wt = (wy[:, None] * wx[None, :])[None, :, :, None].astype(np.float32)
                blended = x.copy() if interrupted else x
                region = x[:, y0:y0 + th, x0:x0 + tw]
                blended[:, y0:y0 + th, x0:x0 + tw] = region * (1 - wt) + state.x * wt
                n = len(variants)
                last_aux, last_aux_stage = aux_of(state.opt), k
                if interrupted:
                    # The checkpoint keeps the batch as the tile found it and the tile's solver
                    # state; only the images written now show the tile's progress.
                    tile_state, preview = state_leaves(state), blended
                    partial = (np.asarray(state.iterations)[:n], np.asarray(evals_of(state.opt))[:n])
                    break
                iterations += np.asarray(state.iterations)[:n]
                evaluations += np.asarray(evals_of(state.opt))[:n]
                bad = np.asarray(state.nonfinite_at)[:n]
                nonfinite = np.where((nonfinite < 0) & (bad >= 0), iterations, nonfinite)
                if stage.tiled and cfg.print_every:
                    tot = np.asarray(last_aux["total"])[:n]
                    log(f"stage {k + 1}/{len(stages)} {w}x{h} px, pass {p + 1}/{stage.passes}, tile "
                        f"{j + 1}/{len(grid)}: tile loss {tot.min():.4g}"
                        + (f"..{tot.max():.4g}" if n > 1 else "") + f"  ({time.perf_counter() - t0:.1f} s)")
            if interrupted:
                break
        if interrupted:
            break
        end_losses = full_losses(x, params, full_targets) if stage.tiled else \
            {key: np.asarray(v)[: len(variants)] for key, v in last_aux.items()}
        entry = {"shape": [h, w], "iterations": stage.iterations,
                 "tile": [th, tw] if stage.tiled else None, "passes": stage.passes,
                 "tiles_per_pass": [len(tile_grid(stage, cfg.tile_overlap, p)) for p in range(stage.passes)],
                 "run_s": round(time.perf_counter() - stage_t0, 3),
                 "memory_estimate_mb": round(estimates[k] / 2**20, 1),
                 "total_loss": [T._json_float(v) for v in end_losses["total"]]}
        if stage.tiled:
            rows, cols = tile_borders(stage, cfg.tile_overlap)
            entry["seam_ratio"] = round(max(seam_ratio(np.clip(im, 0, 1), rows, cols)
                                            for im in x[: len(variants)]), 4)
        reports.append(entry)
        history.append({"stage": k + 1, "iteration": per_tile * stage.passes,
                        "elapsed_s": round(time.perf_counter() - t0, 3), "total": entry["total_loss"]})
        log(f"stage {k + 1}/{len(stages)} done: {w}x{h} px"
            + (f", {sum(entry['tiles_per_pass'])} tiles in {stage.passes} pass(es)" if stage.tiled else "")
            + f", total loss {np.min(end_losses['total']):.4g}, {entry['run_s']:.1f} s")
        if save_intermediate is not None and k < len(stages) - 1 and cfg.save_every:
            save_intermediate(f"stage{k + 1}", T.finish_images(cfg, x[: len(variants)], inputs.photo))
    run_s = time.perf_counter() - t0
    checkpoint = None
    if interrupted:
        kept = None if initial is None else {key: np.asarray(v) for key, v in initial.items()}
        checkpoint = StageCheckpoint(x[: len(variants)].copy(), *interrupted, run_s, reports, iterations,
                                     evaluations, tile_state, kept)
        if partial is not None:  # this report counts the interrupted tile's iterations (the resumed
            iterations, evaluations = iterations + partial[0], evaluations + partial[1]  # run, when it ends)
        if preview is not None:
            x = preview
        final = {key: np.full(len(variants), np.nan) for key in ("total", "content", "style")}
        if last_aux_stage == len(stages) - 1 and not stages[-1].tiled:  # the image's own loss
            final = {key: np.asarray(v)[: len(variants)] for key, v in last_aux.items()}
    else:
        final = end_losses
    if initial is None:
        initial = {key: np.full(len(padded), np.nan) for key in final}
    for i in np.flatnonzero(nonfinite >= 0):
        log(f"variant {i} (seed {variants[i].seed}): loss or image became non-finite near iteration "
            f"{nonfinite[i]}; kept its last finite image")
    report = T.base_report(cfg, variants, interrupted is not None, int(iterations.max(initial=0)),
                           int(evaluations.sum()), compile_s, run_s, n_dev, final_inputs.content.shape,
                           strategy, need)
    report["stages"] = reports
    report["variants"] = [T.variant_entry(v, T._losses(initial, i), T._losses(final, i), int(iterations[i]),
                                          int(evaluations[i]), int(nonfinite[i]))
                          for i, v in enumerate(variants)]
    images = T.finish_images(cfg, x[: len(variants)], inputs.photo)
    return T.RunResult(images, variants, report, history, checkpoint)
