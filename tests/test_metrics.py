"""Image measures on made images whose answer is known."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from jaxstyle.media.metrics import comparison_shape, speckle_index, speckle_pair


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


def test_straight_line_index_sees_a_line_and_not_the_same_energy_as_texture():
    from jaxstyle.media.metrics import straight_line_index
    flat = np.full((64, 96, 3), 120, np.uint8)
    assert straight_line_index(Image.fromarray(flat)) == 0.0
    # One bright row across the picture: the two boundaries around it each differ by 40 levels
    # in luminance over the whole row, every other boundary by 0: the mean of the 5 largest is 16.
    line = flat.copy()
    line[30] += 40
    assert abs(straight_line_index(Image.fromarray(line)) - 2 * 40 / 5) < 1e-9
    # A column line the same: the index does not prefer an axis.
    col = flat.copy()
    col[:, 50] += 40
    assert abs(straight_line_index(Image.fromarray(col)) - 2 * 40 / 5) < 1e-9
    # The same 96 bright pixels scattered over the picture (the same energy, no line): every
    # boundary's mean difference is at most 2 x 40 / 96 of a pixel's worth.
    rng = np.random.default_rng(0)
    scattered = flat.copy()
    idx = rng.choice(64 * 96, 96, replace=False)
    scattered.reshape(-1, 3)[idx] += 40
    assert straight_line_index(Image.fromarray(scattered)) < 0.2 * straight_line_index(Image.fromarray(line))
    # Float images in [0, 1] are read as their 8-bit rounding.
    assert straight_line_index(line.astype(np.float32) / 255) == straight_line_index(Image.fromarray(line))


# ---- style_trim: an artwork's frame ------------------------------------------------------------------
def framed(inner: np.ndarray, top: int, bottom: int, left: int, right: int, value: float, noise: float = 0.0,
           seed: int = 1) -> np.ndarray:
    """``inner`` (H, W, 3) in [0, 1] inside a frame of ``value`` (plus Gaussian noise of ``noise``)."""
    h, w = inner.shape[:2]
    rng = np.random.default_rng(seed)
    out = np.clip(value + noise * rng.standard_normal((h + top + bottom, w + left + right, 3)), 0, 1)
    out[top:top + h, left:left + w] = inner
    return out.astype(np.float32)


def texture(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.2 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def test_border_trim_finds_made_frames():
    from jaxstyle.media.images import border_trim
    inner = texture()
    assert border_trim(inner) == (0, 0, 0, 0)  # none
    assert border_trim(framed(inner, 7, 7, 7, 7, 0.0)) == (7, 7, 7, 7)  # uniform black
    # Scanner noise of 2 levels (0.008) on a white margin is still a margin.
    assert border_trim(framed(inner, 5, 9, 3, 0, 1.0, noise=0.008)) == (5, 9, 3, 0)  # one side without
    # A light, uneven canvas edge 4 px wide (not uniform: 25 levels of noise) inside a dark frame:
    # both are cut, the edge because its mean stands out from the inside's.
    edged = framed(inner, 4, 4, 4, 4, 0.9, noise=0.1)
    assert border_trim(framed(edged, 6, 6, 6, 6, 0.0)) == (10, 10, 10, 10)
    # Without a frame a bright band at the edge is the artwork's own: kept.
    assert border_trim(framed(inner, 4, 0, 0, 0, 0.9, noise=0.1)) == (0, 0, 0, 0)


def test_border_trim_too_large_cuts_nothing_with_a_warning(tmp_path):
    from jaxstyle.media.images import border_trim
    from jaxstyle.engine.config import validate
    from jaxstyle.engine.inputs import prepare_images
    big = framed(texture(40, 50), 60, 60, 60, 60, 0.0)  # the picture is a small part of the frame
    assert border_trim(big) is None
    path = tmp_path / "framed.png"
    Image.fromarray((big * 255).round().astype(np.uint8)).save(path)
    photo = tmp_path / "photo.png"
    Image.fromarray((texture(48, 64) * 255).astype(np.uint8)).save(photo)
    cfg = validate({"content": str(photo), "style": str(path), "size": 64})
    inputs = prepare_images(cfg, ("conv1_1",))
    assert inputs.trims == [None]
    untrimmed = prepare_images(validate({"content": str(photo), "style": str(path), "size": 64, "style_trim": "none"}),
                               ("conv1_1",))
    np.testing.assert_array_equal(inputs.styles[0], untrimmed.styles[0])


def test_a_trimmed_artwork_is_its_inside_resized(tmp_path):
    from jaxstyle.engine.config import validate
    from jaxstyle.media.images import resize
    from jaxstyle.engine.inputs import prepare_images
    inner = texture(90, 120)
    art = framed(inner, 8, 8, 8, 8, 0.02)
    path, photo = tmp_path / "art.png", tmp_path / "photo.png"
    Image.fromarray((art * 255).round().astype(np.uint8)).save(path)
    Image.fromarray((texture(48, 64) * 255).astype(np.uint8)).save(photo)
    inputs = prepare_images(validate({"content": str(photo), "style": str(path), "size": 64}), ("conv1_1",))
    assert inputs.trims == [(8, 8, 8, 8)]
    expected = resize(np.asarray(Image.open(path), np.float32)[8:-8, 8:-8] / 255.0, (48, 64))
    np.testing.assert_allclose(inputs.styles[0], expected, atol=1e-6)


def test_lattice_index_sees_a_faint_grid_of_each_period_and_not_noise_or_texture():
    from jaxstyle.media.metrics import lattice_index
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:256, 0:256]
    noise = rng.normal(0.5, 0.02, (256, 256, 1)).repeat(3, axis=-1)  # 5 levels of noise
    texture = 0.5 + 0.2 * np.sin(xx / 7.3) * np.cos(yy / 5.1)  # smooth, no period of 2 to 16 px
    ramp = np.broadcast_to(xx / 256.0, (256, 256))  # all its energy on one axis of the spectrum
    for quiet in (noise, np.dstack([texture] * 3), np.dstack([ramp] * 3), np.full((256, 256, 3), 0.5)):
        assert lattice_index(quiet) < 1.0
    # Grids of 1 to 2 levels, under the noise: lines every p px, a chequer of p px, diagonal lines.
    grids = [((xx % 8 == 0) | (yy % 8 == 0)) * 2, (xx % 4 == 0) * 2, (xx % 2 == 0) * 1.0,
             ((xx // 8 + yy // 8) % 2) * 2, ((xx + yy) % 8 == 0) * 2]
    for grid in grids:  # one period's peaks count a quarter (the mean over 2, 4, 8 and 16 px)
        assert lattice_index(np.clip(noise + grid[..., None] / 255.0, 0, 1)) > 2.5
    # The windows are averaged, so the grid scores wherever it lies; a larger crop scores the same.
    tiled = np.tile(np.clip(noise + grids[0][..., None] / 255.0, 0, 1), (2, 2, 1))
    assert abs(lattice_index(tiled) - lattice_index(np.clip(noise + grids[0][..., None] / 255.0, 0, 1))) < 1.5


def test_lattice_windows_find_a_grid_in_one_corner_that_the_whole_crop_dilutes():
    from jaxstyle.media.metrics import lattice_index, lattice_tail, lattice_windows
    rng = np.random.default_rng(5)
    noise = rng.normal(0.5, 0.02, (512, 512, 1)).repeat(3, axis=-1)  # 5 levels of noise
    yy, xx = np.mgrid[0:512, 0:512]
    assert lattice_windows(noise).shape == (3, 3)  # 256 px squares overlapping by half
    assert lattice_tail(noise) < 1.0
    # Lines every 4 px, 2 levels deep, in the bottom-left 256 px quarter only.
    grid = np.where((yy >= 256) & (xx < 256), (xx % 4 == 0) * 2.0, 0.0)
    img = np.clip(noise + grid[..., None] / 255.0, 0, 1)
    scores = lattice_windows(img)
    assert np.unravel_index(np.argmax(scores), scores.shape) == (2, 0)  # the square that holds it
    assert scores[0].max() < 1.0  # squares away from it score like noise
    # The tail (the worst tenth: one square of nine) is the grid's own square: higher than the
    # whole crop's index, where three quarters of the spectrum are noise.
    assert lattice_tail(img) == scores.max() > 2 * lattice_index(img) > 2.0


def test_lattice_index_reads_8_bit_arrays_as_levels():
    from jaxstyle.media.metrics import lattice_index
    rng = np.random.default_rng(6)
    levels = np.clip(rng.normal(100, 5, (128, 128, 3)) + (np.arange(128) % 2 == 0)[None, :, None], 0, 255)
    levels = levels.astype(np.uint8)
    as_float = lattice_index(levels.astype(np.float32) / 255.0)
    assert as_float > 2.0  # the 1-level column lattice is there
    assert lattice_index(levels) == as_float == lattice_index(Image.fromarray(levels))


def test_lattice_sheet_shows_where_the_grid_was_and_refuses_bad_pairs(tmp_path):
    rng = np.random.default_rng(7)
    after = np.clip(rng.normal(120, 5, (384, 384, 3)), 0, 255)
    before = after.copy()
    before[256:, 256:] += 3.0 * (-1.0) ** np.arange(128)[None, :, None]  # a grid in one corner only
    paths = []
    for name, a in (("before.png", before), ("after.png", after)):
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    script = [sys.executable, str(ROOT / "scripts" / "figures" / "lattice_sheet.py")]
    done = subprocess.run(script + [":".join(paths), "--out", str(tmp_path / "sheet.jpg")], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    crop = json.loads(done.stdout.splitlines()[0])["crop"]
    assert crop == [176, 176, 336, 336]  # the centre of the square that holds the corner
    assert Image.open(tmp_path / "sheet.jpg").size == (4 * 320 + 36, 320)
    bad = subprocess.run(script + [paths[0], "--out", str(tmp_path / "x.jpg")], capture_output=True, text=True,
                         cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and not (tmp_path / "x.jpg").exists()


def test_luminance_ssim_of_hand_made_images():
    from jaxstyle.media.metrics import ssim_luminance
    rng = np.random.default_rng(0)
    image = rng.random((16, 24, 3))
    assert ssim_luminance(image, image) == pytest.approx(1.0)
    # Two flat grey images: no variance, so SSIM is the luminance term (2 a b + c1) / (a^2 + b^2 + c1).
    a, b, c1 = 0.2, 0.6, 0.01 ** 2
    got = ssim_luminance(np.full((16, 16, 3), a), np.full((16, 16, 3), b))
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
