#!/usr/bin/env python
"""Measure jaxstyle's speed and memory; print a table and write JSON.

For each image size and batch size: compile time, one loss-and-gradient evaluation, one L-BFGS
iteration (averaged over --iterations), evaluations per iteration, the FLOP count of one
evaluation (convolution multiply-adds of the forward pass and the input gradient, x2 for FLOPs),
achieved GFLOP/s and peak memory (device memory on GPU, process RSS on CPU).

    python scripts/bench.py                        # CPU defaults, a few minutes on 2 cores
    python scripts/bench.py --sizes 512 1024 2048 --batches 1 4 8 --iterations 100   # GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import load_vgg19
from jaxstyle.config import PAPER_STYLE_LAYERS
from jaxstyle.images import load_image
from jaxstyle.losses import LossWeights, Objective
from jaxstyle.memory import peak_rss_bytes
from jaxstyle.optim import Program, Solver, SolverConfig, evals_of
from jaxstyle.vgg import LAYER_NAMES, LAYERS

ROOT = Path(__file__).resolve().parent.parent


def conv_flops(h: int, w: int, deepest: str) -> tuple[float, float]:
    """(forward, input-gradient) FLOPs of the convolutions up to ``deepest`` for an h x w image.

    Each 3x3 convolution costs 9 * Cin * Cout multiply-adds per output position (2 FLOPs each);
    the gradient with respect to its input costs the same again. conv1_1's input gradient is
    needed too, since the optimised variable is the image.
    """
    fwd = 0.0
    for name, cin, cout in LAYERS[: LAYER_NAMES.index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        else:
            fwd += 2.0 * 9 * cin * cout * h * w
    return fwd, fwd


def peak_memory_mb() -> float:
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        return stats.get("peak_bytes_in_use", float("nan")) / 2**20
    return peak_rss_bytes() / 2**20


def bench_case(params, size: int, batch: int, iterations: int, solver_cfg: SolverConfig,
               remat: bool = False) -> dict:
    obj = Objective(("conv4_2",), tuple(PAPER_STYLE_LAYERS), remat=remat, losses="paper")
    content = jnp.asarray(load_image(ROOT / "examples" / "leuvenA.jpg", shape=(size, size)))
    style = jnp.asarray(load_image(ROOT / "examples" / "starry_night.jpg", shape=(size, size)))
    targets = jax.jit(obj.targets)(params, content, style)
    one = lambda v: jnp.full((batch,), v, jnp.float32)
    weights = LossWeights(one(1.0), one(1e3), {"conv4_2": one(1.0)},
                          {l: one(w) for l, w in PAPER_STYLE_LAYERS.items()}, {})
    x0 = jax.random.uniform(jax.random.key(0), (batch, size, size, 3), jnp.float32)

    # One loss-and-gradient evaluation of the whole batch, as the solver calls it.
    vg = jax.jit(jax.vmap(jax.value_and_grad(lambda x, p, t, w: obj(x, p, t, w), has_aux=True),
                          in_axes=(0, None, None, 0)))
    jax.block_until_ready(vg(x0, params, targets, weights))
    reps = 3
    t0 = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(vg(x0, params, targets, weights))
    eval_s = (time.perf_counter() - t0) / reps

    solver = Solver(obj, solver_cfg)
    program = Program(solver, solver_cfg.resolved_strategy(), solver_cfg.unroll)
    compile_s = program.compile(x0, (params, targets), (weights,))
    state = program.init(x0, (params, targets), (weights,))
    state = program.advance(state, (params, targets), (weights,), 1)  # warm-up
    jax.block_until_ready(state)
    e0 = np.asarray(evals_of(state.opt)).sum()
    t0 = time.perf_counter()
    state = program.advance(state, (params, targets), (weights,), iterations)
    jax.block_until_ready(state)
    iter_s = (time.perf_counter() - t0) / iterations
    evals_per_iter = (np.asarray(evals_of(state.opt)).sum() - e0) / (iterations * batch)
    fwd, bwd = conv_flops(size, size, "conv5_1")
    flops = batch * (fwd + bwd)
    return {
        "size": size, "batch": batch, "iterations": iterations, "remat": remat,
        "compile_s": round(compile_s, 3), "eval_s": round(eval_s, 4), "iter_s": round(iter_s, 4),
        "iter_per_eval": round(iter_s / eval_s, 3), "evals_per_iter": round(float(evals_per_iter), 3),
        "gflop_per_eval": round(flops / 1e9, 2), "gflops_achieved": round(flops / eval_s / 1e9, 1),
        "images_per_s_500_iters": round(batch / (iter_s * 500), 4),
        "peak_mem_mb": round(peak_memory_mb(), 1),
        "final_loss_mean": float(np.mean(np.asarray(state.opt.value))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--linesearch", default="none")
    ap.add_argument("--strategy", default="auto")
    ap.add_argument("--remat", action="store_true", help="also measure with jax.checkpoint per block")
    ap.add_argument("--json", type=Path, default=Path("bench.json"))
    args = ap.parse_args()

    cfg = SolverConfig(iterations=args.iterations, linesearch=args.linesearch, strategy=args.strategy).validate()
    params = load_vgg19()
    dev = jax.devices()[0]
    meta = {"date": datetime.date.today().isoformat(), "device": f"{dev.platform}: {dev.device_kind}",
            "host": platform.node(), "cpus": __import__("os").cpu_count(), "jax": jax.__version__,
            "linesearch": cfg.linesearch, "strategy": cfg.resolved_strategy()}
    print(" ".join(f"{k}={v}" for k, v in meta.items()))
    cols = ["size", "batch", "remat", "compile_s", "eval_s", "iter_s", "iter_per_eval", "evals_per_iter",
            "gflop_per_eval", "gflops_achieved", "peak_mem_mb"]
    print(" | ".join(f"{c:>14}" for c in cols))
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            for remat in ([False, True] if args.remat else [False]):
                row = bench_case(params, size, batch, args.iterations, cfg, remat)
                rows.append(row)
                print(" | ".join(f"{row[c]!s:>14}" for c in cols), flush=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
