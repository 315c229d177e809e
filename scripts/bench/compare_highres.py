#!/usr/bin/env python
"""Coarse-to-fine (optionally tiled) against a direct run at the same size, for the same wall time.

The direct run optimises at full size for --iterations. Each other run gets that run's wall time:
its full-resolution loss is read at the last report that came before the direct run's time ran
out (and at its own end). Compilation inside a multi-stage run counts against it; the direct
run's single compilation does not.

    python scripts/bench/compare_highres.py --size 512 --iterations 200 --scales 128 256 \\
        --scale-iterations 200 100 --tile 256
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import jax

from jaxstyle import load_vgg19
from jaxstyle.engine.progress import RunHooks
from jaxstyle.engine.config import validate
from jaxstyle.engine.memory import peak_rss_bytes
from jaxstyle.driver.job import run

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--content", default=str(ROOT / "examples" / "leuvenA.jpg"))
    ap.add_argument("--style", default=str(ROOT / "examples" / "starry_night.jpg"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iterations", type=int, default=200, help="direct run's iterations")
    ap.add_argument("--scales", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--scale-iterations", type=int, nargs="+", default=[200, 100])
    ap.add_argument("--tile", type=int, default=0, help="also run coarse-to-fine with this tile size")
    ap.add_argument("--tile-iterations", type=int, default=0,
                    help="final-stage iterations of the tiled run (default --iterations); overlapping "
                         "tiles cost more per iteration, so fewer fit in the direct run's time")
    ap.add_argument("--beta", type=float, default=None, help="default: the config's default")
    ap.add_argument("--every", type=int, default=10, help="iterations between loss reports")
    ap.add_argument("--json", default="compare_highres.json")
    args = ap.parse_args()

    params = load_vgg19()
    base = {"content": args.content, "style": args.style, "size": args.size, "scales": [],
            "seeds": [0], "print_every": args.every, "memory_check": False,
            "optimizer": {"iterations": args.iterations}}
    if args.beta is not None:
        base["beta"] = args.beta
    # The multi-stage runs get as many final-stage iterations as the direct run; they are read
    # at the direct run's wall time, so any extra is reported separately as "own end".
    runs = {"direct": base,
            "coarse-to-fine": {**base, "scales": args.scales, "scale_iterations": args.scale_iterations}}
    if args.tile:
        runs[f"coarse-to-fine, {args.tile} px tiles"] = {
            **runs["coarse-to-fine"], "tile_size": args.tile, "tile_overlap": min(64, args.tile // 4),
            "optimizer": {"iterations": args.tile_iterations or args.iterations}}
    rows = []
    budget = None
    for name, raw in runs.items():
        result = run(validate(raw), params, hooks=RunHooks(log=lambda s: None))
        final_stage = len(raw.get("scales", [])) + 1
        points = [(h["elapsed_s"], h["total"][0]) for h in result.history
                  if h.get("stage", final_stage) == final_stage]
        own_end = result.report["variants"][0]["final_loss"]["total"]
        wall = result.report["timing"]["run_s"]
        if budget is None:
            budget = wall
        in_budget = [loss for t, loss in points if t <= budget]
        rows.append({"run": name, "wall_s": round(wall, 1), "compile_s": result.report["timing"]["compile_s"],
                     "loss_at_direct_time": in_budget[-1] if in_budget else None, "loss_own_end": own_end,
                     "stages": result.report.get("stages")})
        print(f"{name:>34}: {wall:7.1f} s, full-size loss at {budget:.0f} s: "
              f"{rows[-1]['loss_at_direct_time'] or float('nan'):.5g}, at its own end: {own_end:.5g}", flush=True)
    out = {"date": datetime.date.today().isoformat(), "machine": platform.node(),
           "device": str(jax.devices()[0].device_kind), "size": args.size, "args": vars(args),
           "peak_rss_mb": round(peak_rss_bytes() / 2**20), "rows": rows}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
