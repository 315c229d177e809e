#!/usr/bin/env python
"""The default weights of the correspondence losses, measured by whole runs (docs/loss-lab.md).

* A style loss (``mrf``, ``remd``, ``neighbours``): its weight makes the default alpha/beta strike the Gram loss's
  balance, the rule the other style losses were calibrated by: the same final content loss (the
  yardstick's, Eq. 1 mean-normalised) as the Gram loss's default run of the same pair. The loss is
  run at several beta in one batch, and log content loss is interpolated against log beta.
* The self-similarity content loss: that rule is circular (the yardstick's content loss is the one
  it replaces), so the rule turns round: with the Gram style loss, the term not replaced, its
  weight makes the run end at the Gram style loss of the default run (the paper's content loss):
  the content term then holds the image back from the artwork as strongly. The run is made at
  several alpha in one batch, and log style loss interpolated against log alpha. The luminance
  SSIM against the photograph and the conv3_2 content loss, which neither loss optimises, are
  printed beside it.

    python scripts/bench/loss_weights.py --kinds mrf remd neighbours self_similarity
    python scripts/bench/loss_weights.py --kinds mrf --pair fruits.jpg:starry_night.jpg --size 128
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from jaxstyle import load_vgg19
from jaxstyle.cli import run_main
from jaxstyle.driver.bench import parse_pairs
from jaxstyle.driver.job import run
from jaxstyle.driver.lab import measure, yardstick
from jaxstyle.engine.config import validate
from jaxstyle.engine.pipeline import prepare
from jaxstyle.engine.progress import RunHooks
from jaxstyle.media.images import contact_sheet, save_png
from jaxstyle.media.metrics import ssim_luminance
from jaxstyle.model.losses import Objective
from jaxstyle.model.style_losses import DEFAULT_CONTENT_WEIGHTS, DEFAULT_WEIGHTS


def interpolate(xs: list[float], ys: list[float], target: float) -> float:
    """The x where the piecewise-linear curve through ``(xs, ys)`` (sorted by x) reaches ``target``,
    extrapolated from the nearest end segment where it does not."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    for i in range(len(xs) - 1):
        lo, hi = sorted((ys[i], ys[i + 1]))
        if lo <= target <= hi and ys[i] != ys[i + 1]:
            return float(xs[i] + (target - ys[i]) * (xs[i + 1] - xs[i]) / (ys[i + 1] - ys[i]))
    i = 0 if abs(target - ys[0]) < abs(target - ys[-1]) else len(xs) - 2
    return float(xs[i] + (target - ys[i]) * (xs[i + 1] - xs[i]) / (ys[i + 1] - ys[i]))


def batch(raw: dict, params) -> tuple[np.ndarray, object, float]:
    """One run of ``raw``: its images, config and seconds."""
    cfg = validate({**raw, "output": "/nonexistent", "print_every": 0})
    t0 = time.perf_counter()
    result = run(cfg, params, RunHooks(log=lambda line: None))
    return result.images, cfg, time.perf_counter() - t0


def structure(cfg, params, images: np.ndarray) -> tuple[list[float], list[float]]:
    """Each image's luminance SSIM against the photograph and its conv3_2 content loss."""
    photo = np.asarray(prepare(validate({**cfg.source, "sweep": {}}), params).final_inputs.photo)
    c32 = measure(cfg, params, images, Objective(("conv3_2",), (), losses="mean"), {},
                  content_layers={"conv3_2": 1.0})["content"]
    return [ssim_luminance(im, photo) for im in images], [float(c) for c in c32]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", choices=("mrf", "remd", "neighbours", "self_similarity"), default=["mrf", "remd"])
    ap.add_argument("--pair", default="leuvenA.jpg:starry_night.jpg", metavar="PHOTO:ARTWORK")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--factors", type=float, nargs="+", default=[0.3, 1.0, 3.0],
                    help="beta (a style loss) or alpha (the content loss) times these, in one batch")
    ap.add_argument("--sheet", type=Path, help="write the results (the Gram reference first) as a labelled sheet here")
    args = ap.parse_args()
    tiles, labels = [], []
    params = load_vgg19()
    (_, content, style), = parse_pairs([args.pair])
    base = {"content": str(content), "style": str(style), "size": args.size}
    ref, cfg, seconds = batch(base, params)
    ref_stick = yardstick(cfg, params, ref)
    ref_content, ref_style = float(ref_stick["content"][0]), float(ref_stick["style"][0])
    ref_ssim, ref_c32 = (v[0] for v in structure(cfg, params, ref))
    tiles.append(ref[0])
    labels.append(f"gram: content {ref_content:.3f}, style {ref_style:.4f}")
    print(json.dumps({"reference": "gram + features", "content_loss": round(ref_content, 4),
                      "style_loss": round(ref_style, 4),
                      "ssim": round(ref_ssim, 4), "conv3_2": round(ref_c32, 4), "s": round(seconds, 1)}), flush=True)
    for kind in args.kinds:
        if kind == "self_similarity":
            alphas = [cfg.alpha * f for f in args.factors]
            images, c, seconds = batch({**base, "content_loss": kind, "sweep": {"alpha": alphas}}, params)
            ssim, c32 = structure(c, params, images)
            styles = list(yardstick(c, params, images)["style"])
            at = np.exp(interpolate(list(np.log(alphas)), list(np.log(styles)), np.log(ref_style))) / cfg.alpha
            weight = DEFAULT_CONTENT_WEIGHTS[kind] * at
            rows = {"alpha": alphas, "style_loss": styles, "ssim": ssim, "conv3_2": c32}
            labels += [f"{kind}, alpha {a:g}: style {v:.4f}" for a, v in zip(alphas, styles)]
        else:
            betas = [cfg.beta * f for f in args.factors]
            images, c, seconds = batch({**base, "style_loss": kind, "sweep": {"beta": betas}}, params)
            contents = list(yardstick(c, params, images)["content"])
            at = np.exp(interpolate(list(np.log(betas)), list(np.log(contents)), np.log(ref_content))) / cfg.beta
            weight = DEFAULT_WEIGHTS[kind] * at
            rows = {"beta": betas, "content_loss": contents}
            labels += [f"{kind}, beta {b:g}: content {v:.3f}" for b, v in zip(betas, contents)]
        tiles += list(images)
        print(json.dumps({"kind": kind, **{k: [round(float(x), 4) for x in v] for k, v in rows.items()},
                          "weight_now": (DEFAULT_CONTENT_WEIGHTS if kind == "self_similarity" else DEFAULT_WEIGHTS)[kind],
                          "weight": round(float(weight), 4), "s": round(seconds, 1)}), flush=True)
    if args.sheet:
        save_png(contact_sheet(tiles, labels, columns=4, tile=256), args.sheet)
    return 0


if __name__ == "__main__":
    run_main(main)
