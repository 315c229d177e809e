#!/usr/bin/env python
"""Check a print-size result: its speckle index against the style image's, and the docs picture.

The output is reduced to the style image's own size before the speckle index is taken (both at
:func:`jaxstyle.media.metrics.comparison_shape`), since at 2048 px a brush stroke is many pixels wide
and the index, a 3 x 3 median's residual, would see none of the painting's own pixel-scale grain.
Also reported: the index of the output's 640 x 640 centre at full resolution (the 1:1 crop) and
of the same crop of the style image enlarged to the output's size, for reference; and the lattice
measures (:func:`jaxstyle.media.metrics.lattice_index` and :func:`~jaxstyle.media.metrics.lattice_tail`) of
that crop and of the whole output, at 1:1, the index also per period.

    python scripts/bench/highres_check.py outputs/highres/000_seed0.png examples/starry_night.jpg \\
        --docs docs/highres.jpg
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from jaxstyle.media.images import write_docs_jpeg

from jaxstyle.media.metrics import (LATTICE_PERIODS, LATTICE_REGION, LATTICE_WINDOW, lattice_index,
                              lattice_tail, speckle_index, speckle_pair)

ROOT = Path(__file__).resolve().parents[2]

CROP = 640


def centre(im: Image.Image, side: int = CROP) -> Image.Image:
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return im.crop((left, top, left + side, top + side))


def lattice(im: Image.Image) -> dict | None:
    """The lattice index (also per period) and tail of ``im`` at 1:1 (None below the measures' size;
    the tail None below its square's)."""
    if min(im.size) < LATTICE_WINDOW:
        return None
    return {"index": round(lattice_index(im), 2),
            "tail": round(lattice_tail(im), 2) if min(im.size) >= LATTICE_REGION else None,
            "per_period": {p: round(lattice_index(im, periods=(p,)), 2) for p in LATTICE_PERIODS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", type=Path)
    ap.add_argument("style", type=Path)
    ap.add_argument("--docs", type=Path, help="write the whole result (reduced) beside its 1:1 centre crop here")
    args = ap.parse_args()
    out, style = Image.open(args.output).convert("RGB"), Image.open(args.style).convert("RGB")
    ours, theirs = speckle_pair(out, style)
    enlarged = style.resize(out.size, Image.Resampling.LANCZOS)
    print(json.dumps({"output": str(args.output), "size": out.size, "style_size": style.size,
                      "speckle_at_style_size": round(ours, 2), "style_speckle": round(theirs, 2),
                      "passes": ours <= theirs,
                      "crop_speckle_1to1": round(speckle_index(centre(out)), 2),
                      "style_enlarged_crop_speckle": round(speckle_index(centre(enlarged)), 2),
                      "lattice_crop_1to1": lattice(centre(out, min(CROP, *out.size))), "lattice_whole": lattice(out)}))
    if args.docs:
        whole = out.resize((CROP, round(CROP * out.height / out.width)), Image.Resampling.LANCZOS)
        sheet = Image.new("RGB", (2 * CROP + 16, max(whole.height, CROP)), "white")
        sheet.paste(whole, (0, 0))
        sheet.paste(centre(out), (CROP + 16, 0))
        print(f"wrote {write_docs_jpeg(sheet, args.docs)}")


if __name__ == "__main__":
    main()
