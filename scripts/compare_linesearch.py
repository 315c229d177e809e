#!/usr/bin/env python
"""L-BFGS as jaxstyle runs it against jaxopt's default configuration: same loss, same start.

* jaxstyle: ``linesearch: none`` (jaxopt's unit step, first step scaled to unit L1 size, a step
  failing Armijo's condition not taken), one evaluation per iteration.
* jaxopt default: ``jaxopt.LBFGS(fun, has_aux=True, maxiter=N)`` with every other setting left at
  its default (zoom line search for the strong Wolfe conditions, ``linesearch_init="increase"``,
  history 10). ``update`` is jit-compiled and called once per iteration: the iterations
  ``LBFGS.run`` makes, without its outer ``while_loop``.

Prints the loss after each of --marks iterations, evaluations per iteration and seconds per
iteration, and writes JSON.

    python scripts/compare_linesearch.py --size 128 --iterations 500 --marks 100 500
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
import jaxopt

from jaxstyle import load_vgg19
from jaxstyle.config import PAPER_STYLE_LAYERS
from jaxstyle.images import load_image
from jaxstyle.losses import LossWeights, Objective
from jaxstyle.optim import Solver, SolverConfig

ROOT = Path(__file__).resolve().parent.parent


def trace(init, step, x0, args, marks: list[int]) -> dict:
    """Run ``step`` up to max(marks) times; loss, evaluations and time at each mark."""
    state = init(x0, *args)
    step = jax.jit(step).lower(x0, state, *args).compile()  # compiled before the clock starts
    jax.block_until_ready(state)
    x, out, t0 = x0, {}, time.perf_counter()
    for i in range(1, max(marks) + 1):
        x, state = step(x, state, *args)
        if i in marks:
            jax.block_until_ready(state)
            out[i] = {"loss": float(state.value), "evaluations": int(state.num_fun_eval),
                      "seconds": round(time.perf_counter() - t0, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--marks", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--beta", type=float, default=1e5)
    ap.add_argument("--history", type=int, nargs="+", default=[10], help="jaxstyle's L-BFGS history sizes to run")
    ap.add_argument("--json", default="compare_linesearch.json")
    args = ap.parse_args()
    marks = sorted({m for m in args.marks if m <= args.iterations} | {args.iterations})

    params = load_vgg19()
    obj = Objective(("conv4_2",), tuple(PAPER_STYLE_LAYERS))
    content = load_image(ROOT / "examples" / "leuvenA.jpg", size=args.size)
    style = load_image(ROOT / "examples" / "starry_night.jpg", shape=content.shape[:2])
    targets = jax.jit(obj.targets)(params, jnp.asarray(content), jnp.asarray(style))
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    weights = LossWeights(f32(1.0), f32(args.beta), {"conv4_2": f32(1.0)},
                          {l: f32(w) for l, w in PAPER_STYLE_LAYERS.items()}, {})
    x0 = jax.random.uniform(jax.random.key(0), content.shape, jnp.float32)
    run_args = (params, targets, weights)

    rows = {}
    for m in args.history:
        ours = Solver(obj, SolverConfig(iterations=args.iterations, history_size=m))
        rows[f"jaxstyle (none, history {m})"] = trace(jax.jit(ours.init), ours.step, x0, run_args, marks)
    default = jaxopt.LBFGS(fun=obj, has_aux=True, maxiter=args.iterations)
    rows["jaxopt default (zoom)"] = trace(jax.jit(default.init_state), default.update, x0, run_args, marks)
    print(f"{content.shape[1]}x{content.shape[0]} px, alpha 1, beta {args.beta:g}, same noise start")
    print(f"{'optimiser':>28} | " + " | ".join(f"loss @ {m}" for m in marks) + " | evals/iter | s/iter")
    for name, r in rows.items():
        last = r[marks[-1]]
        print(f"{name:>28} | " + " | ".join(f"{r[m]['loss']:.5g}" for m in marks)
              + f" | {last['evaluations'] / marks[-1]:.2f} | {last['seconds'] / marks[-1]:.3f}")
    Path(args.json).write_text(json.dumps({
        "date": datetime.date.today().isoformat(), "machine": platform.node(),
        "device": str(jax.devices()[0].device_kind), "shape": list(content.shape[:2]),
        "beta": args.beta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
