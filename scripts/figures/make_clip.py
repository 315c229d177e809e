"""Make the sample clip, examples/leuven_pan.mp4: a real photograph filmed by a virtual camera.

The camera pans across examples/leuvenA.jpg and slowly zooms in, while a disc cut from
examples/fruits.jpg rolls across the street, so the clip has camera motion, an object moving
against it and the occlusions that makes. Deterministic: the same command writes the same frames.

    python scripts/figures/make_clip.py [--frames 48] [--fps 12] [--size 256x192] [-o examples/leuven_pan.mp4]
    python scripts/figures/make_clip.py --photo home.jpg --still -o examples/home_still.mp4   # the second clip
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from jaxstyle.media.video import write_mp4

ROOT = Path(__file__).resolve().parents[2]


def frame(photo: Image.Image, disc: Image.Image, mask: Image.Image, t: float, size: tuple[int, int],
          still: bool = False) -> np.ndarray:
    """The view at time t in [0, 1]: a window of the photograph (panning right, zooming in 15 %;
    with ``still``, the whole photograph from a camera that does not move), with the disc pasted
    along a path from left to right, turning as it goes."""
    w, h = size
    pw, ph = photo.size
    zoom = 1.0 if still else 1.0 + 0.15 * t
    share = 1.0 if still else 0.62
    vw, vh = share * pw / zoom, share * ph / zoom
    cx = 0.5 * pw if still else 0.36 * pw + 0.28 * pw * t
    cy = 0.5 * ph if still else 0.55 * ph
    box = (cx - vw / 2, cy - vh / 2, cx + vw / 2, cy + vh / 2)
    view = photo.transform((w, h), Image.Transform.EXTENT, box, Image.Resampling.BICUBIC)
    d = int(0.3 * h)
    turned_disc = disc.rotate(-300 * t, Image.Resampling.BICUBIC).resize((d, d), Image.Resampling.LANCZOS)
    turned_mask = mask.rotate(-300 * t, Image.Resampling.BICUBIC).resize((d, d), Image.Resampling.LANCZOS)
    x = int(round(-d + (w + d) * t))
    y = int(round(0.62 * h - 0.12 * h * np.sin(np.pi * t)))
    view.paste(turned_disc, (x, y), turned_mask)
    return np.asarray(view, np.float32) / 255.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--size", default="256x192")
    ap.add_argument("-o", "--output", default=str(ROOT / "examples" / "leuven_pan.mp4"))
    ap.add_argument("--photo", default="leuvenA.jpg", help="a photograph in examples/")
    ap.add_argument("--still", action="store_true", help="a camera that does not move: only the disc does")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    photo = Image.open(ROOT / "examples" / args.photo).convert("RGB")
    fruit = Image.open(ROOT / "examples" / "fruits.jpg").convert("RGB")
    side = 200
    disc = fruit.crop((40, 150, 40 + side, 150 + side))
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, side - 1, side - 1), fill=255)
    frames = np.stack([frame(photo, disc, mask, i / (args.frames - 1), (w, h), args.still) for i in range(args.frames)])
    write_mp4(frames, args.output, args.fps, crf=20)
    print(f"wrote {args.output}: {args.frames} frames at {w}x{h} px, {args.fps:g} fps, "
          f"{Path(args.output).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
