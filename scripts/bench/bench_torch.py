#!/usr/bin/env python
"""jaxstyle against PyTorch on this CPU: per L-BFGS iteration, and per layer.

Both sides use the same network read from the same converted weights file, the same photograph
and artwork at the same size, and the paper's losses (``losses: paper``, conv4_2 content,
conv1_1..conv5_1 style, the config's alpha and beta):

* **Iterations**: ``torch.optim.LBFGS`` (``history_size=100``, ``max_iter`` = the iterations,
  tolerances -1, no line search) against jaxstyle's default L-BFGS through the command line's
  path (:func:`jaxstyle.driver.job.run`, one stage, ``history_size: 100`` or ``--history``), both from the
  photograph. jaxstyle's time per iteration is the difference between runs of n + 1 and of 1
  iterations, compilation left out; PyTorch's is its ``step``, after one warm-up evaluation. Both
  sides' loss at the photograph is printed: they must agree.
* **Layers**: every convolution up to conv5_1 at the shape it has in that image, forward
  (convolution, bias, ReLU) and input gradient separately, the median of ``--repeats`` calls
  each; jaxstyle's input gradient is the rule its network uses on CPU (a convolution of the
  flipped kernel), PyTorch's is ``torch.nn.grad.conv2d_input`` (what autograd calls).

PyTorch is a benchmark extra only (``pip install -e ".[bench]"``), never a dependency of the
package or of its tests.

    python scripts/bench/bench_torch.py                          # 256 x 192 px, 30 iterations, 2 threads
    python scripts/bench/bench_torch.py --rounds 2 --json bench_torch.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.cli import run_main
from jaxstyle.engine.progress import RunHooks
from jaxstyle.engine.config import validate
from jaxstyle.core.errors import ConfigError
from jaxstyle.engine.inputs import prepare_images, start_images
from jaxstyle.engine.plan import plan_stages, upsample
from jaxstyle.engine.variants import expand_variants
from jaxstyle.model.losses import LossWeights, Objective
from jaxstyle.driver.job import run
from jaxstyle.engine.pipeline import uses_winograd
from jaxstyle.engine.progress import Watchers
from jaxstyle.model.vgg import (LAYER_NAMES, LAYERS, conv_hwio, conv3x3, layer_padding, prepare_kernels,
                          winograd_conv, winograd_pays)
from jaxstyle.model.weights import load_vgg19

ROOT = Path(__file__).resolve().parents[2]

#: CPU flags that decide which kernels the libraries can use.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def machine() -> dict:
    """CPU model, the flags above that it has, cores, library versions."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import torch
    return {"cpu": model, "flags": [f for f in FLAGS if f in flags], "cores": os.cpu_count(),
            "jax": jax.__version__, "torch": torch.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "date": datetime.date.today().isoformat()}


def config(args) -> object:
    return validate({"content": args.content, "style": args.style, "size": args.size, "init": "content",
                     "losses": "paper", "scales": [], "output": "/nonexistent", "print_every": 0,
                     "convolution": args.convolution,
                     "optimizer": {"iterations": args.iterations, "history_size": args.history}})


# ---- PyTorch's side -------------------------------------------------------------------------------
def torch_network(params: dict, deepest: str, padding: str = "zero", padding_layers: str = "all"):
    """``features(x)``: the same VGG-19 in PyTorch (NCHW), returning every conv layer's rectified
    responses up to ``deepest``; ``padding`` at every convolution or at the first only, as jaxstyle's
    ``padding`` and ``padding_layers`` (an explicit pad before an unpadded convolution)."""
    import torch
    import torch.nn.functional as F

    names = LAYER_NAMES[: LAYER_NAMES.index(deepest) + 1]
    weights = {n: (torch.from_numpy(np.ascontiguousarray(np.asarray(params[n]["kernel"]).transpose(3, 2, 0, 1))),
                   torch.from_numpy(np.array(params[n]["bias"]))) for n in names if n.startswith("conv")}
    mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)

    def conv(x, n):
        mode = layer_padding(n, padding, padding_layers)
        if mode == "zero":
            return F.conv2d(x, *weights[n], padding=1)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), *weights[n])  # torch's modes have jaxstyle's names

    def features(image):  # image (1, 3, H, W) RGB in [0, 1]
        x = image.flip(1) * 255.0 - mean
        out = {}
        for n in names:
            x = F.avg_pool2d(x, 2) if n.startswith("pool") else F.relu(conv(x, n))
            out[n] = x
        return out

    return features, weights


def torch_objective(cfg, params, content: np.ndarray, style: np.ndarray):
    """``loss(x)``: Eq. 7 with Eq. 1 and Eq. 4 as printed (``losses: paper``) or mean-normalised
    (``losses: mean``, jaxstyle's default), the config's weights, in PyTorch."""
    import torch

    deepest = max(list(cfg.content_layers) + list(cfg.style_layers), key=LAYER_NAMES.index)
    features, _ = torch_network(params, deepest, cfg.padding, cfg.padding_layers)
    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None]))  # noqa: E731

    def gram(f):
        c = f.shape[1]
        flat = f.reshape(c, -1)
        return flat @ flat.T

    with torch.no_grad():
        p = {l: v for l, v in features(nchw(content)).items() if l in cfg.content_layers}
        a = {l: gram(v) for l, v in features(nchw(style)).items() if l in cfg.style_layers}
        positions = {l: v.shape[2] * v.shape[3] for l, v in features(nchw(style)).items() if l in cfg.style_layers}

    def loss(x):
        f = features(x)
        if cfg.losses == "mean":
            lc = sum(w * torch.mean((f[l] - p[l]) ** 2) for l, w in cfg.content_layers.items())
        else:
            lc = sum(w * 0.5 * torch.sum((f[l] - p[l]) ** 2) for l, w in cfg.content_layers.items())
        ls = 0.0
        for l, w in cfg.style_layers.items():
            n, m = f[l].shape[1], f[l].shape[2] * f[l].shape[3]
            if cfg.losses == "mean":
                ls = ls + w * torch.sum((gram(f[l]) / m - a[l] / positions[l]) ** 2) / (n * n)
            else:
                ls = ls + w * torch.sum((gram(f[l]) - a[l]) ** 2) / (4.0 * n * n * m * m)
        return cfg.alpha * lc + cfg.beta * ls

    return loss, nchw(content)


def torch_lbfgs_step(loss_fn, x, iterations: int) -> int:
    """``iterations`` of ``torch.optim.LBFGS`` on ``x`` in place (history 100, tolerances -1, no line
    search): one ``step``. Returns the evaluations it made."""
    import torch

    opt = torch.optim.LBFGS([x], lr=1, max_iter=iterations, history_size=100, tolerance_grad=-1,
                            tolerance_change=-1, line_search_fn=None)
    calls = [0]

    def closure():
        calls[0] += 1
        opt.zero_grad()
        value = loss_fn(x)
        value.backward()
        return value
    opt.step(closure)
    return calls[0]


def torch_lbfgs(cfg, params, content, style, iterations: int) -> dict:
    """``torch.optim.LBFGS`` from the photograph: seconds per iteration, evaluations, losses."""
    import torch

    loss_fn, x0 = torch_objective(cfg, params, content, style)
    x = x0.clone().requires_grad_(True)
    first = float(loss_fn(x).detach())  # warm-up (allocations), and the loss both sides start from
    t0 = time.perf_counter()
    calls = torch_lbfgs_step(loss_fn, x, iterations)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        last = float(loss_fn(x))
    return {"s": seconds, "s_per_iteration": seconds / iterations, "evaluations": calls,
            "first_loss": first, "final_loss": last}


def torch_schedule(cfg) -> dict:
    """The default picture's schedule in PyTorch: every stage of jaxstyle's plan for ``cfg`` (its
    sizes and iterations), the photograph and artwork as jaxstyle prepares them at that size, its
    start image and its enlargement between stages, ``torch.optim.LBFGS`` (history 100, tolerances
    -1, no line search) for the stage's iterations. Seconds for the whole schedule (targets and
    enlargements included), evaluations, and the final loss by PyTorch's objective."""
    import torch

    params = load_vgg19(cfg.weights)
    layers = Objective(tuple(cfg.content_layers), tuple(cfg.style_layers)).layers
    final = prepare_images(cfg, layers)
    stages = plan_stages(final.content.shape[:2], cfg)
    x, calls, t0 = None, 0, time.perf_counter()
    for stage in stages:
        inputs = prepare_images(cfg, layers, shape=stage.shape)
        start = start_images(cfg, expand_variants(cfg)[:1], inputs) if x is None else \
            upsample(x.detach().numpy().transpose(0, 2, 3, 1), stage.shape, cfg.upsample)
        loss_fn, _ = torch_objective(cfg, params, np.asarray(inputs.content), np.asarray(inputs.styles[0]))
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(start, np.float32).transpose(0, 3, 1, 2)))
        calls += torch_lbfgs_step(loss_fn, x.requires_grad_(True), stage.iterations)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        last = float(loss_fn(x))
    return {"s": seconds, "evaluations": calls, "final_loss": last,
            "stages": [[*s.shape, s.iterations] for s in stages]}


def our_schedule(cfg) -> dict:
    """The same picture through the command line's path (one seed): seconds without compilation,
    evaluations, final loss."""
    r = run(cfg, hooks=RunHooks(log=lambda line: None, watch=Watchers())).report
    return {"s": r["timing"]["run_s"] - r["timing"]["compile_s"], "compile_s": r["timing"]["compile_s"],
            "evaluations": r["evaluations"], "final_loss": r["variants"][0]["final_loss"]["total"],
            "stages": [[*s["shape"], s["iterations"]] for s in r["stages"]]}


def schedule_config(args, seed: int = 0) -> object:
    """The default picture at ``--schedule`` px, one seed, as the command line runs it."""
    cfg = {"content": args.content, "style": args.style, "size": args.schedule, "seeds": [seed],
           "output": "/nonexistent", "print_every": 0, "convolution": args.convolution}
    if args.schedule_history:
        cfg["optimizer"] = {"history_size": args.schedule_history}
    return validate(cfg)


# ---- jaxstyle's side ------------------------------------------------------------------------------
def ours(cfg, params) -> dict:
    """The command line's path, one stage, without compilation: the difference between a run of
    one iteration and a run of one more than the config's, per iteration, so the work every run
    does once (targets, the initial and final losses) is left out, as PyTorch's timing leaves it."""
    def once(iterations: int) -> tuple[float, dict]:
        c = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, iterations=iterations))
        r = run(c, params, hooks=RunHooks(log=lambda line: None, watch=Watchers())).report
        return r["timing"]["run_s"] - r["timing"]["compile_s"], r

    n = cfg.optimizer.iterations
    base, r1 = once(1)
    spent, r = once(n + 1)
    return {"s": spent - base, "s_per_iteration": (spent - base) / n, "evaluations": r["evaluations"] - r1["evaluations"],
            "compile_s": r["timing"]["compile_s"], "once_s": base,
            "final_loss": r["variants"][0]["final_loss"]["total"]}


def paper_objective(cfg, params, content: np.ndarray, style: np.ndarray):
    """jaxstyle's objective with the config's weights and its targets: ``loss(x)`` and the parts."""
    o = Objective(tuple(cfg.content_layers), tuple(cfg.style_layers), cfg.pooling, losses="paper",
                  padding=cfg.padding, padding_layers=cfg.padding_layers)
    f32 = jnp.float32
    w = LossWeights(f32(cfg.alpha), f32(cfg.beta), {l: f32(v) for l, v in cfg.content_layers.items()},
                    {l: f32(v) for l, v in cfg.style_layers.items()}, {})
    t = o.targets(params, jnp.asarray(content), jnp.asarray(style))
    return lambda x: o(x, params, t, w)[0]


def first_loss(cfg, params, content: np.ndarray, style: np.ndarray) -> float:
    """jaxstyle's objective at the photograph (the loss the run starts from)."""
    return float(paper_objective(cfg, params, content, style)(jnp.asarray(content)))


def alternating(calls: dict, rounds: int, block: int = 5) -> dict:
    """Median seconds of each of ``calls`` (name -> function), timed in blocks of ``block`` calls,
    the libraries' blocks alternating for ``rounds`` rounds. Each block starts after a pause and one
    untimed call: a library's worker threads keep spinning for a while after its last call and
    would otherwise slow whichever library runs next. Ratios are of the medians."""
    times = {key: [] for key in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            time.sleep(0.3)
            fn()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(v) for key, v in times.items()}


def evaluations(cfg, params, content: np.ndarray, style: np.ndarray, repeats: int) -> dict:
    """One loss-and-gradient alone, median seconds: jaxstyle's objective jitted (no solver, no
    vmap) against PyTorch's forward and backward; what an iteration costs beyond it is the loop's."""
    grad = jax.jit(jax.value_and_grad(paper_objective(cfg, params, content, style)))
    x = jnp.asarray(content)
    loss_fn, x0 = torch_objective(cfg, params, content, style)
    xt = x0.clone().requires_grad_(True)

    def torch_eval():
        xt.grad = None
        loss_fn(xt).backward()

    out = alternating({"jaxstyle_s": lambda: jax.block_until_ready(grad(x)), "torch_s": torch_eval}, repeats, 3)
    return {**out, "ratio": out["jaxstyle_s"] / out["torch_s"]}


# ---- per layer ------------------------------------------------------------------------------------
def layer_shapes(h: int, w: int, deepest: str) -> list[tuple[str, int, int, int, int]]:
    """``(name, h, w, cin, cout)`` of every convolution up to ``deepest`` for an h x w image."""
    out = []
    for name, cin, cout in LAYERS[: LAYER_NAMES.index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        else:
            out.append((name, h, w, cin, cout))
    return out


def per_layer(params, h: int, w: int, deepest: str, repeats: int, winograd: bool = True) -> list[dict]:
    """Forward and input-gradient seconds of each convolution, both libraries; jaxstyle's by the path
    a run takes (``winograd``: ``convolution: auto``)."""
    import torch
    import torch.nn.functional as F

    rows, rng = [], np.random.default_rng(0)
    for name, lh, lw, cin, cout in layer_shapes(h, w, deepest):
        layer = prepare_kernels({name: params[name]}, [name], winograd=winograd)[name]
        k, b, fk, wg = layer["kernel"], layer["bias"], layer["flipped"], layer.get("winograd")
        x = jnp.asarray(rng.standard_normal((1, lh, lw, cin), np.float32))
        g = jnp.asarray(rng.standard_normal((1, lh, lw, cout), np.float32))
        fwd = jax.jit(lambda x: jax.nn.relu(conv3x3(x, k, b, fk, wg)))
        # The CPU input-gradient rules of vgg._conv and vgg._conv_winograd.
        path = wg is not None and winograd_pays(lh, lw, cin)
        bwd = jax.jit(lambda g: winograd_conv(g, wg, transposed=True) if path else conv_hwio(g, fk))
        tw = torch.from_numpy(np.ascontiguousarray(np.asarray(k).transpose(3, 2, 0, 1)))
        tb = torch.from_numpy(np.array(b))
        tx = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
        tg = torch.from_numpy(np.ascontiguousarray(np.asarray(g).transpose(0, 3, 1, 2)))
        calls = {"jax_fwd_s": lambda: fwd(x).block_until_ready(), "torch_fwd_s": lambda: F.relu(F.conv2d(tx, tw, tb, padding=1)),
                 "jax_grad_s": lambda: bwd(g).block_until_ready(),
                 "torch_grad_s": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tg, padding=1)}
        with torch.no_grad():
            times = alternating(calls, repeats)
        gflop = 2.0 * 9 * cin * cout * lh * lw / 1e9
        rows.append({"layer": name, "shape": f"{lw}x{lh}x{cin}->{cout}", "gflop": gflop,
                     "path": "winograd" if path else "direct",
                     **times, "fwd_ratio": times["jax_fwd_s"] / times["torch_fwd_s"],
                     "grad_ratio": times["jax_grad_s"] / times["torch_grad_s"]})
    return rows


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--content", default=str(ROOT / "examples" / "leuvenA.jpg"))
    ap.add_argument("--style", default=str(ROOT / "examples" / "starry_night.jpg"))
    ap.add_argument("--size", type=int, default=256, help="long side, px (the photograph's aspect)")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--history", type=int, default=100,
                    help="jaxstyle's L-BFGS history (PyTorch's is 100, as torch.optim.LBFGS's default)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch's threads (XLA uses every core)")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of the iteration timing")
    ap.add_argument("--repeats", type=int, default=4, help="alternating rounds of each timing (median)")
    ap.add_argument("--convolution", choices=("auto", "direct"), default="auto",
                    help="jaxstyle's convolutions: the run's default (Winograd where its table says) or XLA's only")
    ap.add_argument("--schedule", type=int, default=0, metavar="PX",
                    help="also run the default picture at PX px (its whole coarse-to-fine schedule) on both sides")
    ap.add_argument("--schedule-history", type=int, default=0,
                    help="jaxstyle's L-BFGS history in the schedule (default: the config's default)")
    ap.add_argument("--schedule-seeds", default="0", help="comma-separated seeds, one schedule each per round")
    ap.add_argument("--skip-layers", action="store_true")
    ap.add_argument("--json", help="write everything measured here")
    return ap


def iteration_rounds(args, cfg, params, content, style) -> list[dict]:
    """``--rounds`` of the same iterations on both sides, alternating."""
    rounds = []
    for r in range(args.rounds):
        t = torch_lbfgs(cfg, params, content, style, args.iterations)
        j = ours(cfg, params)
        rounds.append({"jaxstyle": j, "torch": t, "ratio": j["s_per_iteration"] / t["s_per_iteration"]})
        print(f"round {r + 1}: jaxstyle {j['s_per_iteration']:.3f} s/iteration ({j['evaluations']} evaluations, "
              f"final loss {j['final_loss']:.5g}); PyTorch {t['s_per_iteration']:.3f} s/iteration "
              f"({t['evaluations']} evaluations, final loss {t['final_loss']:.5g}); ratio {rounds[-1]['ratio']:.2f}")
    return rounds


def schedule_rounds(args, seeds: list[int]) -> list[dict]:
    """The default picture's whole schedule on both sides, per round and seed (``--schedule``)."""
    schedule = []
    for r, seed in itertools.product(range(args.rounds), seeds):
        sc = schedule_config(args, seed)
        t, j = torch_schedule(sc), our_schedule(sc)
        schedule.append({"seed": seed, "jaxstyle": j, "torch": t, "ratio": j["s"] / t["s"]})
        print(f"default picture at {args.schedule} px, seed {seed}, round {r + 1} (stages {j['stages']}): jaxstyle {j['s']:.1f} s "
              f"(+ {j['compile_s']:.1f} s compiling; {j['evaluations']} evaluations, final loss "
              f"{j['final_loss']:.4g}); PyTorch {t['s']:.1f} s ({t['evaluations']} evaluations, final loss "
              f"{t['final_loss']:.4g}); ratio {schedule[-1]['ratio']:.2f}", flush=True)
    return schedule


def print_layers(layers: list[dict]) -> None:
    print("\n| layer | shape (w x h x cin -> cout) | jaxstyle's path | jaxstyle fwd ms | PyTorch fwd ms | ratio | "
          "jaxstyle grad ms | PyTorch grad ms | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in layers:
        print(f"| {row['layer']} | {row['shape']} | {row['path']} | {1e3 * row['jax_fwd_s']:.2f} | {1e3 * row['torch_fwd_s']:.2f} | "
              f"{row['fwd_ratio']:.2f} | {1e3 * row['jax_grad_s']:.2f} | "
              f"{1e3 * row['torch_grad_s']:.2f} | {row['grad_ratio']:.2f} |")
    tot = {k: sum(r[k] for r in layers) for k in ("jax_fwd_s", "torch_fwd_s", "jax_grad_s", "torch_grad_s")}
    print(f"| all | | | {1e3 * tot['jax_fwd_s']:.1f} | {1e3 * tot['torch_fwd_s']:.1f} | "
          f"{tot['jax_fwd_s'] / tot['torch_fwd_s']:.2f} | {1e3 * tot['jax_grad_s']:.1f} | "
          f"{1e3 * tot['torch_grad_s']:.1f} | {tot['jax_grad_s'] / tot['torch_grad_s']:.2f} |")


def main() -> int:
    args = parser().parse_args()
    try:
        seeds = [int(s) for s in args.schedule_seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--schedule-seeds must be comma-separated integers, not {args.schedule_seeds!r}") from None
    try:
        import torch
    except ImportError:
        raise ConfigError('bench_torch.py needs PyTorch: pip install -e ".[bench]"') from None
    torch.set_num_threads(args.threads)
    cfg = config(args)
    params = load_vgg19()
    images = prepare_images(cfg, Objective(tuple(cfg.content_layers), tuple(cfg.style_layers)).layers)
    content, style = np.asarray(images.content), np.asarray(images.styles[0])
    h, w = content.shape[:2]
    info = machine()
    print(f"{info['cpu']}; flags {' '.join(info['flags'])}; {info['cores']} cores; jax {info['jax']}, "
          f"torch {info['torch']} ({args.threads} threads); {w} x {h} px, {args.iterations} iterations; "
          f"jaxstyle's L-BFGS history {args.history}, PyTorch's 100"
          + (f"; XLA_FLAGS={info['xla_flags']}" if info["xla_flags"] else ""))
    loss_fn, x0 = torch_objective(cfg, params, content, style)
    print(f"loss at the photograph: jaxstyle {first_loss(cfg, params, content, style):.6g}, "
          f"PyTorch {float(loss_fn(x0)):.6g}")
    rounds = iteration_rounds(args, cfg, params, content, style)
    schedule = schedule_rounds(args, seeds) if args.schedule else []
    winograd = uses_winograd(cfg)
    ev = evaluations(cfg, prepare_kernels(params, ["conv5_1"], winograd=winograd), content, style, args.repeats)
    print(f"one loss-and-gradient alone: jaxstyle {ev['jaxstyle_s']:.3f} s, PyTorch {ev['torch_s']:.3f} s, "
          f"ratio {ev['ratio']:.2f}")
    layers = [] if args.skip_layers else per_layer(params, h, w, "conv5_1", args.repeats, winograd)
    if layers:
        print_layers(layers)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "size": [w, h], "iterations": args.iterations,
                                               "history": args.history, "convolution": args.convolution,
                                               "rounds": rounds, "schedule": schedule, "evaluation": ev,
                                               "layers": layers}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
