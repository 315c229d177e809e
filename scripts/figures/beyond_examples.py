#!/usr/bin/env python
"""The README's examples of what goes beyond the paper, as one labelled sheet.

    python scripts/figures/beyond_examples.py [--size 128] [--iterations 150] [--output outputs/beyond]

Style blend, style scale, the three kinds of colour preservation, a spatial mask, and total
variation / denoising against the plain result at equal iterations; every tile is one config.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from jaxstyle import load_vgg19
from jaxstyle.driver.bench import EXAMPLES
from jaxstyle.engine.progress import RunHooks
from jaxstyle.cli import run_main
from jaxstyle.engine.config import validate
from jaxstyle.media.images import contact_sheet, load_image, save_png
from jaxstyle.driver.job import run

PHOTO, ART, GRAF = (str(EXAMPLES / name) for name in ("leuvenA.jpg", "starry_night.jpg", "graf1.png"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--output", type=Path, default=Path("outputs/beyond"))
    args = ap.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    # A mask that gives the sky (top 40% of the photo) the style and leaves the street as it is.
    h, w = load_image(PHOTO, size=args.size).shape[:2]
    sky = np.zeros((h, w), np.uint8)
    sky[: int(0.4 * h)] = 255
    Image.fromarray(sky).save(args.output / "mask_sky.png")

    cases = [
        ("paper (starry night)", {}),
        ("blend starry+graffiti", {"style": [ART, GRAF], "style_blend": [0.5, 0.5]}),
        ("style scale 0.5", {"style_scale": 0.5}),
        ("style scale 2", {"style_scale": 2.0}),
        ("colours: luminance only", {"preserve_colors": "luminance"}),
        ("colours: histogram", {"preserve_colors": "histogram"}),
        ("colours: chroma post", {"preserve_colors": "chroma"}),
        ("mask: style in the sky", {"masks": [str(args.output / "mask_sky.png")]}),
        ("tv weight 2", {"terms": {"tv": 2.0}}),
        ("median denoise 3", {"denoise": 3}),
    ]
    params = load_vgg19()
    images, labels, t0 = [], [], time.perf_counter()
    for label, overrides in cases:
        cfg = validate({"content": PHOTO, "style": ART, "size": args.size, "beta": 1e5, "seeds": [0],
                        "losses": "paper", "noise": "uniform", "scales": [],
                        "print_every": 0, "optimizer": {"iterations": args.iterations}, **overrides})
        images.append(run(cfg, params, hooks=RunHooks(log=lambda s: None)).images[0])
        labels.append(label)
        print(f"{label}: done", flush=True)
    wall = time.perf_counter() - t0
    title = (f"Beyond the paper: leuvenA x starry night, alpha/beta 1e-5, {args.size} px, "
             f"{args.iterations} L-BFGS iterations each, {wall:.0f} s for all")
    path = save_png(contact_sheet(images, labels, columns=5, title=title), args.output / "beyond.png")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
