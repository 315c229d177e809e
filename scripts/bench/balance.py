#!/usr/bin/env python
"""The weighting on a varied set of pairs: how much of each end a result keeps, fixed against auto.

For each photograph/artwork pair and size, one command-line run of the defaults with
``sweep: {weighting: [fixed, auto]}`` (the paper's weighting and the default in one batch, seed 0;
``--weightings auto`` runs the default alone), and for each result:

* the content fraction ``C(out) / C(art)``: its content loss over the artwork's own (Eq. 1,
  mean-normalised, the run's layers), and the style fraction ``S(out) / S(photo)``: its style loss
  over the photograph's, both on the artwork as the run uses it (trimmed, at the photograph's size);
  a result that keeps the photograph has a small content fraction, one that took the style a small
  style fraction;
* a measure the rule does not use: the content fraction at ``conv3_2`` and the luminance SSIM
  against the photograph;
* the speckle index against the artwork's, and the yardstick (content + 10 x style of the
  mean-normalised Gram losses with the default layers, :func:`jaxstyle.driver.lab.yardstick`).

    python scripts/bench/balance.py                                  # every pair, 128 and 256 px
    python scripts/bench/balance.py --sizes 512 --weightings auto --pairs leuvenA.jpg:starry_night.jpg
    python scripts/bench/balance.py --json outputs/balance.json --sheet outputs/balance.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxstyle import load_vgg19
from jaxstyle.cli import run_main
from jaxstyle.driver.bench import EXAMPLES, QUALITY_PAIR_TEXTS, parse_pairs
from jaxstyle.driver.job import run
from jaxstyle.driver.lab import yardstick
from jaxstyle.engine.balance import endpoints, unit_weights
from jaxstyle.engine.config import validate
from jaxstyle.engine.pipeline import prepare
from jaxstyle.engine.progress import RunHooks
from jaxstyle.media.images import contact_sheet, load_image, save_png
from jaxstyle.media.metrics import speckle_pair, ssim_luminance

#: Debian's opencv-doc samples (``apt-get install opencv-doc``).
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
#: The artworks that are not dense paintings, from Debian's opencv-doc samples (examples/SOURCES.md);
#: the last two were kept out of the rule's design.
VARIED = ("squirrel_cls.jpg:smarties.png", "leuvenA.jpg:opencv-logo.png", "home.jpg:pic3.png",
          "home.jpg:HappyFish.jpg", "fruits.jpg:pic5.png", "butterfly.jpg:text_defocus.jpg")


def resolve(text: str, data: Path) -> str:
    """``photo:artwork`` with each name not in examples/ looked for in ``data``."""
    return ":".join(str(data / n) if not (EXAMPLES / n).is_file() and (data / n).is_file() else n
                    for n in text.split(":"))


def ends(cfg, params, layers: dict | None = None) -> tuple[float, float, Callable]:
    """``(C_art, S_photo, content_of)`` at the final size, with the run's layers (or ``layers`` for
    the content): the artwork as the run uses it; ``content_of(image)`` an image's content loss."""
    raw = {**cfg.source, "scales": [], "sweep": {}, "output": "/nonexistent", "weighting": "fixed"}
    if layers is not None:
        raw["content_layers"] = layers
    setup = prepare(validate(raw), params)
    inputs = setup.final_inputs
    grams = setup.grams_fn(setup.params, [jnp.asarray(a) for a in inputs.styles])
    photo = jnp.asarray(inputs.content)
    targets = setup.targets_fn(setup.params, photo, grams, setup.cfg.blend, None)
    weights = unit_weights(setup.weights, 0)
    c_art, s_photo = endpoints(setup.loss_fn, setup.params, targets, weights, photo,
                               [jnp.asarray(a) for a in inputs.styles], setup.cfg.blend)
    parts = lambda image: setup.loss_fn(jnp.asarray(image, jnp.float32), setup.params, targets, weights)  # noqa: E731
    return c_art, s_photo, parts


def measure_pair(name: str, content: Path, style: Path, size: int, params,
                 weightings: list[str]) -> tuple[list[dict], np.ndarray]:
    """The weightings of one pair at one size, in one batch: their rows and images."""
    cfg = validate({"content": str(content), "style": str(style), "size": size, "print_every": 0,
                    "output": "/nonexistent", "weighting": weightings[0],
                    "sweep": {"weighting": weightings} if len(weightings) > 1 else {}})
    t0 = time.perf_counter()
    result = run(cfg, params, RunHooks(log=lambda line: None))
    seconds = time.perf_counter() - t0
    c_art, s_photo, parts = ends(cfg, params)
    c3_art, _, parts3 = ends(cfg, params, {"conv3_2": 1.0})
    photo = np.asarray(prepare(validate({**cfg.source, "sweep": {}}), params).final_inputs.photo)
    stick = yardstick(cfg, params, result.images)
    rows = []
    for i, v in enumerate(result.variants):
        image = result.images[i]
        p, p3 = parts(image), parts3(image)
        with Image.open(style) as art:
            speckle, speckle_art = speckle_pair(image, art)
        rows.append({"pair": name, "size": size, "weighting": v.weighting,
                     "content_fraction": round(float(p["content"]) / c_art, 4),
                     "style_fraction": round(float(p["style"]) / s_photo, 4),
                     "conv3_2_fraction": round(float(p3["content"]) / c3_art, 4),
                     "ssim": round(ssim_luminance(image, photo), 4),
                     "speckle": round(speckle, 1), "speckle_art": round(speckle_art, 1),
                     "yardstick": round(float(stick["content"][i] + 10 * stick["style"][i]), 4),
                     "factor": [s["style_factor"][i] for s in result.report["stages"]],
                     "trim": result.report["style_trim"], "batch_s": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows, result.images


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=[*QUALITY_PAIR_TEXTS, *VARIED], metavar="PHOTO:ARTWORK",
                    help="names in examples/ or in --data, or paths")
    ap.add_argument("--data", type=Path, default=OPENCV_DATA,
                    help="where names not in examples/ are looked for (Debian's opencv-doc samples)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--weightings", nargs="+", choices=("fixed", "auto"), default=["fixed", "auto"],
                    help="in one batch; `auto` alone halves the batch where the fixed column is not wanted")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--sheet", type=Path, help="write a sheet of photo, artwork and each weighting's result per pair here")
    args = ap.parse_args()
    params = load_vgg19()
    rows, tiles, labels = [], [], []
    for name, content, style in parse_pairs([resolve(text, args.data) for text in args.pairs]):
        for size in args.sizes:
            got, images = measure_pair(name, content, style, size, params, list(dict.fromkeys(args.weightings)))
            rows += got
            if size == max(args.sizes):
                shape = images.shape[1:3]
                tiles += [load_image(p, shape=shape) for p in (content, style)] + list(images)  # as runs read them
                labels += [content.name, style.name] + [f"{r['weighting']}: c {r['content_fraction']:.2f}, "
                                                        f"s {r['style_fraction']:.2f}" for r in got]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": platform.node(),
                                         "device": jax.devices()[0].device_kind, "rows": rows}, indent=2) + "\n")
    if args.sheet:
        save_png(contact_sheet(tiles, labels, columns=2 + len(set(args.weightings)), tile=256), args.sheet)
    return 0


if __name__ == "__main__":
    run_main(main)
