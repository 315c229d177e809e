#!/usr/bin/env python
"""Measure jaxstyle's speed and memory; print a table and write JSON.

For each image size and batch size, through the same code path as the command line (the config's
default optimiser, :func:`jaxstyle.engine.pipeline.prepare`, :class:`jaxstyle.engine.program.Program`, one stage):
compile time, one L-BFGS iteration (``Program.advance``), and, alternating with it in the same
process, one plain loss-and-gradient evaluation of the same objective (``jax.jit`` of
``jax.value_and_grad``, no ``vmap``, one image), each iteration followed by one evaluation; the
median of those pairs' ratios; evaluations per iteration;
the FLOP count of one evaluation (convolution multiply-adds of the forward pass and the input
gradient, x2 for FLOPs), achieved GFLOP/s and peak memory (device memory on GPU, process RSS on CPU).

    python scripts/bench/bench.py                                   # CPU defaults
    python scripts/bench/bench.py --sizes 192x256 --rounds 5        # the loop-overhead check
    python scripts/bench/bench.py --sizes 512 1024 2048 --batches 1 4 8 --iterations 100   # GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import jax

from jaxstyle.cli import run_main
from jaxstyle.engine.config import parse_override
from jaxstyle.core.errors import ConfigError
from jaxstyle.driver.bench import bench_case

ROOT = Path(__file__).resolve().parents[2]


def parse_size(text: str) -> tuple[int, int]:
    """``256`` (square) or ``192x256`` (height x width)."""
    try:
        h, _, w = text.partition("x")
        shape = (int(h), int(w or h))
    except ValueError:
        raise ConfigError(f"--sizes takes N or HxW, not {text!r}") from None
    if min(shape) < 32:
        raise ConfigError(f"--sizes must be at least 32 px, not {text!r}")
    return shape


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["128", "192x256"], help="N (square) or HxW")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--iterations", type=int, default=5, help="timed iterations (and evaluations) per round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds; each of the rounds x iterations timed iterations is followed by one "
                         "evaluation, and medians (of the times and of the pairs' ratios) are reported")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. optimizer.name=lbfgs-retry or remat=true")
    ap.add_argument("--json", type=Path, default=Path("bench.json"))
    args = ap.parse_args()
    overrides: dict = {}
    for text in args.overrides:
        keys, value = parse_override(text)
        node = overrides
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    shapes = [parse_size(s) for s in args.sizes]
    if args.iterations < 1 or args.rounds < 1 or min(args.batches) < 1:
        raise ConfigError("--iterations, --rounds and --batches must be at least 1")
    dev = jax.devices()[0]
    meta = {"date": datetime.date.today().isoformat(), "device": f"{dev.platform}: {dev.device_kind}",
            "host": platform.node(), "cpus": __import__("os").cpu_count(), "jax": jax.__version__,
            "overrides": args.overrides}
    print(" ".join(f"{k}={v}" for k, v in meta.items()))
    cols = ["size", "batch", "optimizer", "strategy", "compile_s", "iter_s", "eval_s", "iter_per_eval_of_one",
            "evals_per_iter", "gflops_achieved", "peak_mem_mb"]
    print(" | ".join(f"{c:>12}" for c in cols))
    rows = []
    for shape in shapes:
        for batch in args.batches:
            row = bench_case(shape, batch, args.iterations, args.rounds, overrides)
            rows.append(row)
            print(" | ".join(f"{row[c]!s:>12}" for c in cols), flush=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
