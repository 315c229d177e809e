#!/usr/bin/env python
"""Before and after, where the lattice was worst: a docs picture for a change against the lattice.

Each pair is two renders of the same config at the same size (``before.png:after.png``). The
256 x 256 square of ``before`` with the highest lattice score (:func:`jaxstyle.media.metrics.lattice_windows`)
is found, and the 160 x 160 pixels at its centre are shown from both images, enlarged 2 x without
smoothing (a JPEG at 1:1 would blur a 2-px grid away), then the 2-px grid each holds there, alone
and amplified (:func:`grid_part`): one row per pair, before left of after.

    python scripts/figures/lattice_sheet.py base512.png:new512.png base1024.png:new1024.png \\
        --out docs/lattice.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from jaxstyle.media.images import write_docs_jpeg

from jaxstyle.media.metrics import LATTICE_REGION, lattice_windows

ROOT = Path(__file__).resolve().parents[2]

CROP, ZOOM, GAP, GAIN = 160, 2, 12, 20.0


def worst_crop(before: Image.Image) -> tuple[int, int]:
    """``(left, top)`` of the :data:`CROP` px at the centre of ``before``'s worst square."""
    scores = lattice_windows(before)
    r, c = np.unravel_index(int(np.argmax(scores)), scores.shape)
    hop, inset = LATTICE_REGION // 2, (LATTICE_REGION - CROP) // 2
    return int(c) * hop + inset, int(r) * hop + inset


def grid_part(image: Image.Image, sigma: float = 6.0) -> np.ndarray:
    """The part of the luminance (8-bit levels, ``(H, W)``) that is a 2-px grid in phase over tens
    of pixels, as the lattice term sees it: for columns, rows and the chequer, the 2-px period
    isolated ([-1, 2, -1] / 4), its sign flipped to zero frequency, blurred by a Gaussian of
    ``sigma`` px and flipped back; the three summed."""
    y = np.asarray(image, np.float64) @ np.array([0.299, 0.587, 0.114])
    r = int(3 * sigma)
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    blur = lambda a, axis: np.apply_along_axis(lambda v: np.convolve(v, g, mode="same"), axis, a)  # noqa: E731
    hx = lambda a: (2 * a - np.roll(a, 1, 1) - np.roll(a, -1, 1)) / 4  # noqa: E731
    hy = lambda a: (2 * a - np.roll(a, 1, 0) - np.roll(a, -1, 0)) / 4  # noqa: E731
    sx = (-1.0) ** np.arange(y.shape[1])[None, :]
    sy = (-1.0) ** np.arange(y.shape[0])[:, None]
    return sum(blur(blur(a * s, 0), 1) * s for a, s in ((hx(y), sx), (hy(y), sy), (hx(hy(y)), sx * sy)))


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="before.png:after.png, the same size")
    ap.add_argument("--out", type=Path, required=True, help="the JPEG to write")
    args = ap.parse_args()
    side = CROP * ZOOM
    rows = []
    for pair in args.pairs:
        if pair.count(":") != 1:
            fail(f"a pair is before.png:after.png, not {pair!r}")
        try:
            before, after = (Image.open(p).convert("RGB") for p in pair.split(":"))
        except OSError as e:
            fail(f"{pair}: {e}")
        if before.size != after.size or min(before.size) < LATTICE_REGION:
            fail(f"{pair}: both images must have the same size, at least {LATTICE_REGION} px a side")
        left, top = worst_crop(before)
        box = (left, top, left + CROP, top + CROP)
        crops = [im.crop(box) for im in (before, after)]
        grids = [Image.fromarray(np.clip(128 + GAIN * grid_part(c), 0, 255).astype(np.uint8)).convert("RGB")
                 for c in crops]
        rows.append((before.width, [im.resize((side, side), Image.Resampling.NEAREST) for im in crops + grids]))
        print(json.dumps({"pair": pair, "size": before.size, "crop": box}))
    sheet = Image.new("RGB", (4 * side + 3 * GAP, len(rows) * (side + GAP) - GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (width, row) in enumerate(rows):
        labels = ("before", "after", f"before: 2-px grid x{GAIN:g}", f"after: 2-px grid x{GAIN:g}")
        for j, (im, label) in enumerate(zip(row, labels)):
            sheet.paste(im, (j * (side + GAP), i * (side + GAP)))
            draw.text((j * (side + GAP) + 6, i * (side + GAP) + 4), f"{width} px, {label}, {ZOOM}x",
                      fill="white" if j < 2 else "black")
    print(f"wrote {write_docs_jpeg(sheet, args.out)}")


if __name__ == "__main__":
    main()
