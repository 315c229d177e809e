#!/usr/bin/env python
"""Regenerate the paper's figures (Gatys, Ecker and Bethge 2016) with jaxstyle's defaults.

    python scripts/figures/figures.py --figure 4
    python scripts/figures/figures.py --all                  # every figure at its own size (docs/figures.md)
    python scripts/figures/figures.py --all --docs           # ... and write docs/figures/figureN.jpg

Each figure is a list of runs of the same engine (content-only and style-only reconstructions are
the total loss with beta = 0 or alpha = 0), with the project's defaults: mean-normalised losses,
faint noise around mid-grey and the automatic coarse-to-fine pyramid. Each figure has its own size
(``--size`` and ``--iterations`` override every figure's, e.g. for a quick look). Writes
``<output>/figureN.png`` (a labelled sheet), ``<output>/figureN.json`` (size, iterations, wall
time) and each run's images and ``report.json`` under ``<output>/figN/``. The sheet carries no
time or date, so the same command gives the same files.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from jaxstyle import load_vgg19
from jaxstyle.engine.progress import RunHooks
from jaxstyle.cli import run_main
from jaxstyle.engine.config import Config, validate
from jaxstyle.core.errors import ConfigError
from jaxstyle.media.images import contact_sheet, save_png, write_docs_jpeg
from jaxstyle.driver.bench import EXAMPLES
from jaxstyle.driver.job import run_and_save
from jaxstyle.driver.outputs import write_json
from jaxstyle.engine.pipeline import RunResult

PHOTO, ART = str(EXAMPLES / "leuvenA.jpg"), str(EXAMPLES / "starry_night.jpg")
DOCS = Path(__file__).resolve().parents[2] / "docs"
STYLE_SETS = [{f"conv{j}_1": 1.0 / i for j in range(1, i + 1)} for i in range(1, 6)]
#: Figure 4's alpha/beta columns (losses: mean), chosen from docs/calibration.md to run from nearly
#: pure texture to nearly the photograph, as the paper's columns do.
RATIOS = [1e-3, 1e-2, 1e-1, 1.0]


@dataclass(frozen=True)
class Figure:
    """One figure: its title, size (long side, px), its runs (name, config overrides, label of a
    variant) and the sheet's number of columns."""

    title: str
    size: int
    runs: list[tuple[str, dict, Callable]]
    columns: int


def _short(layers: dict) -> str:
    """conv1_1 -> "1_1"; conv1_1 .. conv4_1 -> "1_1..4_1"."""
    names = [l.replace("conv", "") for l, w in layers.items() if w]
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


def figure(n: int) -> Figure:
    """The runs of figure ``n`` of the paper."""
    seed0 = {"seeds": [0]}
    if n == 1:
        content = [f"conv{i}_2" for i in range(1, 6)]
        return Figure("Figure 1: content reconstructions (top) and style reconstructions (bottom) from noise", 256, [
            ("content", {**seed0, "alpha": 1.0, "beta": 0.0,
                         "sweep": {"content_layers": [{l: 1.0} for l in content]}},
             lambda v: f"content {_short(v.content_layers)}"),
            ("style", {**seed0, "alpha": 0.0, "beta": 1.0, "content_layers": {},
                       "sweep": {"style_layers": STYLE_SETS}},
             lambda v: f"style {_short(v.style_layers)}"),
        ], 5)
    if n == 3:
        return Figure("Figure 3: one photograph in several styles", 512, [
            (Path(style).stem, {**seed0, "style": style}, lambda v, s=style: Path(s).stem)
            for style in (ART, str(EXAMPLES / "graf1.png"), str(EXAMPLES / "fruits.jpg"))
        ], 3)
    if n == 4:
        return Figure("Figure 4: style layers (rows: conv1_1 .. conv1_1-5_1) x alpha/beta (columns)", 256, [
            ("grid", {**seed0, "beta": 1.0, "sweep": {"style_layers": STYLE_SETS, "alpha": RATIOS}},
             lambda v: f"{_short(v.style_layers)}  a/b {v.alpha:g}"),
        ], len(RATIOS))
    if n == 5:
        return Figure("Figure 5: content matched at conv2_2 vs conv4_2", 512, [
            ("layers", {**seed0, "sweep": {"content_layers": [{"conv2_2": 1.0}, {"conv4_2": 1.0}]}},
             lambda v: f"content {_short(v.content_layers)}"),
        ], 2)
    if n == 6:
        return Figure("Figure 6: initialised from the content image, the style image, and four noise seeds", 256, [
            ("init_content", {**seed0, "init": "content"}, lambda v: "init: content"),
            ("init_style", {**seed0, "init": "style"}, lambda v: "init: style"),
            ("init_noise", {"seeds": [0, 1, 2, 3]}, lambda v: f"noise seed {v.seed}"),
        ], 3)
    if n == 7:
        return Figure("Figure 7: photo-to-photo transfer (home.jpg in the light and colours of leuvenA.jpg)", 512, [
            ("photo", {**seed0, "content": str(EXAMPLES / "home.jpg"), "style": PHOTO}, lambda v: "home x leuvenA"),
        ], 1)
    raise ConfigError(f"no figure {n}; figures: 1, 3, 4, 5, 6, 7")


def make_figure(n: int, args, params) -> Path:
    fig = figure(n)
    size = args.size or fig.size
    images, labels, reports, t0 = [], [], [], time.perf_counter()
    cfg: Config | None = None
    for name, overrides, label in fig.runs:
        raw = {"content": PHOTO, "style": ART, "size": size, "print_every": 0, "overwrite": True,
               "output": str(args.output / f"fig{n}" / name), **overrides}
        if args.iterations:
            raw["optimizer"] = {"iterations": args.iterations}
        cfg = validate(raw)
        result: RunResult = run_and_save(cfg, RunHooks(log=lambda s: None), params=params)
        images += list(result.images)
        labels += [label(v) for v in result.variants]
        reports.append({"run": name, "image_size": result.report["image_size"],
                        "run_s": result.report["timing"]["run_s"]})
    wall = time.perf_counter() - t0
    plan = " + ".join(f"{n_it} at {s} px" for s, n_it in zip([*cfg.scales, size],
                                                              [*cfg.scale_iterations, cfg.optimizer.iterations]))
    caption = f"{fig.title}  [{size} px; L-BFGS iterations: {plan}; losses: {cfg.losses}]"
    sheet = contact_sheet(images, labels, columns=fig.columns, title=caption)
    path = save_png(sheet, args.output / f"figure{n}.png")
    write_json({"figure": n, "size": size, "scales": cfg.scales, "scale_iterations": cfg.scale_iterations,
                "iterations": cfg.optimizer.iterations, "losses": cfg.losses, "wall_s": round(wall, 1),
                "runs": reports}, args.output / f"figure{n}.json")
    if args.docs:
        write_docs_jpeg(sheet, DOCS / "figures" / f"figure{n}.jpg")
    print(f"figure {n}: {path} ({wall:.0f} s)", flush=True)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figure", type=int, action="append", default=[])
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--size", type=int, default=0, help="longest side in px for every figure (default: each figure's own)")
    ap.add_argument("--iterations", type=int, default=0,
                    help="iterations of each run's last stage (default: the config default)")
    ap.add_argument("--output", type=Path, default=Path("outputs/figures"))
    ap.add_argument("--docs", action="store_true", help="also write docs/figures/figureN.jpg")
    ap.add_argument("--docs-only", action="store_true",
                    help="only write docs/figures/figureN.jpg again from <output>/figureN.png, running nothing")
    args = ap.parse_args()
    figures = [1, 3, 4, 5, 6, 7] if args.all else args.figure
    if not figures:
        ap.error("name --figure N (1, 3, 4, 5, 6, 7) or --all")
    for n in figures:
        figure(n)  # an unknown figure number fails here, before any work
    if args.size and args.size < 16:
        raise ConfigError(f"--size must be at least 16, not {args.size}")
    if args.docs_only:
        for n in figures:
            sheet = args.output / f"figure{n}.png"
            if not sheet.is_file():
                raise ConfigError(f"{sheet} not found: make figure {n} first")
            print(write_docs_jpeg(Image.open(sheet), DOCS / "figures" / f"figure{n}.jpg"))
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    params = load_vgg19()
    for n in figures:
        make_figure(n, args, params)
    return 0


if __name__ == "__main__":
    run_main(main)
