#!/usr/bin/env python
"""How the mean-normalised losses and alpha/beta behave across image sizes.

Two measurements, both with the default settings (``losses: mean``, the automatic pyramid):

* **sheet**: for the first pair, a sweep over alpha/beta (rows) at each size (columns), as one
  batch per size; written as ``OUT/sheet.png``;
* **table**: for every pair, the default run (default alpha/beta, seed 0) at each size: the final
  mean-normalised L_content and L_style, and for each the ratio of its largest to its smallest
  value across the sizes, and the speckle index of the result against the artwork's.

    python scripts/bench/calibrate.py                          # 128, 256 and 512 px, three pairs
    python scripts/bench/calibrate.py --sizes 64 128 --ratios 0.1 1 --pairs home.jpg:graf1.png

The default run at one size is exactly what ``scripts/bench/quality.py`` runs at that size (the command
with only the images, ``size`` and ``seeds: [0]`` set); ``--reuse OUT/quality.json`` takes the
table's rows at that size from its default rows instead of running them again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

from PIL import Image

from jaxstyle import load_vgg19
from jaxstyle.engine.progress import RunHooks
from jaxstyle.cli import run_main
from jaxstyle.engine.config import DEFAULT_BETA, validate
from jaxstyle.core.errors import ConfigError
from jaxstyle.media.images import contact_sheet, save_png
from jaxstyle.media.metrics import speckle_pair
from jaxstyle.driver.job import run
from jaxstyle.media.images import write_docs_jpeg
from jaxstyle.driver.bench import QUALITY_PAIR_TEXTS, parse_pairs

ROOT = Path(__file__).resolve().parents[2]



def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=list(QUALITY_PAIR_TEXTS), metavar="PHOTO:ARTWORK")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--ratios", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1, 1.0, 10.0],
                    help="alpha/beta values of the sheet (beta stays at its default)")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "calibration")
    ap.add_argument("--reuse", type=Path, metavar="QUALITY_JSON",
                    help="take the table's default runs at the quality benchmark's size from its results")
    ap.add_argument("--docs", action="store_true", help="also write the sheet as docs/calibration.jpg")
    return ap


def quiet(line: str) -> None:
    pass


def ratio_sheet(args, pair, params, beta: float) -> dict:
    """The first pair at every size, one batch of every alpha/beta each: the sheet (saved) and the
    runs by size."""
    name, content, style = pair
    columns = {}
    for size in args.sizes:
        t0 = time.perf_counter()
        cfg = validate({"content": str(content), "style": str(style), "size": size, "print_every": 0,
                        "sweep": {"alpha": [r * beta for r in args.ratios]}})
        result = run(cfg, params, hooks=RunHooks(log=quiet))
        columns[size] = result
        print(f"sheet {name} {size} px: {time.perf_counter() - t0:.0f} s", flush=True)
    tiles, labels = [], []
    for i, ratio in enumerate(args.ratios):
        for size in args.sizes:
            tiles.append(columns[size].images[i])
            loss = columns[size].report["variants"][i]["final_loss"]
            labels.append(f"{ratio:g} @ {size}: c {loss['content']:.3g}, s {loss['style']:.3g}")
    sheet = contact_sheet(tiles, labels, columns=len(args.sizes), tile=256,
                          title=f"alpha/beta (rows) x long side (columns), {content.name} in the style of "
                                f"{style.name}, losses: mean, defaults otherwise")
    save_png(sheet, args.out / "sheet.png")
    if args.docs:
        write_docs_jpeg(sheet, ROOT / "docs" / "calibration.jpg")
    return columns


def default_run(content: Path, style: Path, size: int, params) -> dict:
    """The default command's losses, speckle and seconds for one pair at one size."""
    cfg = validate({"content": str(content), "style": str(style), "size": size, "print_every": 0})
    t0 = time.perf_counter()
    result = run(cfg, params, hooks=RunHooks(log=quiet))
    loss = result.report["variants"][0]["final_loss"]
    with Image.open(style) as art:
        speckle, speckle_style = speckle_pair(result.images[0], art)
    return {"content": loss["content"], "style": loss["style"], "total": loss["total"],
            "speckle": round(speckle, 1), "speckle_style": round(speckle_style, 1),
            "run_s": round(time.perf_counter() - t0, 1), "scales": cfg.scales,
            "iterations": [*cfg.scale_iterations, cfg.optimizer.iterations]}


def main() -> int:
    args = parser().parse_args()
    if min(args.sizes) < 32 or min(args.ratios) <= 0:
        raise ConfigError("--sizes must be at least 32 and --ratios greater than 0")
    pairs = parse_pairs(args.pairs)
    params = load_vgg19()
    beta = DEFAULT_BETA["mean"]
    args.out.mkdir(parents=True, exist_ok=True)
    columns = ratio_sheet(args, pairs[0], params, beta)
    reused = {}
    if args.reuse:
        quality = json.loads(args.reuse.read_text())
        reused = {(r["pair"], quality["size"]): r for r in quality["rows"] if r["run"] == "default"}
    rows = []
    for name, content, style in pairs:
        per_size = {}
        for size in args.sizes:
            if (name, size) in reused:
                r = reused[(name, size)]
                per_size[size] = {k: r[k] for k in ("content", "style", "total", "speckle", "speckle_style")}
                per_size[size].update(run_s=r["wall_s"], source=str(args.reuse))
            else:
                per_size[size] = default_run(content, style, size, params)
        spread = {k: max(v[k] for v in per_size.values()) / min(v[k] for v in per_size.values())
                  for k in ("content", "style")}
        rows.append({"pair": name, "sizes": per_size, "spread": spread})
        cells = "  ".join(f"{s}: c {v['content']:.3g} s {v['style']:.3g}" for s, v in per_size.items())
        print(f"{name}: {cells}  spread content {spread['content']:.2f}, style {spread['style']:.2f}", flush=True)
    (args.out / "calibration.json").write_text(json.dumps(
        {"date": datetime.date.today().isoformat(), "machine": platform.node(), "beta": beta,
         "ratios": args.ratios, "sizes": args.sizes,
         "sheet": {str(s): [v["final_loss"] for v in columns[s].report["variants"]] for s in args.sizes},
         "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out / 'sheet.png'} and {args.out / 'calibration.json'}")
    return 0


if __name__ == "__main__":
    run_main(main)
