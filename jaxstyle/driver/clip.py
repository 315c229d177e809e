"""A clip: its frames as variants with their own content targets, tied by a temporal term.

Stylising each frame on its own flickers: every frame lands in another local minimum. Ruder,
Dosovitskiy and Brox (*Artistic style transfer for videos*, GCPR 2016) tie each frame to its
neighbour's stylised frame, warped along the optical flow where the flow can be trusted
(:mod:`jaxstyle.media.flow`), by the ``temporal`` term (:func:`jaxstyle.model.losses.temporal_loss`). Here a
clip goes through the image pipeline (:func:`jaxstyle.engine.pipeline.run_plan`), whose batch slots are
(frame, variant) pairs, each with its own photograph, start image and prior
(:class:`jaxstyle.engine.pipeline.FrameBatch`):

* ``sequential`` (``video.mode``, the default, which measured better: docs/video.md): frame 1 is
  the image pipeline from noise (its pyramid); frame t starts from warp(x_{t-1}) and runs
  ``frame_iterations`` with the temporal term against it; every variant of a frame is one batch.
* ``multipass``: every frame of a chunk is ONE batch. Pass 1 is the image pipeline from noise;
  before each later pass the frames are blended with their warped neighbour,
  ``(x + b c warp(neighbour)) / (1 + b c)``, frame after frame in the pass's direction
  (alternating), each with its neighbour's already blended image (:func:`propagate`); then
  ``pass_iterations`` run on every frame at once with the temporal term (from pass
  ``temporal_from`` on) against that warped neighbour, held constant, so the frames stay
  independent inside the compiled program. Chunks of K frames (the memory estimate's choice)
  overlap by one frame, which the next chunk holds at the previous chunk's result.
* ``temporal: 0`` (not swept): every frame stylised on its own, all frames one batch, one pass.

An interrupted clip keeps, besides the run in progress's own checkpoint, the frames finished so
far and what the run in progress was made from, so ``--resume`` ends where an uninterrupted run
ends.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from ..engine.balance import group_key
from ..engine.checkpoint import Checkpoint
from ..engine.config import Config
from ..media.flow import clip_flows, consistency, dis_flow, require_flow, warp_batch, warping_error, warping_pairs
from ..engine.inputs import finish_images, input_lines, style_trims, trim_report
from ..engine.memory import available_bytes, require_fits
from ..engine.pipeline import (FrameBatch, RunResult, Summary, run_plan, run_winograd_layers, weighting_lines,
                               with_auto_terms)
from ..engine.plan import plan_stages, stage_peak_bytes, stage_work
from ..engine.progress import RunHooks, Tick, placed
from ..core.fileio import json_float
from .report import build_report
from ..engine.variants import Variant, expand_variants, objective_for
from ..media.video import Clip, clip_summary, read_clip
from ..model.losses import Objective
from ..model.weights import load_vgg19

Log = Callable[[str], None]


def load_clip(cfg: Config) -> Clip:
    """The clip of ``cfg.content``, its frames at the run's size. Without the ``video`` extra's
    packages this is one line saying what to install, before anything is read or written."""
    require_flow()
    return read_clip(cfg.content, cfg.video, cfg.size, cfg.max_pixels)


@dataclass
class Motion:
    """Flow-derived inputs of a clip of F frames at the final size ``(H, W)``.

    to_prev[t], to_next[t]: ``(H, W, 2)`` flows from frame t to t - 1 and to t + 1 (zero where
    there is no such frame); c_prev[t], c_next[t]: ``(H, W)`` consistency weights of warping
    frame t - 1 (t + 1) into frame t (zero where there is none); seconds: the flow's time.
    """

    to_prev: np.ndarray
    to_next: np.ndarray
    c_prev: np.ndarray
    c_next: np.ndarray
    seconds: float

    @classmethod
    def of(cls, frames: np.ndarray, method=dis_flow) -> "Motion":
        t0 = time.perf_counter()
        f, h, w = frames.shape[:3]
        fwd, bwd = clip_flows(frames, method)
        zero_flow, zero_c = np.zeros((1, h, w, 2), np.float32), np.zeros((1, h, w), np.float32)
        c_prev = [consistency(bwd[t], fwd[t]) for t in range(f - 1)]  # warping t into t + 1
        c_next = [consistency(fwd[t], bwd[t]) for t in range(f - 1)]  # warping t + 1 into t
        return cls(np.concatenate([zero_flow, bwd]), np.concatenate([fwd, zero_flow]),
                   np.concatenate([zero_c, np.stack(c_prev)]) if f > 1 else zero_c,
                   np.concatenate([np.stack(c_next), zero_c]) if f > 1 else zero_c,
                   time.perf_counter() - t0)

    def chunk(self, s: int, e: int) -> "Motion":
        """Frames s..e-1, as a clip of their own (no neighbour outside them)."""
        c_prev, c_next = self.c_prev[s:e].copy(), self.c_next[s:e].copy()
        c_prev[0] = 0.0
        c_next[-1] = 0.0
        return Motion(self.to_prev[s:e], self.to_next[s:e], c_prev, c_next, 0.0)


def warped(source: np.ndarray, flow: np.ndarray, c: np.ndarray, kind: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """Images moved along their frames' flows, and the weights per image: ``source`` is
    ``(F, V, H, W, 3)`` (frame f's V images, each warped with ``flow[f]`` ``(H, W, 2)``), ``c``
    ``(F, H, W)``. Returns ``(F, V, H, W, 3)`` and ``(F, V, H, W)``."""
    f, v = source.shape[:2]
    flows = np.repeat(flow[:, None], v, axis=1).reshape(f * v, *flow.shape[1:])
    out = np.asarray(warp_batch(jnp.asarray(source.reshape(f * v, *source.shape[2:])), jnp.asarray(flows), kind))
    return out.reshape(source.shape), np.repeat(c[:, None], v, axis=1)


def with_photo_change(start: np.ndarray, photo: np.ndarray, before: np.ndarray, flow: np.ndarray, share: float,
                      kind: str = "bilinear") -> np.ndarray:
    """A sequential frame's start: ``start`` ``(V, H, W, 3)`` (the frame before's stylised images
    warped into this frame) plus ``share`` times what the photograph did that the warp does not
    explain, ``photo`` ``(H, W, 3)`` minus ``before`` (the frame before) warped along the same
    ``flow`` ``(H, W, 2)``: light that changed, what the camera uncovered and the warp smeared,
    where the flow erred. Clipped to [0, 1]. The warped start carries the style; this carries the
    new frame's content, which a settling frame would otherwise spend its iterations recovering."""
    moved = np.asarray(warp_batch(jnp.asarray(before[None]), jnp.asarray(flow[None]), kind))[0]
    return np.clip(start + np.float32(share) * (photo - moved), 0.0, 1.0).astype(np.float32)


def blend(x: np.ndarray, prior: np.ndarray, weight: np.ndarray, b: float) -> np.ndarray:
    """Ruder et al.'s multipass blend ``(x + b c w) / (1 + b c)``, per pixel."""
    bc = b * weight[..., None]
    return ((x + bc * prior) / (1.0 + bc)).astype(np.float32)


def propagate(x: np.ndarray, motion: Motion, forward: bool, b: float, kind: str = "bilinear") -> tuple[np.ndarray, ...]:
    """The blend between two passes, frame after frame in the pass's direction, as the authors
    do: each frame is blended with its neighbour's already blended image, warped into it, so one
    pass carries a frame's look through the whole chunk. Only warps: the optimisation that
    follows runs every frame at once.

    ``x``: ``(F, V, H, W, 3)``, the last pass's images. Returns the start images, the priors (each
    frame's warped blended neighbour) and their weights, ``(F, V, H, W, 3)``, ``(F, V, H, W, 3)``
    and ``(F, V, H, W)``; the first frame in the direction has no neighbour (weight 0).
    """
    f = len(x)
    order = list(range(f)) if forward else list(range(f - 1, -1, -1))
    flow, c = (motion.to_prev, motion.c_prev) if forward else (motion.to_next, motion.c_next)
    start, prior = x.copy(), x.copy()
    weight = np.zeros(x.shape[:-1], np.float32)
    for t in order[1:]:
        n = t - 1 if forward else t + 1
        w, cw = warped(start[n:n + 1], flow[t:t + 1], c[t:t + 1], kind)
        prior[t], weight[t] = w[0], cw[0]
        start[t] = blend(x[t], w[0], cw[0], b)
    return start, prior, weight


def schedule(cfg: Config) -> str:
    """``sequential``, ``multipass`` or ``independent`` (``temporal: 0``, not swept)."""
    if cfg.temporal == 0 and "temporal" not in cfg.sweep:
        return "independent"
    return cfg.video.mode


def chunk_frames(cfg: Config, frames: int, variants: int, shape: tuple[int, int], objective: Objective) -> int:
    """How many frames a multipass chunk holds: ``video.chunk_frames``, or as many as the memory
    estimate (the network's and the correspondence losses' matrices) lets one batch hold (at least 2
    where the clip has 2; refused in one line when that does not fit)."""
    if cfg.video.chunk_frames:
        return min(cfg.video.chunk_frames, frames)
    stages = plan_stages(shape, cfg)
    history = cfg.optimizer.options.get("history_size", 0)
    layers = objective.layers
    winograd = bool(run_winograd_layers(cfg, stages, layers))
    need = lambda k: max(stage_peak_bytes(s, k * variants, layers, history, winograd, objective,  # noqa: E731
                                          cfg.style_scale, len(cfg.styles)) for s in stages)
    have = available_bytes() if cfg.memory_check else None
    k = frames
    if have is not None:
        while k > 2 and need(k) > have:
            k -= 1
        require_fits(need(k), f"{k} frame(s) x {variants} variant(s) at {shape[1]}x{shape[0]} px", have)
    return k


def chunks(frames: int, k: int) -> list[tuple[int, int]]:
    """``(start, end)`` of chunks of ``k`` frames overlapping by one."""
    if k >= frames:
        return [(0, frames)]
    out, s = [], 0
    while True:
        e = min(s + k, frames)
        out.append((s, e))
        if e == frames:
            return out
        s = e - 1


@dataclass
class ClipState:
    """What a clip has done: its finished frames ``(F_done, V, H, W, 3)`` as optimised (before
    clipping), the images a multipass chunk's next pass starts from (``(K * V, H, W, 3)``, or
    None), each run's summary and the clip's loss history."""

    done: np.ndarray
    previous: np.ndarray | None = None
    runs: list = field(default_factory=list)
    history: list = field(default_factory=list)
    run_s: float = 0.0
    compile_s: float = 0.0
    chunk: int = 0
    #: ``video.warm``: the last frame's L-BFGS memory (:func:`jaxstyle.engine.solvers.kept_memory`).
    memory: dict | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"done": self.done}
        if self.previous is not None:
            out["previous"] = self.previous
        for k, a in (self.memory or {}).items():
            out[f"memory.{k}"] = a
        return out

    def meta(self) -> dict:
        return {"runs": self.runs, "history": self.history, "run_s": self.run_s, "compile_s": self.compile_s,
                "chunk": self.chunk}

    @classmethod
    def restore(cls, checkpoint: Checkpoint) -> "ClipState":
        m, arrays = checkpoint.owned_meta, checkpoint.owned_arrays
        memory = {k.split(".", 1)[1]: a for k, a in arrays.items() if k.startswith("memory.")} or None
        return cls(arrays["done"], arrays.get("previous"), list(m["runs"]), list(m["history"]), float(m["run_s"]),
                   float(m["compile_s"]), int(m["chunk"]), memory)


def clip_result(frames: np.ndarray, variants: list[Variant], clip: Clip, report: dict[str, Any], history: list,
                checkpoint: Checkpoint | None) -> RunResult:
    """A clip's result: its frames ``(V, F, H, W, 3)`` in [0, 1] (finished: clipped, colours
    recombined) and the clip, with each variant's last finished frame as its image ``(V, H, W, 3)``
    (what the live page shows at the end)."""
    images = frames[:, -1] if frames.shape[1] else np.zeros((len(variants), 1, 1, 3), np.float32)
    return RunResult(images, variants, report, history, checkpoint, frames=frames, clip=clip)


@dataclass
class Run:
    """One run of the pipeline within a clip: its frames, its pass, and its batch."""

    start: int
    end: int
    video_pass: int
    frames: FrameBatch
    label: str


class ClipRunner:
    """Drives a clip's runs one after another; the state between them is a :class:`ClipState`."""

    def __init__(self, cfg: Config, clip: Clip, params, hooks: RunHooks):
        self.cfg, self.clip, self.params, self.hooks = cfg, clip, params, hooks
        self.watch = hooks.watchers()
        self.cache: dict = {}
        # The automatic weighting's terms once for the clip, so that its report states the objective run.
        self.variants = with_auto_terms(cfg, expand_variants(cfg), self.cache)
        self.v = len(self.variants)
        self.shape = clip.frames.shape[1:3]
        # A clip of one frame is an image: one run, nothing to tie.
        self.mode = "independent" if len(clip.frames) == 1 else schedule(cfg)
        self.passes = 1 if self.mode == "independent" else cfg.video.passes
        self.motion = Motion.of(clip.frames) if self.mode != "independent" else None
        self.trims = style_trims(cfg)  # what style_trim cuts from each artwork, for the log and the report
        self.iterations_done = 0

    # ---- the plan of runs -------------------------------------------------------------------------
    def slot_variants(self, frames: int) -> list[Variant]:
        """Frame-major slots: frame k's variants are slots k*V .. k*V + V - 1."""
        return [v for _ in range(frames) for v in self.variants]

    def content(self, s: int, e: int) -> np.ndarray:
        return np.repeat(self.clip.frames[s:e], self.v, axis=0)

    @property
    def ties(self) -> int:
        """Priors per frame: sequential with ``video.anchor`` also ties each frame to the first."""
        return 2 if self.mode == "sequential" and self.cfg.video.anchor else 1

    def empty(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.shape
        n, j = frames * self.v, self.ties
        return np.zeros((n, j, h, w, 3), np.float32), np.zeros((n, j, h, w), np.float32)

    def run_work(self, batch: int, iterations: int | None) -> float:
        """A run's cost for the ETA: the batch times its pixel-iterations."""
        stages = plan_stages(self.shape, self.cfg)
        if iterations is not None:
            stages = [dataclasses.replace(stages[-1], iterations=iterations)]
        return batch * sum(stage_work(s, self.cfg.tile_overlap) for s in stages)

    def planned_work(self, k: int) -> float:
        f, cfg = len(self.clip.frames), self.cfg
        if self.mode == "sequential":
            return self.run_work(self.v, None) + (f - 1) * self.run_work(self.v, self.cfg.video.frame_iterations)
        spans = chunks(f, k)
        later = self.passes - 1
        return sum(self.run_work((e - s) * self.v, None) + later * self.run_work((e - s) * self.v,
                                                                                cfg.video.pass_iterations)
                   for s, e in spans)

    # ---- running --------------------------------------------------------------------------------
    def execute(self, run: Run, state: ClipState, resume: Checkpoint | None, before: float,
                total: float) -> RunResult:
        """One run of the pipeline, its progress placed within the clip's."""
        slots = self.slot_variants(run.end - run.start)
        batch = len(slots)
        show = (run.end - run.start) // 2  # the live page shows each variant's middle frame of the batch
        base, spent, compiled = self.iterations_done, state.run_s, state.compile_s
        v, index = self.v, len(state.runs)
        mean = lambda vals: [json_float(np.nanmean([np.nan if a is None else a for a in vals[i::v]]))  # noqa: E731
                             for i in range(v)]

        def tick(t: Tick) -> Tick:
            images = t.images
            return dataclasses.replace(
                t, clip=run.label, elapsed_s=spent + t.elapsed_s, compile_s=compiled + t.compile_s,
                work=before + batch * t.work, work_total=total,
                parts={k: np.asarray(a).reshape(-1, v).mean(0) for k, a in t.parts.items()},
                images=None if images is None else (lambda: images()[show * v:(show + 1) * v]))

        def record(entry: dict) -> dict:
            out = {**entry, "stage": index + 1, "run_stage": entry["stage"], "frame": run.start,
                   "video_pass": run.video_pass + 1, "iteration": base + entry["iteration"],
                   "elapsed_s": round(spent + entry["elapsed_s"], 3),
                   **{k: mean(entry[k]) for k in ("total", "content", "style")}}
            state.history.append(out)
            return out

        hooks = RunHooks(self.hooks.log, self.hooks.should_stop, placed(self.watch, tick, record), resume)
        result = run_plan(self.cfg, self.params, hooks, slots, run.frames, self.cache, announce=False)
        result.report = build_report(self.cfg, slots, result.summary)
        return result

    def summary(self, run: Run, result: RunResult) -> dict:
        """A finished run's entry in the report: where, how long, every slot's final losses."""
        r = result.report
        final = {k: [e["final_loss"].get(k) for e in r["variants"]] for k in r["variants"][0]["final_loss"]}
        return {"frames": [int(self.clip.numbers[i]) for i in range(run.start, run.end)],
                "frame_index": [run.start, run.end], "video_pass": run.video_pass + 1,
                "stages": len(r["stages"]), "iterations": r["iterations"], "evaluations": r["evaluations"],
                # each slot's own: a frame's variants may settle at different iterations
                "slot_iterations": [e["iterations"] for e in r["variants"]],
                "run_s": r["timing"]["run_s"], "compile_s": r["timing"]["compile_s"], "final_loss": final,
                "devices": result.summary.devices, "memory_bytes": result.summary.memory_bytes}

    def from_first(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The flow from frame t to the first and its consistency weights ``(H, W, 2)``, ``(H, W)``:
        DIS both ways between the two frames directly (for t = 1, the neighbours' own)."""
        if t == 1:
            return self.motion.to_prev[1], self.motion.c_prev[1]
        frames = self.clip.frames
        to_first, from_first = dis_flow(frames[t], frames[0]), dis_flow(frames[0], frames[t])
        return to_first, consistency(to_first, from_first)

    def held(self, to_first: np.ndarray, c_first: np.ndarray) -> np.ndarray:
        """``(H, W)`` 1 where frame t keeps the first frame's stylised pixel: the flow between them
        moves it by less than ``video.hold`` pixels and the first frame is seen there, all around
        it (c = 1 after the spreading of the zeros)."""
        still = np.linalg.norm(to_first, axis=-1) < self.cfg.video.hold
        return (still & (c_first > 0.999)).astype(np.float32)

    def sequential_run(self, t: int, state: ClipState) -> Run:
        label = f"frame {t + 1}/{len(self.clip.frames)}"
        if t == 0:
            prior, weight = self.empty(1)
            return Run(0, 1, 0, FrameBatch(self.content(0, 1), prior, weight, keep_memory=self.cfg.video.warm),
                       label)
        m, video, v = self.motion, self.cfg.video, self.v
        kind = video.warp
        prior, weight = warped(state.done[t - 1:t], m.to_prev[t:t + 1], m.c_prev[t:t + 1], kind)
        priors, weights, start, hold = [prior[0]], [weight[0]], prior[0].copy(), None
        if video.photo_change > 0:
            start = with_photo_change(start, self.clip.frames[t], self.clip.frames[t - 1], m.to_prev[t],
                                      video.photo_change, kind)
        first = self.from_first(t) if self.ties == 2 or video.hold > 0 else None
        if self.ties == 2 and t == 1:  # the first frame is the one before: tied once, not twice
            priors.append(state.done[0])
            weights.append(np.zeros_like(weight[0]))
        elif self.ties == 2:  # the first frame, warped along the flow between the two, where it is seen
            w_first, cw = warped(state.done[:1], first[0][None], first[1][None], kind)
            priors.append(w_first[0])
            weights.append(cw[0])
        if video.hold > 0:  # still pixels start at, and keep, the first frame's value
            hold = np.repeat(self.held(*first)[None], v, axis=0)
            start = np.where(hold[..., None] > 0, state.done[0], start)
        stack = lambda xs: np.stack(xs, axis=1)  # noqa: E731  (V, J, ...)
        memory = self.warm_memory(t, state.memory, hold) if video.warm and state.memory is not None else None
        return Run(t, t + 1, 0, FrameBatch(self.content(t, t + 1), stack(priors), stack(weights), start,
                                           video.frame_iterations, hold, video.settle,
                                           video.settle_window if video.settle > 0 else 0, memory,
                                           video.warm), label)

    def warm_memory(self, t: int, memory: dict, hold: np.ndarray | None) -> dict:
        """Frame t-1's L-BFGS memory for frame t: its steps and gradient changes ``(V, m, H, W, 3)``
        warped along the flow as the frame is, zero where the flow is not trusted (nothing known
        there) and on held pixels (a direction there would move them)."""
        m, v = self.motion, self.v
        s, y = memory["s_history"], memory["y_history"]
        pairs = s.shape[1]
        both = np.concatenate([s, y], axis=1).reshape(1, 2 * v * pairs, *s.shape[2:])
        moved, _ = warped(both, m.to_prev[t:t + 1], m.c_prev[t:t + 1], self.cfg.video.warp)
        mask = np.repeat(m.c_prev[t][None], v, axis=0) * (1.0 if hold is None else 1.0 - hold)  # (V, H, W)
        moved = moved.reshape(v, 2 * pairs, *s.shape[2:]) * mask[:, None, :, :, None]
        return {**memory, "s_history": moved[:, :pairs], "y_history": moved[:, pairs:]}

    def multipass_run(self, s: int, e: int, p: int, state: ClipState) -> Run:
        k, cfg, v = e - s, self.cfg, self.v
        label = f"frames {s + 1}-{e}/{len(self.clip.frames)}, pass {p + 1}/{self.passes}"
        if p == 0:
            prior, weight = self.empty(k)
            return Run(s, e, p, FrameBatch(self.content(s, e), prior, weight), label)
        x = state.previous.reshape(k, v, *self.shape, 3).copy()
        anchored = s > 0  # the overlapping frame stays at the previous chunk's result
        if anchored:
            x[0] = state.done[s]
        start, prior, weight = propagate(x, self.motion.chunk(s, e), p % 2 == 1, cfg.video.blend, cfg.video.warp)
        if anchored:  # a backward pass blends the anchor too: it stays as it was
            start[0] = state.done[s]
        term = weight if p + 1 >= cfg.video.temporal_from else np.zeros_like(weight)
        flat = lambda a: a.reshape(k * v, *a.shape[2:])  # noqa: E731
        tie = lambda a: flat(a)[:, None]  # noqa: E731  (one tie: the neighbour)
        return Run(s, e, p, FrameBatch(self.content(s, e), tie(prior), tie(term), flat(start),
                                       cfg.video.pass_iterations), label)

    def runs(self, k: int):
        """Every run of the clip in order, as ``(cursor frame, pass, make)``: ``make(state)`` builds
        the run from what the clip has done so far."""
        f = len(self.clip.frames)
        if self.mode == "sequential":
            for t in range(f):
                yield t, 0, (lambda state, t=t: self.sequential_run(t, state))
            return
        for s, e in chunks(f, k):
            for p in range(self.passes):
                yield s, p, (lambda state, s=s, e=e, p=p: self.multipass_run(s, e, p, state))

    def absorb(self, run: Run, result: RunResult, state: ClipState, last_pass: bool) -> None:
        """Take a finished run's images into the clip's state."""
        raw = result.raw.reshape(run.end - run.start, self.v, *self.shape, 3)
        if self.mode == "sequential":
            state.done = np.concatenate([state.done, raw])
            state.memory = result.memory
            return
        state.previous = result.raw
        if last_pass:
            new = raw[1:] if run.start > 0 else raw  # the overlapping frame was finished by the chunk before
            state.done = np.concatenate([state.done, new])
            state.previous = None


def run_clip(cfg: Config, clip: Clip | None = None, params=None, hooks: RunHooks = RunHooks()) -> RunResult:
    """Stylise every frame of ``cfg``'s clip, every variant (seeds x sweep) a clip of its own.

    ``hooks.should_stop`` and ``hooks.resume`` work as for an image run
    (:func:`jaxstyle.engine.pipeline.run_plan`): an interrupted clip has a :class:`Checkpoint` whose
    cursor names the frame (or chunk) and the pass.
    """
    clip = load_clip(cfg) if clip is None else clip
    params = load_vgg19(cfg.weights) if params is None else params
    log, resume = hooks.log, hooks.resume
    hooks = dataclasses.replace(hooks, watch=hooks.watchers())
    watch = hooks.watch
    t0 = time.perf_counter()
    runner = ClipRunner(cfg, clip, params, hooks)
    f, (h, w) = len(clip.frames), runner.shape
    log(f"clip {clip_summary(clip)}; {runner.v} variant(s); {runner.mode}"
        + (f"; optical flow {runner.motion.seconds:.1f} s" if runner.motion is not None else ""))
    if clip.audio:
        log("the source has sound, which is not carried over")
    for line in input_lines(cfg, runner.trims) + weighting_lines(cfg, runner.variants, runner.cache):
        log(line)
    if resume is None:
        state = ClipState(np.zeros((0, runner.v, h, w, 3), np.float32))
        state.chunk = chunk_frames(cfg, f, runner.v, (h, w), objective_for(runner.variants, cfg)) \
            if runner.mode != "sequential" else 1
    else:  # the chunks the interrupted run chose, whatever memory there is now
        state = ClipState.restore(resume)
    k = state.chunk
    cursor = resume.cursor if resume is not None else None
    total = runner.planned_work(k)
    done_work = sum(r["work"] for r in state.runs)
    for history_entry in state.history:  # a resumed clip's history so far
        watch.record(history_entry)
    runner.iterations_done = sum(r["iterations"] for r in state.runs)
    checkpoint = None
    for frame, p, make in runner.runs(k):
        if len(state.runs) > 0 and (frame, p) <= tuple(state.runs[-1]["cursor"]):
            continue
        run = make(state)
        inner = resume if cursor is not None and (cursor.frame, cursor.video_pass) == (frame, p) else None
        clock = time.perf_counter()
        result = runner.execute(run, state, inner, done_work, total)
        state.run_s += time.perf_counter() - clock
        state.compile_s += result.report["timing"]["compile_s"]
        if result.checkpoint is not None:
            cp = result.checkpoint
            cp.cursor = dataclasses.replace(cp.cursor, frame=frame, video_pass=p, schedule="clip")
            cp.owned_arrays, cp.owned_meta = state.arrays(), state.meta()
            checkpoint = cp
            break
        work = runner.run_work(len(run.frames.content), run.frames.iterations)
        done_work += work
        runner.iterations_done += result.report["iterations"]
        state.runs.append({**runner.summary(run, result), "cursor": [frame, p], "work": work})
        last = runner.mode == "sequential" or p == runner.passes - 1
        runner.absorb(run, result, state, last)
    return finish_clip(cfg, runner, state, checkpoint, time.perf_counter() - t0, resume)


def frame_losses(runner: ClipRunner, state: ClipState) -> list[list[dict]]:
    """Per variant, per finished frame: its final losses (from the run that finished it)."""
    out: list[list[dict]] = [[] for _ in range(runner.v)]
    last = runner.passes - 1
    for r in state.runs:
        if runner.mode != "sequential" and r["video_pass"] - 1 != last:
            continue
        s, e = r["frame_index"]
        for k in range(e - s):
            if s > 0 and k == 0 and runner.mode != "sequential":
                continue  # the overlapping frame: its chunk before finished it
            for i in range(runner.v):
                out[i].append({key: vals[k * runner.v + i] for key, vals in r["final_loss"].items()})
    return out


def clip_factors(runner: ClipRunner) -> dict[str, list[float]]:
    """``weighting: auto``'s factor of each variant per measured shape (a stage's, shrunk to the
    artwork's own long side), measured once for the clip (on its first frame; a variant with
    ``fixed`` has 1): ``{"HxW": [factor, ...]}``."""
    known = runner.cache.get("factors", {})
    return {shape: [round(groups.get(group_key(v.content_layers, v.style_layers, v.style_loss, v.content_loss), 1.0), 6)
                    if v.weighting == "auto" else 1.0 for v in runner.variants] for shape, groups in known.items()}


def finish_clip(cfg: Config, runner: ClipRunner, state: ClipState, checkpoint: Checkpoint | None,
                seconds: float, resume: Checkpoint | None) -> RunResult:
    """The clip's frames, finished, and its report."""
    clip, v = runner.clip, runner.v
    done = state.done  # (F_done, V, H, W, 3)
    photos = clip.frames[: len(done)]
    frames = np.stack([finish_images(cfg, done[:, i], photos) for i in range(v)]) if len(done) else \
        np.zeros((v, 0, *runner.shape, 3), np.float32)
    per_frame = frame_losses(runner, state)
    mean_of = lambda rows, k: json_float(np.mean([r[k] for r in rows if r.get(k) is not None])) \
        if any(r.get(k) is not None for r in rows) else None  # noqa: E731
    final = {k: np.array([mean_of(rows, k) if rows else np.nan for rows in per_frame], dtype=float)
             for k in ("total", "content", "style")}
    iterations = np.full(v, sum(r["iterations"] for r in state.runs), np.int64)
    evaluations = np.full(v, sum(r["evaluations"] for r in state.runs) // max(v, 1), np.int64)
    stages = [{"run": i + 1, **{k: r[k] for k in ("frames", "video_pass", "iterations", "run_s")}}
              for i, r in enumerate(state.runs)]
    nan = {k: np.full(v, np.nan) for k in final}
    # Older checkpoints' runs do not carry the device count and memory estimate: 1 and unknown.
    devices = max([r.get("devices", 1) for r in state.runs], default=1)
    memory = max([r.get("memory_bytes", 0) for r in state.runs], default=0)
    summary = Summary(checkpoint is not None, nan, final, iterations, evaluations, np.full(v, -1), state.compile_s,
                      state.run_s, devices, (*runner.shape, 3), cfg.optimizer.strategy, memory, stages,
                      state.history, trim_report(runner.trims), None if resume is None else resume.cursor.where)
    report = build_report(cfg, runner.variants, summary)
    for i, entry in enumerate(report["variants"]):
        entry["frames"] = per_frame[i]
    measures = {}
    if len(done) > 1 and checkpoint is None:
        pairs = warping_pairs(clip.frames)  # the evaluation's flows, once for the input and every variant
        measures = {"warping_error_input": warping_error(clip.frames, clip.frames, pairs=pairs),
                    "warping_error": [warping_error(frames[i], clip.frames, pairs=pairs) for i in range(v)],
                    "flow": "warping error with Farneback's flow on the original frames (Lai et al. 2018)"}
    report["clip"] = {
        "source": clip.source, "frames": len(clip.frames), "numbers": clip.numbers, "fps": clip.fps,
        "source_fps": clip.source_fps, "mode": runner.mode, "passes": runner.passes,
        "frames_done": len(done), "audio": "the source's sound is not carried over" if clip.audio else "none",
        "flow_s": round(runner.motion.seconds, 3) if runner.motion is not None else 0.0,
        "style_factors": clip_factors(runner), "runs": state.runs, **measures}
    report["timing"]["wall_s"] = round(seconds, 3)
    return clip_result(frames, runner.variants, clip, report, state.history, checkpoint)

