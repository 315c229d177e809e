"""What the benchmark and measurement scripts share: the example pairs they measure, the FLOP count
of an evaluation, peak memory, and one benchmark case through the command line's own code path."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError
from ..engine.config import validate
from ..engine.memory import peak_rss_bytes
from ..engine.pipeline import prepare
from ..engine.program import Program
from ..model.losses import Objective
from ..model.vgg import LAYER_NAMES, LAYERS

#: The repository's example images (benchmarks run from a checkout).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: The quality pairs (photograph, artwork) in examples/, measured by quality.py, calibrate.py and
#: style_losses.py.
QUALITY_PAIRS = (("leuvenA.jpg", "starry_night.jpg"), ("home.jpg", "graf1.png"), ("fruits.jpg", "starry_night.jpg"))
#: The same pairs as ``--pairs`` takes them: ``photo:artwork``.
QUALITY_PAIR_TEXTS = tuple(f"{a}:{b}" for a, b in QUALITY_PAIRS)
#: The pair the speed benchmarks use.
BENCH_PAIR = (str(EXAMPLES / "leuvenA.jpg"), str(EXAMPLES / "starry_night.jpg"))


def parse_pairs(texts: list[str]) -> list[tuple[str, Path, Path]]:
    """``photo:artwork`` texts (names in examples/ or paths) -> ``(text, photo, artwork)``, each
    file checked: a :class:`ConfigError` in one line for a bad text or a missing file."""
    pairs = []
    for text in texts:
        if text.count(":") != 1:
            raise ConfigError(f"--pairs takes photo:artwork, not {text!r}")
        paths = [Path(p) if Path(p).is_file() else EXAMPLES / p for p in text.split(":")]
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"image not found: {path}")
        pairs.append((text, *paths))
    return pairs


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


def bench_case(shape: tuple[int, int], batch: int, iterations: int, rounds: int, overrides: dict,
               params=None, pair: tuple[str, str] = BENCH_PAIR) -> dict:
    """One size and batch: compile seconds, medians of iterations and plain evaluations, their
    ratio, evaluations per iteration, achieved GFLOP/s, peak memory (``params``: the weights, or
    None for the configured file; ``pair``: the photograph's and the artwork's paths)."""
    cfg = validate({"content": pair[0], "style": pair[1], "size": list(shape), "scales": [], "seeds": list(range(batch)), "print_every": 0,
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
