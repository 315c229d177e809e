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

    python scripts/bench.py                                   # CPU defaults
    python scripts/bench.py --sizes 192x256 --rounds 5        # the loop-overhead check
    python scripts/bench.py --sizes 512 1024 2048 --batches 1 4 8 --iterations 100   # GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxstyle.cli import run_main  # noqa: E402
from jaxstyle.engine.config import parse_override, validate  # noqa: E402
from jaxstyle.core.errors import ConfigError  # noqa: E402
from jaxstyle.model.losses import Objective  # noqa: E402
from jaxstyle.engine.memory import peak_rss_bytes  # noqa: E402
from jaxstyle.engine.pipeline import prepare  # noqa: E402
from jaxstyle.engine.program import Program  # noqa: E402
from jaxstyle.model.vgg import LAYER_NAMES, LAYERS  # noqa: E402


def conv_flops(h: int, w: int, deepest: str) -> float:
    """FLOPs of the convolutions up to ``deepest`` for an h x w image, forward pass and input gradient.

    Each 3x3 convolution costs 9 * Cin * Cout multiply-adds per output position (2 FLOPs each); the
    gradient with respect to its input costs the same again (conv1_1's too: the image is optimised).
    """
    fwd = 0.0
    for name, cin, cout in LAYERS[: LAYER_NAMES.index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        else:
            fwd += 2.0 * 9 * cin * cout * h * w
    return 2 * fwd


def peak_memory_mb() -> float:
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        return (dev.memory_stats() or {}).get("peak_bytes_in_use", float("nan")) / 2**20
    return peak_rss_bytes() / 2**20


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


def bench_case(shape: tuple[int, int], batch: int, iterations: int, rounds: int, overrides: dict,
               params=None) -> dict:
    """One size and batch: compile seconds, medians of iterations and plain evaluations, their
    ratio, evaluations per iteration, achieved GFLOP/s, peak memory (``params``: the weights, or
    None for the configured file)."""
    cfg = validate({"content": str(ROOT / "examples" / "leuvenA.jpg"), "style": str(ROOT / "examples" / "starry_night.jpg"),
                    "size": list(shape), "scales": [], "seeds": list(range(batch)), "print_every": 0,
                    "memory_check": False, **overrides})
    setup = prepare(cfg, params)
    objective: Objective = setup.objective
    content = jnp.asarray(setup.final_inputs.content)
    grams = setup.grams_fn(setup.params, [jnp.asarray(s) for s in setup.final_inputs.styles])
    targets = setup.targets_fn(setup.params, content, grams, cfg.blend, None)
    program = Program(setup.solver, setup.strategy, cfg.optimizer.unroll, setup.mesh)
    x0 = jnp.asarray(np.random.default_rng(0).random((batch, *shape, 3)), jnp.float32)
    args = program.place(x0, (setup.params, targets), (setup.weights,))
    compile_s = program.compile(*args)
    state = program.advance(program.init(*args), args[1], args[2], 1)  # warm-up
    jax.block_until_ready(state)

    one = jax.tree_util.tree_map(lambda a: a[0], setup.weights)
    plain = jax.jit(jax.value_and_grad(lambda x: objective(x, setup.params, targets, one)[0]))
    jax.block_until_ready(plain(x0[0]))
    evals0 = int(np.asarray(state.opt.num_fun_eval).sum())
    iter_s, eval_s = [], []
    for _ in range(rounds * iterations):
        # One iteration, then one evaluation, back to back: a pair sees the same machine, and the
        # median of the pairs' ratios is not moved by the shared machine's slow spells.
        t0 = time.perf_counter()
        state = jax.block_until_ready(program.advance(state, args[1], args[2], 1))
        t1 = time.perf_counter()
        jax.block_until_ready(plain(x0[0]))
        iter_s.append(t1 - t0)
        eval_s.append(time.perf_counter() - t1)
    evals = (int(np.asarray(state.opt.num_fun_eval).sum()) - evals0) / (iterations * rounds * batch)
    it, ev = statistics.median(iter_s), statistics.median(eval_s)
    ratio = statistics.median(i / (batch * e) for i, e in zip(iter_s, eval_s))
    flops = batch * conv_flops(*shape, "conv5_1")
    return {"size": f"{shape[0]}x{shape[1]}", "batch": batch, "optimizer": cfg.optimizer.name,
            "strategy": setup.strategy, "compile_s": round(compile_s, 3), "iter_s": round(it, 4),
            "eval_s": round(ev, 4), "iter_per_eval_of_one": round(ratio, 3),
            "evals_per_iter": round(evals, 3), "gflops_achieved": round(flops / it / 1e9, 1),
            "peak_mem_mb": round(peak_memory_mb(), 1), "iter_s_each": [round(t, 4) for t in iter_s],
            "eval_s_each": [round(t, 4) for t in eval_s]}


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
