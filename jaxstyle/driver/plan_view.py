"""``jaxstyle --dry-run``: the plan of a run, read from its config and inputs, with nothing run,
compiled or written."""

from __future__ import annotations

from pathlib import Path

from ..engine.config import Config
from ..engine.inputs import prepare_images
from ..engine.memory import available_bytes
from ..engine.pipeline import run_winograd_layers
from ..engine.plan import pass_tiles, plan_stages, stage_peak_bytes, stage_work
from ..engine.variants import expand_variants, objective_for, variant_labels
from .job import program_groups
from .outputs import planned_outputs


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def plan_lines(cfg: Config) -> list[str]:
    """What the run of ``cfg`` would do, one fact a line: the variants, each stage's size,
    iterations, tiles and predicted peak memory, the compiled programs it builds, and its output
    folder's state. The inputs are read (a clip's frames included) and checked as a run checks them."""
    variants = expand_variants(cfg)
    groups = program_groups(cfg)
    objective = objective_for(variants, cfg)
    lines = [f"{len(variants)} variant(s): " + "; ".join(variant_labels(variants, cfg.sweep))]
    frames = None
    if cfg.is_clip:
        from .clip import load_clip  # the clip's packages only where a clip is planned
        clip = load_clip(cfg)
        frames = clip.frames[:1]
        lines.append(f"clip: {len(clip.frames)} frame(s) of {clip.frames.shape[2]}x{clip.frames.shape[1]} px at "
                     f"{clip.fps:g} fps, {cfg.video.mode}; the first frame runs the plan below"
                     + (f", each later one up to {cfg.video.frame_iterations} iterations at the final size"
                        if cfg.video.mode == "sequential" else f", then {cfg.video.passes} passes over chunks"))
    inputs = prepare_images(cfg, objective.layers, frames=frames)
    stages = plan_stages(inputs.content.shape[-3:-1], cfg)
    winograd = bool(run_winograd_layers(cfg, stages, objective.layers))
    history = cfg.optimizer.options.get("history_size", 0)
    peaks = [stage_peak_bytes(s, len(variants), objective.layers, history, winograd, objective, cfg.style_scale,
                              len(cfg.styles)) for s in stages]
    for k, stage in enumerate(stages):
        (h, w), (th, tw) = stage.shape, stage.tile
        tiles = pass_tiles(stage, cfg.tile_overlap)
        lines.append(f"stage {k + 1}/{len(stages)}: {w}x{h} px, {stage.iterations} {cfg.optimizer.name} iterations"
                     + (f" per tile, {sum(tiles)} tiles of {tw}x{th} px in {stage.passes} pass(es)" if stage.tiled
                        else "")
                     + f", about {gib(peaks[k])}"
                     f" at its peak, {stage_work(stage, cfg.tile_overlap) * len(variants) / 1e6:.1f} M pixel-iterations")
    shapes = sorted({s.tile for s in stages})
    lines.append(f"programs: {len(shapes) * len(groups)} to compile (one per tile shape"
                 + (f" and per style loss, {len(groups)}" if len(groups) > 1 else "") + "): "
                 + ", ".join(f"{tw}x{th}" for th, tw in shapes))
    have = available_bytes()
    if have is not None:
        need = max(peaks)
        lines.append(f"memory: about {gib(need)} at the peak, {gib(have)} available"
                     + ("" if need <= have else ": the run would be refused (memory_check)"))
    lines.append(output_line(cfg))
    return lines


def output_line(cfg: Config) -> str:
    """Whether the output folder is new, or which earlier file would stop the run."""
    out = Path(cfg.output)
    if not out.exists():
        return f"output: {out} (new)"
    existing = [f for f in planned_outputs(cfg, expand_variants(cfg), cfg.is_clip) if f.exists()]
    if existing and not cfg.overwrite:
        return f"output: {out}, where {existing[0].name} already exists: the run would stop (--overwrite replaces it)"
    return f"output: {out} (exists; {'its files would be replaced' if existing else 'nothing in it is replaced'})"
