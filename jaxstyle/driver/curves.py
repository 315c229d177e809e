"""``losses.png``: every variant's total, content and style loss against iteration, from the
history in report.json, with the stage boundaries marked.

Drawn with matplotlib's Agg canvas (no display, no pyplot state) once at the end of a run and when
a checkpoint is written, never per chunk: the live page draws its own curves in the browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.fileio import atomic_write

PARTS = ("total", "content", "style")


def curve_points(history: Sequence[dict], n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{part: (iterations (T,), losses (T, n))}`` from the whole-image entries of ``history``
    (tile entries measure one tile and are left out); a variant without a value at a point is NaN.

    Entries of a sweep run as several programs carry ``first``, the index of their first variant.
    """
    rows = [h for h in history if h.get("scope", "image") == "image"]
    x = np.array([h["iteration"] for h in rows], float)
    out = {}
    for part in PARTS:
        y = np.full((len(rows), n), np.nan)
        for t, h in enumerate(rows):
            vals = [np.nan if v is None else v for v in h.get(part, [])]
            first = h.get("first", 0)
            y[t, first:first + len(vals)] = vals[: max(n - first, 0)]
        out[part] = (x, y)
    return out


def stage_starts(history: Sequence[dict]) -> list[float]:
    """Iterations at which a later stage begins: the last point of each earlier stage."""
    ends: dict[tuple, float] = {}
    for h in history:
        key = (h.get("program", 0), h["stage"])
        ends[key] = max(ends.get(key, -np.inf), h["iteration"])
    return sorted({v for (program, stage), v in ends.items() if (program, stage + 1) in ends})


def write_loss_curves(history: Sequence[dict], labels: Sequence[str], path: str | Path) -> Path | None:
    """Write the three panels to ``path`` (PNG); None (nothing written) when the history is empty.

    ``labels``: one per variant, as on the contact sheet. Losses are drawn on a log scale; a loss
    that is not positive (a zero style weight) leaves a gap, and a panel with no positive loss at
    all (no content layers: a style reconstruction) says so instead, on a linear scale.
    """
    points = curve_points(history, len(labels))
    if not len(points["total"][0]):
        return None
    fig = Figure(figsize=(13, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, part in zip(axes, PARTS):
        x, y = points[part]
        drawn = 0
        for i, label in enumerate(labels):
            keep = np.isfinite(y[:, i]) & (y[:, i] > 0)
            drawn += int(keep.sum())
            ax.plot(x[keep], y[keep, i], marker="." if keep.sum() < 30 else None, lw=1.2, label=label)
        for start in stage_starts(history):
            ax.axvline(start, color="0.6", ls=":", lw=1)
        if drawn:  # matplotlib refuses a log scale with nothing positive on it
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, f"no positive {part} loss", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(f"{part} loss")
        ax.set_xlabel("iteration (per pixel, over all stages)")
        ax.grid(True, which="major", alpha=0.3)
    if len(labels) <= 16:
        axes[0].legend(fontsize=7, loc="upper right")
    else:
        fig.suptitle(f"{len(labels)} variants (labels on the contact sheet)", fontsize=9)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
