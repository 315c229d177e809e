"""The speckle index on made images whose answer is known."""

from __future__ import annotations

import numpy as np
from PIL import Image

from jaxstyle.metrics import comparison_shape, speckle_index, speckle_pair


def test_isolated_impulses_score_their_energy_and_smooth_images_nothing():
    # A flat image with single-pixel impulses 3 px apart (away from the border): the 3 x 3 median
    # of every window is the background, so only the impulse pixels differ, by exactly d levels.
    img = np.full((30, 40, 3), 100, np.uint8)
    ys, xs = np.meshgrid(np.arange(3, 27, 3), np.arange(3, 37, 3), indexing="ij")
    d = np.array([50, 30, 20])
    img[ys, xs] += d.astype(np.uint8)
    expected = ys.size * np.sum(d**2) / (30 * 40 * 3)
    assert abs(speckle_index(Image.fromarray(img)) - expected) < 1e-9
    assert speckle_index(Image.fromarray(np.full((30, 40, 3), 100, np.uint8))) == 0.0
    # Strokes a few pixels wide survive the median filter: a 3 px bar differs from its median only
    # at its four corners (5 of 9 window pixels are background there), by 100 levels.
    bar = np.full((30, 40, 3), 100, np.uint8)
    bar[10:13, 5:35] = 200
    assert abs(speckle_index(Image.fromarray(bar)) - 4 * 3 * 100**2 / (30 * 40 * 3)) < 1e-9


def test_gaussian_noise_scores_in_proportion_to_its_variance():
    # Noise of std s on mid-grey: the index is about c * s^2 with the same c at any s (pixel-scale
    # noise, no clipping at these levels), and floats in [0, 1] are read as 8-bit levels.
    rng = np.random.default_rng(0)
    scores = []
    for s in (4.0, 8.0, 16.0):
        img = np.clip(128 + rng.normal(0, s, (200, 200, 3)), 0, 255).round() / 255
        scores.append(speckle_index(img) / s**2)
    assert max(scores) / min(scores) < 1.1
    assert 0.8 < scores[0] < 1.6  # (x - median of 9) has variance 1 + ~0.17 - a covariance term


def test_comparison_size_is_the_smaller_and_the_style_is_resized_to_it():
    assert comparison_shape((384, 512), (600, 752)) == (384, 512)
    assert comparison_shape((2048, 2048), (600, 752)) == (752, 752)
    rng = np.random.default_rng(1)
    noisy = Image.fromarray((rng.random((64, 80, 3)) * 255).astype(np.uint8))
    flat = Image.fromarray(np.full((300, 400, 3), 7, np.uint8))
    out_score, style_score = speckle_pair(noisy, flat)  # the output is the smaller: its own size
    assert out_score == speckle_index(noisy) and style_score == 0.0
    # A larger output is reduced to the style image's size first: its score is the reduced one's.
    big = noisy.resize((160, 128), Image.Resampling.NEAREST)
    out_score, _ = speckle_pair(big, Image.fromarray(np.full((64, 80, 3), 7, np.uint8)))
    assert out_score == speckle_index(big.resize((80, 64), Image.Resampling.LANCZOS))
