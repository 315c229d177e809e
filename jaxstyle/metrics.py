"""Image measures used to judge results: the speckle index.

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
