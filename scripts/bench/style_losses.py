"""The style losses measured: the cost of each, of one program for all, and each one's pull.

Each one's cost per loss-and-gradient evaluation, the cost of one program evaluating all of them,
and how strongly each pulls compared with the Gram loss.

    python scripts/bench/style_losses.py                 # 256 px, the three sample pairs
    python scripts/bench/style_losses.py --size 128 --repeats 3
    python scripts/bench/style_losses.py --results outputs/quality/default --repeats 0   # weights only

For every pair (photo x artwork) and style loss it takes the gradient of the (unweighted) style
loss, Eq. 5 with the default layers, and divides the Gram loss's gradient norm by each loss's:
the factor that makes its pull as strong as the Gram loss's there. It does so at three points:
the default start image (grey plus faint noise); the photograph, where only the style pulls; and,
with ``--results``, the default Gram run's result for the pair (``<pair folder>/000_seed0.png``
as ``scripts/bench/quality.py`` writes them). These ratios are a first guess only: the default weights
(``jaxstyle.model.style_losses.DEFAULT_WEIGHTS``) come from whole runs, matched on their final content
loss (docs/loss-lab.md), and differ from every one of them.
Timings: jit-compiled loss and gradient of the whole objective (content + style, one image), the
median of ``--repeats`` calls after one warm-up; "all" evaluates every style loss in one program,
as one program for a whole sweep would for each variant.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import load_vgg19
from jaxstyle.cli import run_main
from jaxstyle.engine.config import MRF_LAYERS, PAPER_STYLE_LAYERS
from jaxstyle.core.errors import ConfigError
from jaxstyle.media.images import load_image
from jaxstyle.model.losses import LossWeights, Objective
from jaxstyle.model.style_losses import DEFAULT_WEIGHTS, STYLE_LOSSES
from jaxstyle.driver.bench import EXAMPLES, QUALITY_PAIRS



def weights(objective: Objective) -> LossWeights:
    f = jnp.float32
    style = MRF_LAYERS if objective.style_loss == "mrf" else PAPER_STYLE_LAYERS
    return LossWeights(f(1.0), f(10.0), {l: f(1.0) for l in objective.content_layers},
                       {l: f(w) for l, w in style.items()}, {},
                       jnp.uint32(0) if objective.samples_positions else None)


def timed(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="longest side in px (default 256)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per loss (0: no timing)")
    ap.add_argument("--results", type=Path, default=None,
                    help="folder of the default Gram runs' results, one subfolder per pair (scripts/bench/quality.py)")
    args = ap.parse_args()
    params = load_vgg19()
    layers = tuple(PAPER_STYLE_LAYERS)
    objectives = {k: Objective(("conv4_2",), tuple(MRF_LAYERS) if k == "mrf" else layers, losses="mean", style_loss=k)
                  for k in STYLE_LOSSES}
    points = ("start", "photo") + (("result",) if args.results else ())
    ratios = {k: {at: [] for at in points} for k in STYLE_LOSSES}
    costs = {k: [] for k in [*STYLE_LOSSES, "all"]}
    for photo_name, art_name in QUALITY_PAIRS:
        photo = jnp.asarray(load_image(EXAMPLES / photo_name, size=args.size))
        art = jnp.asarray(load_image(EXAMPLES / art_name, shape=photo.shape[:2]))
        start = 0.5 + 0.02 * jax.random.normal(jax.random.key(0), photo.shape)
        at = {"start": start, "photo": photo}
        if args.results:
            found = sorted(args.results.glob(f"{Path(photo_name).stem}-*_{Path(art_name).stem}-*/000_seed0.png"))
            if not found:
                raise ConfigError(f"no result for {photo_name} x {art_name} under {args.results}")
            result = jnp.asarray(load_image(found[0]))
            at["result"] = result
            result_targets = {k: o.targets(params, jnp.asarray(load_image(EXAMPLES / photo_name,
                                                                          shape=result.shape[:2])),
                                           jnp.asarray(load_image(EXAMPLES / art_name, shape=result.shape[:2])))
                              for k, o in objectives.items()}
        targets = {k: o.targets(params, photo, art) for k, o in objectives.items()}
        norms = {}
        for k, o in objectives.items():
            style_only = jax.jit(jax.grad(lambda x, t, o=o: o.parts(x, params, t, weights(o))["style"]))
            norms[k] = {p: float(jnp.linalg.norm(style_only(x, result_targets[k] if p == "result" else targets[k])
                                                 / DEFAULT_WEIGHTS[k])) for p, x in at.items()}
            if args.repeats:
                step = jax.jit(jax.value_and_grad(lambda x, o=o, t=targets[k]: o(x, params, t, weights(o))[0]))
                costs[k].append(timed(step, start, repeats=args.repeats))
        for k in STYLE_LOSSES:
            for p in points:
                ratios[k][p].append(norms["gram"][p] / norms[k][p])

        def every_loss(x):  # one program for all: every style loss of the same features
            return sum(o(x, params, targets[k], weights(o))[0] for k, o in objectives.items())
        if args.repeats:
            costs["all"].append(timed(jax.jit(jax.value_and_grad(every_loss)), start, repeats=args.repeats))
        print(f"{photo_name} x {art_name} at {photo.shape[1]}x{photo.shape[0]}: measured", flush=True)
    print_tables(args, points, ratios, costs)
    return 0


def print_tables(args, points, ratios: dict, costs: dict) -> None:
    """The gradient-norm ratios per style loss and point, and the costs of one evaluation."""
    geo = lambda xs: float(np.exp(np.mean(np.log(xs))))  # noqa: E731
    print(f"\nGradient-norm ratio Gram / loss (per pair: {', '.join(f'{a} x {b}' for a, b in QUALITY_PAIRS)}), "
          "and the geometric mean:\n")
    print("| style loss | " + " | ".join(f"at the {p}" for p in points) + " |")
    print("| --- |" + " --- |" * len(points))
    for k in STYLE_LOSSES:
        print(f"| {k} | " + " | ".join(f"{', '.join(f'{r:.3g}' for r in ratios[k][p])} (**{geo(ratios[k][p]):.3g}**)"
                                       for p in points) + " |")
    if args.repeats:
        print(f"\n| style loss | s per loss-and-gradient evaluation ({args.size} px, median over pairs) |")
        print("| --- | --- |")
        for k in [*STYLE_LOSSES, "all"]:
            print(f"| {k if k != 'all' else 'all in one program'} | {statistics.median(costs[k]):.3f} |")
        one_each = sum(statistics.median(costs[k]) for k in STYLE_LOSSES)
        all_in_one = len(STYLE_LOSSES) * statistics.median(costs["all"])
        print(f"\nA sweep of the {len(STYLE_LOSSES)} losses, one variant each, per iteration: one program per "
              f"choice {one_each:.2f} s, one program for all {all_in_one:.2f} s ({all_in_one / one_each:.2f}x)")


if __name__ == "__main__":
    run_main(main)
