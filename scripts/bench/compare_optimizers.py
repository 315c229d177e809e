#!/usr/bin/env python
"""The optimisers of jaxstyle's registry against jaxopt's default L-BFGS: same loss, same starts.

* jaxstyle (``--runs NAME[/HISTORY]``): any entry of ``jaxstyle.engine.solvers.REGISTRY`` with its
  defaults (``lbfgs``: the unit step, one evaluation per iteration; ``lbfgs-retry``;
  ``jaxopt-lbfgs``: jaxopt's zoom line search with the L-BFGS step as first trial; ``optax-lbfgs``:
  optax's L-BFGS and zoom line search; ``adam``), and its history size where it has one; run through
  the same batch programs as the command line.
* jaxopt default: ``jaxopt.LBFGS(fun, has_aux=True, maxiter=N)`` with every other setting left at
  its default (zoom line search for the strong Wolfe conditions, ``linesearch_init="increase"``,
  history 10). ``update`` is jit-compiled and called once per iteration: the iterations
  ``LBFGS.run`` makes, without its outer ``while_loop``.

The loss is the paper's (``losses: paper``, alpha 1, beta ``--beta``), as in the comparisons
recorded in docs/optimizer.md. With ``--seeds N`` every optimiser runs the same N noise starts side
by side (vmapped) and the table shows their mean loss; a line search under ``vmap`` runs until every
start's search has ended, so its seconds per iteration are those of a batch waiting for its slowest.

Prints the loss after each of --marks iterations, evaluations per iteration, steps refused and
seconds per iteration, and writes JSON.

    python scripts/bench/compare_optimizers.py --iterations 500 --marks 100 500 --seeds 4 --runs lbfgs/20 optax-lbfgs/20
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
import numpy as np

from jaxstyle import load_vgg19
from jaxstyle.cli import run_main
from jaxstyle.engine.config import PAPER_STYLE_LAYERS
from jaxstyle.core.errors import ConfigError
from jaxstyle.media.images import load_image
from jaxstyle.model.losses import LossWeights, Objective
from jaxstyle.engine.solvers import REGISTRY, Solver

ROOT = Path(__file__).resolve().parents[2]


def trace(init, step, read, x0, args, marks: list[int]) -> dict:
    """Run a batch of starts ``x0`` up to max(marks) iterations; at each mark the mean loss, each
    start's loss, evaluations per start, steps refused and seconds.

    ``init(x0, *args)`` and ``step(x, state, *args) -> (x, state)`` work on the whole batch;
    ``read(state)`` gives the (values, evaluations) of each start; evaluations include the one
    ``init`` makes, which the printed evaluations per iteration leave out.
    """
    init = jax.jit(init)
    state = init(x0, *args)
    step = jax.jit(step).lower(x0, state, *args).compile()  # compiled before the clock starts
    jax.block_until_ready(state)
    x, out, t0 = x0, {}, time.perf_counter()
    rejected = jnp.zeros(x0.shape[0], jnp.int32)
    for i in range(1, max(marks) + 1):
        new_x, state = step(x, state, *args)
        # jaxstyle's safeguard leaves the image where it was when it refuses a step.
        rejected = rejected + jnp.all(new_x == x, axis=tuple(range(1, x.ndim)))
        x = new_x
        if i in marks:
            jax.block_until_ready(state)
            values, evaluations = read(state)
            losses = [float(v) for v in values]
            out[i] = {"loss": float(np.mean(losses)), "losses": losses,
                      "evaluations": float(np.mean(evaluations)),
                      "steps_refused": [int(r) for r in rejected],
                      "seconds": round(time.perf_counter() - t0, 2)}
    return out


def ours(solver: Solver):
    """jaxstyle's batch programs, as the command line runs them."""
    def init(x0, *args):
        return solver.batch_init(x0, args, ())

    def step(x, state, *args):
        state = solver.batch_step(state, args, ())
        return state.x, state

    return init, step, lambda state: (state.opt.value, state.opt.num_fun_eval)


def vmapped(init, step):
    """A per-image solver's ``init_state``/``update`` vmapped over the starts."""
    return (lambda x0, *args: jax.vmap(init, in_axes=(0,) + (None,) * len(args))(x0, *args),
            lambda x, state, *args: jax.vmap(step, in_axes=(0, 0) + (None,) * len(args))(x, state, *args),
            lambda state: (state.value, state.num_fun_eval))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--marks", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--square", action="store_true", help="size x size images (as bench.py uses)")
    ap.add_argument("--seeds", type=int, default=1, help="noise starts, run side by side (vmapped)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seed of the first start (starts use seeds first-seed .. first-seed + seeds - 1)")
    ap.add_argument("--beta", type=float, default=1e5)
    ap.add_argument("--runs", nargs="+", default=["lbfgs/20"], metavar="NAME[/HISTORY]",
                    help="registry entries to run, with their history size where they have one, "
                         "e.g. lbfgs/20 lbfgs-retry/20 optax-lbfgs/20 adam")
    ap.add_argument("--without-default", action="store_true", help="skip jaxopt's default configuration")
    ap.add_argument("--json", default="compare_optimizers.json")
    return ap


def registry_rows(args, obj, x0, run_args, marks) -> dict:
    """Every ``--runs`` entry of the registry, traced at ``marks``."""
    rows = {}
    for run in args.runs:
        name, _, history = run.partition("/")
        if name not in REGISTRY:
            raise ConfigError(f"--runs {run}: no optimiser '{name}'; registered: {', '.join(REGISTRY)}")
        if history and (not history.isdigit() or "history_size" not in REGISTRY[name].options):
            raise ConfigError(f"--runs {run}: the part after '/' must be a history size, for an L-BFGS entry")
        options = {k: o.default for k, o in REGISTRY[name].options.items()}
        if history:
            options["history_size"] = int(history)
        label = name + (f", history {options['history_size']}" if "history_size" in options else "")
        rows[f"jaxstyle ({label})"] = trace(
            *ours(Solver(obj, name, args.iterations, 0.0, tuple(sorted(options.items())))), x0, run_args, marks)
    return rows


def main() -> None:
    args = parser().parse_args()
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {args.seeds}")
    if args.first_seed < 0:
        raise ConfigError(f"--first-seed must be at least 0, not {args.first_seed}")
    marks = sorted({m for m in args.marks if m <= args.iterations} | {args.iterations})

    params = load_vgg19()
    obj = Objective(("conv4_2",), tuple(PAPER_STYLE_LAYERS), losses="paper")  # as the recorded comparisons
    content = load_image(ROOT / "examples" / "leuvenA.jpg", size=args.size,
                         shape=(args.size, args.size) if args.square else None)
    style = load_image(ROOT / "examples" / "starry_night.jpg", shape=content.shape[:2])
    targets = jax.jit(obj.targets)(params, jnp.asarray(content), jnp.asarray(style))
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    weights = LossWeights(f32(1.0), f32(args.beta), {"conv4_2": f32(1.0)},
                          {l: f32(w) for l, w in PAPER_STYLE_LAYERS.items()}, {})
    x0 = jnp.stack([jax.random.uniform(jax.random.key(seed), content.shape, jnp.float32)
                    for seed in range(args.first_seed, args.first_seed + args.seeds)])
    run_args = (params, targets, weights)

    rows = registry_rows(args, obj, x0, run_args, marks)
    if not args.without_default:
        default = jaxopt.LBFGS(fun=obj, has_aux=True, maxiter=args.iterations)
        rows["jaxopt default (zoom)"] = trace(*vmapped(default.init_state, default.update), x0, run_args, marks)
    print(f"{content.shape[1]}x{content.shape[0]} px, alpha 1, beta {args.beta:g}, "
          f"{args.seeds} noise start(s) from seed {args.first_seed}, the same for every optimiser; mean loss over the starts")
    print(f"{'optimiser':>36} | " + " | ".join(f"loss @ {m}" for m in marks)
          + f" | each start's loss @ {marks[-1]} | evals/iter | steps refused | s/iter")
    for name, r in rows.items():
        last = r[marks[-1]]
        print(f"{name:>36} | " + " | ".join(f"{r[m]['loss']:.5g}" for m in marks)
              + " | " + " ".join(f"{v:.5g}" for v in last["losses"])
              + f" | {(last['evaluations'] - 1) / marks[-1]:.2f} | {np.mean(last['steps_refused']):.1f}"
              + f" | {last['seconds'] / marks[-1]:.3f}")
    Path(args.json).write_text(json.dumps({
        "date": datetime.date.today().isoformat(), "machine": platform.node(),
        "device": str(jax.devices()[0].device_kind), "shape": list(content.shape[:2]),
        "beta": args.beta, "seeds": args.seeds, "first_seed": args.first_seed, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    run_main(main)
