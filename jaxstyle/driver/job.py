"""The one driver: what a command runs. Validated config in, files out: check the output folder,
take its lock, run the schedule the config asks for, write the outputs, settle the checkpoint.

The schedules share one result type (:class:`~jaxstyle.engine.pipeline.RunResult`; a clip's also
carries its frames and the clip), one report builder
(:func:`~jaxstyle.driver.report.build_report`) and one way to take a run's
:class:`~jaxstyle.engine.progress.RunHooks`:

* an image run: the plan's stages and tiles (:func:`jaxstyle.engine.pipeline.run_plan`);
* a comparison: a sweep over ``style_loss`` or ``content_loss`` runs one program per choice, one
  after another (:func:`run_groups`), and a sweep over losses or terms gets the comparison table
  (:func:`jaxstyle.driver.lab.comparison`);
* a clip: its frames as batch slots, run after run (:func:`jaxstyle.driver.clip.run_clip`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np

from ..core.errors import ConfigError, JaxstyleError, OutputError
from ..engine.checkpoint import FILENAME as CHECKPOINT
from ..engine.checkpoint import Checkpoint, Cursor
from ..engine.config import Config, validate
from ..engine.inputs import prepare_images
from ..engine.pipeline import RunResult, run_plan
from ..engine.progress import RunHooks, Watchers, placed
from ..engine.variants import expand_variants, objective_for
from ..media.video import Clip
from ..model.terms import term_file_hashes, used_terms
from ..model.weights import load_vgg19
from .clip import clip_result, load_clip, run_clip
from .lab import comparison
from .outputs import (RAW, image_name, image_result, prepare_output, recorded_files, remove_stale,
                      write_clip_outputs, write_image, write_outputs)
from .report import build_report


def reported(cfg: Config, result: RunResult) -> RunResult:
    """``result`` with its report built from its summary."""
    result.report = build_report(cfg, result.variants, result.summary)
    return result


@dataclass(frozen=True)
class Schedule:
    """How the driver runs one program of a config and joins several: ``one(cfg, hooks)`` runs it
    (a result with ``report`` and ``checkpoint``); ``arrays(result)`` is what a finished program
    leaves (an image run's images ``(V, H, W, 3)``, a clip's frames ``(V, F, H, W, 3)``);
    ``join(cfg, done, reports, results)`` makes one result of several programs'; ``photos(result)``
    each variant's photograph for the comparison table (None: the config's)."""

    one: Callable[[Config, RunHooks], Any]
    arrays: Callable[[Any], np.ndarray]
    join: Callable[..., Any]
    photos: Callable[[Any], np.ndarray | None]


def image_schedule(params) -> Schedule:
    """An image: the plan's stages and tiles, one program per tile shape."""
    return Schedule(lambda cfg, hooks: reported(cfg, run_plan(cfg, params, hooks)), lambda r: r.images,
                    join_results, lambda r: None)


def clip_schedule(clip: Clip, params) -> Schedule:
    """A clip: its frames as batch slots, run after run (:func:`jaxstyle.driver.clip.run_clip`)."""
    return Schedule(lambda cfg, hooks: run_clip(cfg, clip, params, hooks), lambda r: r.frames, join_clips,
                    lambda r: np.repeat(r.clip.frames[r.frames.shape[1] - 1][None], len(r.variants), axis=0))


def run(cfg: Config, params=None, hooks: RunHooks = RunHooks(), clip: Clip | None = None) -> RunResult:
    """Run every variant of ``cfg``: an image through every stage and tile of its plan, or a clip
    (``clip``: its frames, read from ``cfg.content`` when None) frame by frame; the result with its
    report, and for a sweep over style losses or terms the comparison table. ``hooks``: see
    :class:`~jaxstyle.engine.progress.RunHooks`.

    A sweep over ``style_loss`` runs one program per choice, one after another (:func:`run_groups`).
    """
    params = load_vgg19(cfg.weights) if params is None else params
    hooks = dataclasses.replace(hooks, watch=hooks.watchers())
    if cfg.is_clip:
        schedule = clip_schedule(load_clip(cfg) if clip is None else clip, params)
    else:
        schedule = image_schedule(params)
    groups = program_groups(cfg)
    result = run_groups(cfg, groups, hooks, schedule) if len(groups) > 1 else schedule.one(cfg, hooks)
    if result.checkpoint is None and {"style_loss", "content_loss", "terms"} & set(cfg.sweep):
        result.report["comparison"] = comparison(cfg, params, result.images, result.variants, result.report,
                                                 schedule.photos(result))
    return result


def program_groups(cfg: Config) -> list[Config]:
    """One config per style loss and content loss of a sweep over several (style losses slowest), each
    without those sweeps; else ``[cfg]``."""
    kinds = cfg.sweep.get("style_loss", [cfg.style_loss])
    contents = cfg.sweep.get("content_loss", [cfg.content_loss])
    if len(kinds) * len(contents) < 2:
        return [cfg]
    rest = {k: v for k, v in cfg.sweep.items() if k not in ("style_loss", "content_loss")}
    return [dataclasses.replace(cfg, style_loss=k, content_loss=c, sweep=rest) for k in kinds for c in contents]


def group_name(cfg: Config) -> str:
    """A program's style loss, and its content loss where not the paper's."""
    return cfg.style_loss + ("" if cfg.content_loss == "features" else f" + {cfg.content_loss} content")


def run_groups(cfg: Config, groups: list[Config], hooks: RunHooks, schedule: Schedule):
    """Each style loss of a sweep as its own program, one after another; the results joined. An
    interrupted program's checkpoint keeps the finished programs' arrays and reports.

    One program per choice, not one program evaluating every loss for every variant: on the
    2-core CPU the latter cost more than the sum of the separate programs (docs/loss-lab.md).
    """
    log, resume, watch, save_intermediate = hooks.log, hooks.resume, hooks.watchers(), hooks.save_intermediate
    log(f"style_loss sweep: one program per choice ({', '.join(group_name(g) for g in groups)}), one after another")
    first = resume.cursor.program if resume is not None else 0
    done = [resume.finished] if resume is not None and resume.finished is not None else []
    reports, results = list(resume.finished_reports) if resume is not None else [], []
    for g, r in enumerate(reports):  # the history of the programs a resumed run had finished
        for entry in r.get("history", []):
            watch.record({**entry, "program": g, "first": sum(len(q["variants"]) for q in reports[:g])})
    for g in range(first, len(groups)):
        offset = sum(len(d) for d in done) + sum(len(schedule.arrays(r)) for r in results)
        save = None if save_intermediate is None else \
            (lambda tag, images, start=0, o=offset: save_intermediate(tag, images, o + start))
        log(f"style_loss {group_name(groups[g])} ({g + 1}/{len(groups)})")
        earlier = reports + [x.report for x in results]
        spent = tuple(sum(e["timing"][k] for e in earlier) for k in ("run_s", "compile_s"))
        r = schedule.one(groups[g], dataclasses.replace(
            hooks, save_intermediate=save, resume=resume if g == first else None,
            watch=program_watch(watch, g, len(groups), offset, spent)))
        results.append(r)
        if r.checkpoint is not None:
            before = [*done, *(schedule.arrays(x) for x in results[:-1])]
            r.checkpoint.cursor = dataclasses.replace(r.checkpoint.cursor, program=g)
            r.checkpoint.finished = np.concatenate(before) if before else None
            r.checkpoint.finished_reports = reports + [x.report for x in results[:-1]]
            break
    return schedule.join(cfg, done, reports, results)


def program_watch(watch: Watchers, g: int, groups: int, first: int, spent: tuple[float, float]) -> Watchers:
    """``watch`` as program ``g`` of ``groups`` sees it: its variants placed from index ``first`` on
    among all the run's, the seconds (and compilation) ``spent`` by the programs before it added,
    and the programs still to come in the ETA (each counted as costing what this one does)."""
    return placed(watch, lambda t: dataclasses.replace(
        t, first=first, elapsed_s=spent[0] + t.elapsed_s, compile_s=spent[1] + t.compile_s,
        work=g * t.work_total + t.work, work_total=groups * t.work_total),
        lambda e: {**e, "program": g, "first": first})


def joined_report(cfg: Config, reports: list[dict]) -> dict:
    """One report of several programs' reports: their variants one after another, counts and
    seconds summed, each program's style loss and seconds, the history marked by program."""
    report = dict(reports[-1])
    report.update(
        config=cfg.to_dict(), variants=[v for r in reports for v in r["variants"]],
        iterations=max(r["iterations"] for r in reports), evaluations=sum(r["evaluations"] for r in reports),
        stages=[r["stages"] for r in reports],
        timing={k: round(sum(r["timing"][k] for r in reports), 4) for k in reports[-1]["timing"]},
        programs=[{"style_loss": r["config"]["style_loss"], "content_loss": r["config"]["content_loss"],
                   "variants": len(r["variants"]), **r["timing"]}
                  for r in reports])
    starts = np.cumsum([0] + [len(r["variants"]) for r in reports])
    report["history"] = [{**h, "program": g, "first": int(starts[g])} for g, r in enumerate(reports)
                         for h in r.get("history", [])]
    return report


def join_results(cfg: Config, done: list[np.ndarray], reports: list[dict], results: list[RunResult]) -> RunResult:
    """One image result of several programs' (earlier ones given by their images and reports)."""
    report = joined_report(cfg, reports + [r.report for r in results])
    images = np.concatenate([*done, *(r.images for r in results)])
    return RunResult(images, expand_variants(cfg)[: len(images)], report, report["history"], results[-1].checkpoint)


def join_clips(cfg: Config, done: list[np.ndarray], reports: list[dict], results: list[RunResult]) -> RunResult:
    """One clip result of several programs' (earlier ones given by their frames and reports). An
    interrupted program has fewer frames so far: the joined result has as many for every variant."""
    reports = reports + [r.report for r in results]
    report = joined_report(cfg, reports)
    clips = [r["clip"] for r in reports]
    frames = [*done, *(r.frames for r in results)]
    n = min(f.shape[1] for f in frames)
    frames = np.concatenate([f[:, :n] for f in frames])
    report["clip"] = {**clips[-1], "frames_done": n,
                      "runs": [{**run, "program": g} for g, c in enumerate(clips) for run in c["runs"]]}
    if all("warping_error" in c for c in clips):
        report["clip"]["warping_error"] = [e for c in clips for e in c["warping_error"]]
    return clip_result(frames, expand_variants(cfg)[: len(frames)], results[-1].clip, report, report["history"],
                       results[-1].checkpoint)


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


def run_and_save(cfg: Config, hooks: RunHooks = RunHooks(), resume: bool = False,
                 on_start: Callable[[], None] | None = None, params=None) -> RunResult:
    """Check the output, run, write everything: what the command line does.

    An interrupted run writes its images so far, ``report.json`` (``"interrupted": true``),
    ``losses.png`` and ``checkpoint.npz``; ``resume=True`` continues from that checkpoint (the
    folder's, not ``hooks.resume``). ``on_start`` is called once the output folder is checked and
    held; ``params``: the network's weights, when the caller has them loaded already. Under
    ``jax.distributed`` (several processes) every process runs its share and process 0 alone
    writes the outputs.
    """
    out = Path(cfg.output)
    if jax.process_index() != 0:
        return run(cfg, params, RunHooks(log=lambda line: None, should_stop=hooks.should_stop, watch=Watchers()))
    record = {**cfg.to_dict(), "term_files": term_file_hashes(used_terms(cfg.terms, cfg.sweep))}
    # (--continue gives its own start, a finished run's result, as hooks.resume.)
    checkpoint = Checkpoint.load(out / CHECKPOINT, record) if resume else hooks.resume
    clip = load_clip(cfg) if cfg.is_clip else None  # a bad clip is refused before anything is written
    created = not out.exists()
    if not resume:
        prepare_output(cfg, clip is not None and len(clip.frames) > 1)
    hooks = dataclasses.replace(hooks, resume=checkpoint)
    try:
        with output_lock(out):
            if on_start is not None:
                on_start()
            if clip is not None:
                return save_clip(cfg, out, record, hooks, clip, params)
            return save_images(cfg, out, record, hooks, params)
    except JaxstyleError:
        # A mistake found once the run began (a user term that fails when traced): leave no
        # trace of the folder this run made.
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def continued(out: Path, n: int, raw_config: dict) -> tuple[Config, Checkpoint]:
    """``jaxstyle --continue N DIR``: the finished run in ``out`` (its config ``raw_config``, as its
    report gives it, with the command line's settings over it) as a run of ``n`` more iterations at
    its final size, and its start: a checkpoint at the final stage with the run's raw float result
    and a fresh optimiser memory. The run's files in ``out`` are replaced by the continued run's."""
    optimizer = raw_config.get("optimizer") if isinstance(raw_config.get("optimizer"), dict) else {}
    cfg = validate({**raw_config, "output": str(out), "overwrite": True, "optimizer": {**optimizer, "iterations": n}})
    if cfg.is_clip or len(program_groups(cfg)) > 1:
        raise ConfigError(f"--continue takes a finished image run of one program; {out} holds "
                          + ("a clip" if cfg.is_clip else "a sweep over style or content losses"))
    images = read_raw(out / RAW)
    variants = expand_variants(cfg)
    shape = tuple(prepare_images(cfg, objective_for(variants, cfg).layers).content.shape[-3:-1])
    if images.shape != (len(variants), *shape, 3):
        raise OutputError(f"{out / RAW} holds {images.shape[0]} image(s) of {images.shape[2]}x{images.shape[1]} px, "
                          f"and the run's config makes {len(variants)} of {shape[1]}x{shape[0]}")
    last = len(cfg.scales)
    return cfg, Checkpoint(Cursor(stage=last), images, 0.0, [], np.zeros(len(variants), np.int64),
                           np.zeros(len(variants), np.int64))


def read_raw(path: Path) -> np.ndarray:
    """A finished run's raw result ``(V, H, W, 3)`` float32, checked."""
    if not path.is_file():
        raise OutputError(f"nothing to continue: {path} not found (a run that finished, and wrote it, is needed)")
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
    except (OSError, ValueError, KeyError) as exc:
        raise OutputError(f"cannot read {path}: {exc}") from None
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[-1] != 3 or not np.all(np.isfinite(images)):
        raise OutputError(f"{path} is not a run's result: (V, H, W, 3) finite float32 expected")
    return images


def save_images(cfg: Config, out: Path, record: dict, hooks: RunHooks, params=None) -> RunResult:
    """An image run (or a comparison) and its outputs, intermediate images included."""
    variants = expand_variants(cfg)
    # Read before any file is replaced: this run's own files so far, and those it replaces.
    written, earlier = recorded_files(out, resume=hooks.resume is not None)

    def save_intermediate(stage: str, images: np.ndarray, start: int = 0) -> None:
        for i, (v, img) in enumerate(zip(variants[start:], images), start):
            name = image_name(i, v, stage, cfg.image_format)
            write_image(img, out / name, cfg.image_format, cfg.image_quality, cfg.image_bits)
            written.append(name)

    result = run(cfg, params, dataclasses.replace(hooks, save_intermediate=save_intermediate))
    owed(result.report, result.checkpoint, earlier, written)
    path = write_outputs(cfg, result, written)
    settle(result.checkpoint, out, record, hooks.log, f"wrote the images so far, {path}",
           f"wrote {len(result.variants)} image(s) and {path}", earlier, result.report["files"])
    return result


def save_clip(cfg: Config, out: Path, record: dict, hooks: RunHooks, clip: Clip, params=None) -> RunResult:
    """A clip's run and its outputs; a clip of one frame is an image run and writes an image's."""
    _, earlier = recorded_files(out, resume=hooks.resume is not None)
    result = run(cfg, params, hooks, clip)
    single = len(clip.frames) == 1
    owed(result.report, result.checkpoint, earlier, [])
    shown = image_result(result) if single else result
    path = write_outputs(cfg, shown) if single else write_clip_outputs(cfg, result)
    settle(result.checkpoint, out, record, hooks.log, f"wrote the frames so far, {path}",
           f"wrote {len(result.variants)} image(s) and {path}" if single else
           f"wrote {len(result.variants)} clip(s) of {result.frames.shape[1]} frame(s) and {path}",
           earlier, shown.report["files"])
    return result


def owed(report: dict, checkpoint: Checkpoint | None, earlier: list[str], written: list[str]) -> None:
    """An interrupted run's report keeps the overwritten run's files it has not yet removed
    (``replaces``), so the finished run removes them; a finished run owes nothing."""
    if checkpoint is not None and earlier:
        report["replaces"] = [n for n in earlier if n not in written]


def settle(checkpoint: Checkpoint | None, out: Path, record: dict, log: Callable[[str], None], so_far: str,
           done: str, earlier: list[str] = (), current: list[str] = ()) -> None:
    """After the outputs: an interrupted run's checkpoint saved, or a finished run's stale one
    removed with the files of the run it replaced that it did not write again; and one line saying
    which."""
    if checkpoint is not None:
        checkpoint.save(out / CHECKPOINT, record)
        log(f"interrupted at {checkpoint.where}: {so_far} and {out / CHECKPOINT}; continue with: jaxstyle --resume {out}")
    else:
        (out / CHECKPOINT).unlink(missing_ok=True)
        remove_stale(out, earlier, current)
        log(done)
