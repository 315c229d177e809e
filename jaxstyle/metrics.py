"""Image measures used to judge results: the speckle index, the straight-line index and the seam
ratio of tiled runs.

The paper names low-level noise as a limit of its method. A low loss does not rule it out, so
results are checked with a number that sees it: pixel-scale noise scores high, strokes and edges
a few pixels wide score low.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from .images import fit_shape, to_uint8


def _pil_rgb(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.fromarray(to_uint8(image))


def speckle_index(image: np.ndarray | Image.Image) -> float:
    """Mean over pixels and channels of the squared difference, in 8-bit levels, between an image
    and its own 3 x 3 median filter (Pillow's ``MedianFilter(3)`` on the RGB image).

    ``image``: ``(H, W, 3)`` floats in [0, 1] (clipped, rounded to 8 bits) or a Pillow image.
    """
    pil = _pil_rgb(image)
    a = np.asarray(pil, np.float64)
    b = np.asarray(pil.filter(ImageFilter.MedianFilter(3)), np.float64)
    return float(np.mean(np.square(a - b)))


#: How many of the strongest row or column boundaries :func:`straight_line_index` averages.
LINE_COUNT = 5


def straight_line_index(image: np.ndarray | Image.Image) -> float:
    """Long row- or column-aligned edges, which texture does not make, in 8-bit levels.

    For every boundary between two neighbouring rows, the absolute value of the mean over the row
    of the luminance difference across it (Rec. 601 luminance of the 8-bit RGB image); the same
    for columns; the mean of the :data:`LINE_COUNT` largest of all. A texture's differences cancel
    along a row; an edge running across the picture (a frame line, a band) does not.

    ``image``: ``(H, W, 3)`` floats in [0, 1] (clipped, rounded to 8 bits) or a Pillow image.
    """
    a = np.asarray(_pil_rgb(image), np.float64)
    y = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    rows = np.abs(np.diff(y, axis=0).mean(axis=1))
    cols = np.abs(np.diff(y, axis=1).mean(axis=0))
    both = np.sort(np.concatenate([rows, cols]))[::-1]
    return float(both[:LINE_COUNT].mean()) if both.size else 0.0


def comparison_shape(output_shape: Sequence[int], style_shape: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` at which an output and its style image are compared: the output's own
    size, or, when its long side exceeds the style image's, the output's shape reduced to the
    style image's long side."""
    h, w = int(output_shape[0]), int(output_shape[1])
    limit = max(int(style_shape[0]), int(style_shape[1]))
    return (h, w) if max(h, w) <= limit else fit_shape((h, w), limit)


def speckle_pair(output: np.ndarray | Image.Image, style: np.ndarray | Image.Image) -> tuple[float, float]:
    """``(output's speckle index, style image's)``, both at :func:`comparison_shape`.

    The output is reduced (Lanczos) where it is larger; the style image, at its own size, is
    resized (Lanczos) to that shape.
    """
    out, sty = _pil_rgb(output), _pil_rgb(style)
    h, w = comparison_shape((out.height, out.width), (sty.height, sty.width))
    if (out.height, out.width) != (h, w):
        out = out.resize((w, h), Image.Resampling.LANCZOS)
    if (sty.height, sty.width) != (h, w):
        sty = sty.resize((w, h), Image.Resampling.LANCZOS)
    return speckle_index(out), speckle_index(sty)


#: Lines are compared only with lines at the same position modulo the network's total stride: its
#: pooling leaves a periodic texture (most visibly every second line alternates strong and weak),
#: and tile borders all fall on even positions, so a plain average would mistake it for seams.
SEAM_PERIOD = 16


def seam_ratio(image: np.ndarray, rows: Sequence[int], cols: Sequence[int]) -> float:
    """Gradient energy across tile borders divided by that across other lines of the same phase.

    ``image``: ``(H, W, C)``. The energy of line r is the mean over the image of the squared colour
    difference between rows r-1 and r (columns likewise); a border at r is that line. Each border
    is compared with every non-border line r' = r (mod ``SEAM_PERIOD``) of the same axis. 1 means
    the borders look like any other line; a visible seam shows as a ratio well above 1. NaN when
    there is no border (or nothing to compare it with).
    """
    image = np.asarray(image, np.float64)
    on, ref = 0.0, 0.0
    for axis, borders in ((0, rows), (1, cols)):
        diff = np.square(np.diff(image, axis=axis)).sum(-1)
        energy = diff.mean(axis=1 - axis)  # energy[r - 1] is line r
        lines = np.arange(1, energy.size + 1)
        border = np.isin(lines, list(borders))
        for r in borders:
            same = ~border & (lines % SEAM_PERIOD == r % SEAM_PERIOD)
            if same.any():
                on += energy[r - 1]
                ref += energy[same].mean()
    return float(on / ref) if ref > 0 else float("nan")
