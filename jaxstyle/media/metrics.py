"""Image measures used to judge results: the speckle index, the straight-line index, the lattice
index of a 1:1 crop and the seam ratio of tiled runs.

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
    a = np.asarray(image)
    # 8-bit arrays (a file read with numpy) are levels already; read as floats in [0, 1] they would
    # clip to a black-and-white picture of the zeros.
    return Image.fromarray(a if a.dtype == np.uint8 else to_uint8(a))


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


#: The lattice periods :func:`lattice_index` looks for, in pixels (VGG's pooling grid and its multiples).
LATTICE_PERIODS = (2, 4, 8, 16)
#: :func:`lattice_index`'s window side: the spectrum is averaged over windows of this size.
LATTICE_WINDOW = 128
#: :func:`lattice_windows`' square side: two windows, so each square's spectrum averages 9.
LATTICE_REGION = 256
#: The share of a crop's squares :func:`lattice_tail` averages: its worst tenth.
LATTICE_TAIL = 0.1


def lattice_index(image: np.ndarray | Image.Image, periods: Sequence[int] = LATTICE_PERIODS,
                  window: int = LATTICE_WINDOW) -> float:
    """A regular grid of a few pixels' period (``periods``) in a 1:1 crop: spectral energy at those
    periods against the spectrum around them.

    The luminance (Rec. 601, 8-bit levels) is cut into ``window`` x ``window`` squares overlapping
    by half; each, minus its mean and times a 2-D Hann window, gives a power spectrum, and the
    spectra are averaged (Welch's method: noise averages out, a lattice's peaks stay). A lattice of
    period p puts energy at the bins (v, u) with v in {0, +-window/p} and u in {0, window/p}, not
    both 0. At each such bin: the mean power of the bins at most 1 away over the mean power of the
    bins 3 to 5 away (Chebyshev distance, wrapped; for a bin on an axis, along that axis only),
    minus 1, floored at 0. Per period the largest of its bins; the index is the mean over the
    periods. Noise and texture score near 0 (their spectrum is locally flat or falls smoothly); a
    grid scores its peaks' height above the background, whatever its direction.

    ``image``: ``(H, W, 3)`` floats in [0, 1] (clipped, rounded to 8 bits), 8-bit levels
    (``uint8``) or a Pillow image, at least ``window`` px on each side.
    """
    return _index(_luma(image, window), periods, window)


def lattice_windows(image: np.ndarray | Image.Image, region: int = LATTICE_REGION,
                    periods: Sequence[int] = LATTICE_PERIODS, window: int = LATTICE_WINDOW) -> np.ndarray:
    """:func:`lattice_index` of every ``region`` x ``region`` square of a 1:1 crop, the squares
    overlapping by half: ``(rows, cols)``. A grid confined to part of a crop (a dark, flat area) is
    diluted in the whole crop's averaged spectrum; in its own squares it is not. Each square's
    spectrum still averages 9 windows (``region`` = 2 ``window``), so noise stays near 0."""
    y = _luma(image, region)
    hop = region // 2
    return np.array([[_index(y[r:r + region, c:c + region], periods, window)
                      for c in range(0, y.shape[1] - region + 1, hop)]
                     for r in range(0, y.shape[0] - region + 1, hop)])


def lattice_tail(image: np.ndarray | Image.Image, fraction: float = LATTICE_TAIL, region: int = LATTICE_REGION,
                 periods: Sequence[int] = LATTICE_PERIODS, window: int = LATTICE_WINDOW) -> float:
    """The mean :func:`lattice_windows` score of the worst ``fraction`` of a crop's squares (at
    least one): how strong a lattice is where it is strongest. ``image`` as :func:`lattice_index`."""
    scores = np.sort(lattice_windows(image, region, periods, window).ravel())[::-1]
    return float(scores[:max(1, int(round(fraction * scores.size)))].mean())


def _luma(image: np.ndarray | Image.Image, window: int) -> np.ndarray:
    """Rec. 601 luminance in 8-bit levels ``(H, W)``, refused below ``window`` px a side."""
    y = np.asarray(_pil_rgb(image), np.float64) @ np.array([0.299, 0.587, 0.114])
    if min(y.shape) < window:
        raise ValueError(f"the lattice measures need at least {window} x {window} px, got {y.shape[1]} x {y.shape[0]}")
    return y


def _index(y: np.ndarray, periods: Sequence[int], window: int) -> float:
    """:func:`lattice_index` of the luminance ``y`` ``(H, W)``: Welch's average, then the peaks."""
    hop = window // 2
    power = np.mean([_power(y[r:r + window, c:c + window]) for r in range(0, y.shape[0] - window + 1, hop)
                     for c in range(0, y.shape[1] - window + 1, hop)], axis=0)
    return _peak_score(power, periods)


def _power(square: np.ndarray) -> np.ndarray:
    """The power spectrum of one square, its mean removed and a 2-D Hann taper applied."""
    n = square.shape[0]
    return np.abs(np.fft.fft2((square - square.mean()) * np.outer(np.hanning(n), np.hanning(n)))) ** 2


def _peak_score(power: np.ndarray, periods: Sequence[int]) -> float:
    """The mean over ``periods`` of the highest peak-over-ring ratio minus 1 at a period's bins
    (see :func:`lattice_index`)."""
    window = power.shape[0]
    d = np.arange(-5, 6)
    scores = []
    for p in periods:
        f = window // p
        best = 0.0
        for v, u in {(v, u) for v in (0, f, -f) for u in (0, f)} - {(0, 0)}:
            # On an axis the neighbourhood runs along that axis only: whatever is constant along
            # rows or columns (a ramp, a horizon) puts its energy on the axes, not around them.
            dv, du = (np.zeros(1, int) if v == 0 else d), (np.zeros(1, int) if u == 0 else d)
            patch = power[np.ix_((v + dv) % window, (u + du) % window)]
            cheb = np.maximum(np.abs(dv)[:, None], np.abs(du)[None, :])
            peak, ring = patch[cheb <= 1].mean(), patch[(cheb >= 3) & (cheb <= 5)].mean()
            best = max(best, peak / max(ring, 1e-12) - 1.0)
        scores.append(best)
    return float(np.mean(scores))


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


def ssim_luminance(a: np.ndarray, b: np.ndarray) -> float:
    """The mean SSIM of two images' luminance (8 x 8 windows, no overlap; Wang et al. 2004's constants)."""
    ya, yb = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2] for x in (a, b))
    h, w = (ya.shape[0] // 8) * 8, (ya.shape[1] // 8) * 8
    blocks = lambda y: y[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 64)  # noqa: E731
    pa, pb = blocks(ya), blocks(yb)
    ma, mb = pa.mean(1), pb.mean(1)
    va, vb = pa.var(1), pb.var(1)
    cov = ((pa - ma[:, None]) * (pb - mb[:, None])).mean(1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float(np.mean((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))))
