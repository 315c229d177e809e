"""What a run shows while it goes: a :class:`Tick` after every chunk, the time still to come, and
the progress display (a tqdm bar on a terminal, plain lines elsewhere).

The estimate counts work, not iterations: an evaluation's time grows with the pixels it sees, so a
stage's work is its tiles' pixels times their iterations (:func:`jaxstyle.engine.plan.stage_work`), and
the time to come is the work to come at the rate measured so far, compilation left out.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

import numpy as np


@dataclass(frozen=True)
class Tick:
    """Where a run stands after a chunk.

    stage, stages: the stage (0-based) and how many there are; shape: the stage's ``(H, W)``;
    pass_index, passes, tile, tiles: the pass and tile (0-based) and how many (1 and 1 untiled);
    iteration, tile_iterations: iterations done in this tile and due per tile; stage_done,
    stage_total: tile iterations done in this stage and due in it, over its passes; parts: each
    variant's loss parts (``{"total", "content", "style"}``, arrays ``(V,)``) over the tile;
    elapsed_s, compile_s: the run's seconds and the compilation among them; work, work_total: the
    pixel-iterations done and planned; report: whether the progress interval asks for a line;
    images: the variants' images ``(V, H, W, 3)`` as of now (tiles blended in), computed on call
    and only during the tick; first: the index among all the run's variants of the first of these
    (a sweep over ``style_loss`` runs its programs one after another).
    """

    stage: int
    stages: int
    shape: tuple[int, int]
    pass_index: int
    passes: int
    tile: int
    tiles: int
    iteration: int
    tile_iterations: int
    stage_done: int
    stage_total: int
    parts: dict[str, np.ndarray]
    elapsed_s: float
    compile_s: float
    work: float
    work_total: float
    report: bool = True
    images: Callable[[], np.ndarray] | None = None
    first: int = 0
    #: A clip's place: ``frame 3/24`` or ``pass 2/5`` (empty for an image).
    clip: str = ""

    @property
    def eta_s(self) -> float | None:
        """Seconds still to come (:func:`eta_seconds`)."""
        return eta_seconds(self.elapsed_s, self.compile_s, self.work, self.work_total)

    @property
    def where(self) -> str:
        """``stage 2/3 512x512 px, pass 1/2, tile 3/4`` (empty for a run of one untiled stage)."""
        out = f"stage {self.stage + 1}/{self.stages} {self.shape[1]}x{self.shape[0]} px" if self.stages > 1 else ""
        if self.clip:
            out = f"{self.clip}, {out}" if out else self.clip
        if self.tiles > 1 or self.passes > 1:
            out += (", " if out else "") + f"pass {self.pass_index + 1}/{self.passes}, tile {self.tile + 1}/{self.tiles}"
        return out


@dataclass(frozen=True)
class Watchers:
    """Who follows a run: each of ``ticks`` receives every :class:`Tick`, each of ``records``
    every history entry (a dict, as report.json keeps it)."""

    ticks: tuple[Callable[[Tick], None], ...] = ()
    records: tuple[Callable[[dict], None], ...] = ()

    def tick(self, tick: Tick) -> None:
        for f in self.ticks:
            f(tick)

    def record(self, entry: dict) -> None:
        for f in self.records:
            f(entry)


#: A test-only pause: while the file this environment variable names exists, a command-line run
#: waits after each chunk (its progress line and live page already updated), so a test can act
#: between two chunks, signal the run or look at its page, without racing it.
PAUSE_ENV = "JAXSTYLE_TEST_PAUSE_FILE"


def pause_watchers() -> tuple[Callable[[Tick], None], ...]:
    """The watcher that holds a run while :data:`PAUSE_ENV`'s file exists; none when it is unset."""
    path = os.environ.get(PAUSE_ENV)
    if not path:
        return ()

    def hold(tick: Tick) -> None:
        while os.path.exists(path):
            time.sleep(0.02)
    return (hold,)


def lines(write: Callable[[str], None]) -> Watchers:
    """Watchers that write :func:`progress_line` through ``write`` at every progress interval (what
    a run without other watchers shows)."""
    return Watchers((Meter(tty=False, write=write).tick,))


def placed(watch: Watchers, tick: Callable[[Tick], Tick], record: Callable[[dict], dict]) -> Watchers:
    """``watch`` as a run inside a larger one sees it (a program of a comparison, a clip's run):
    each tick and history entry of the inner run mapped to the outer run's by ``tick`` and
    ``record`` (its variants' places, the seconds and work before it, its label)."""
    return Watchers((lambda t: watch.tick(tick(t)),), (lambda e: watch.record(record(e)),))


@dataclass(frozen=True)
class RunHooks:
    """How a run talks to its caller, passed once: ``log`` takes a line; ``should_stop`` is asked
    before each tile and between chunks (True: end there, with a checkpoint); ``watch`` follows the
    run chunk by chunk (default: a progress line through ``log`` at every ``print_every``);
    ``resume`` is the :class:`jaxstyle.engine.checkpoint.Checkpoint` to continue from;
    ``save_intermediate(tag, images, start)`` receives intermediate images of the variants from
    index ``start`` on."""

    log: Callable[[str], None] = print
    should_stop: Callable[[], bool] | None = None
    watch: Watchers | None = None
    resume: Any = None
    save_intermediate: Callable[..., None] | None = None

    def watchers(self) -> Watchers:
        return self.watch if self.watch is not None else lines(self.log)

    def stop_requested(self) -> bool:
        return self.should_stop is not None and self.should_stop()


def eta_seconds(elapsed_s: float, compile_s: float, work: float, work_total: float) -> float | None:
    """Seconds still to come: the work left at the rate so far (compilation excluded); None before
    any work is done."""
    if work <= 0:
        return None
    rate = max(elapsed_s - compile_s, 0.0) / work
    return rate * max(work_total - work, 0.0)


def clock(seconds: float | None) -> str:
    """``1:02:03``, ``2:03`` or ``?``."""
    if seconds is None or not np.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def losses_text(parts: dict[str, Any]) -> str:
    """One variant's loss parts, or the range of a batch's totals."""
    t, c, s = (np.asarray(parts[k]) for k in ("total", "content", "style"))
    if t.size == 1:
        return f"total {t[0]:.4g}  content {c[0]:.4g}  style {s[0]:.4g}"
    return f"total min {t.min():.4g} / max {t.max():.4g} over {t.size} variants"


def progress_line(tick: Tick) -> str:
    """``stage 1/2 128x96 px [####    ]  50/200  total ... (12.3 s, ETA 1:05)``."""
    width = 20
    bar = "#" * round(width * tick.iteration / max(tick.tile_iterations, 1))
    head = f"{tick.where} " if tick.where else ""
    return (f"{head}[{bar:<{width}}] {tick.iteration:>5}/{tick.tile_iterations}  {losses_text(tick.parts)}"
            f"  ({tick.elapsed_s:.1f} s, ETA {clock(tick.eta_s)})")


class Meter:
    """The progress display of the command line.

    On a terminal (``tty``): one tqdm bar per stage, with iterations per second and, after it, the
    run's elapsed time and ETA (which counts the stages still to come); other lines are written
    above the bar. Elsewhere (a log file, CI): :func:`progress_line` at every progress interval,
    through ``write`` when given.
    """

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None,
                 write: Callable[[str], None] | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.write = write
        self._bar = None
        self._stage: int | None = None

    def log(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        elif self.write is not None:
            self.write(line)
        else:
            print(line, file=self.stream, flush=True)

    def tick(self, tick: Tick) -> None:
        if not self.tty:
            if tick.report:
                self.log(progress_line(tick))
            return
        if self._bar is None or self._stage != tick.stage:
            self._open(tick)
        self._bar.set_postfix_str(f"{np.min(tick.parts['total']):.4g} loss, run {clock(tick.elapsed_s)}, "
                                  f"ETA {clock(tick.eta_s)}", refresh=False)
        self._bar.update(tick.stage_done - self._bar.n)
        if tick.stage_done >= tick.stage_total:  # the stage is done: its bar stays, the next lines go below it
            self.close()

    def _open(self, tick: Tick) -> None:
        from tqdm import tqdm  # the terminal's bar only; plain lines need no tqdm

        self.close()
        self._stage = tick.stage
        desc = f"stage {tick.stage + 1}/{tick.stages} {tick.shape[1]}x{tick.shape[0]}" if tick.stages > 1 else "iterations"
        self._bar = tqdm(total=tick.stage_total, desc=desc, file=self.stream, dynamic_ncols=True, unit="it",
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{rate_fmt}{postfix}]")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
