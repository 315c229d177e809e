"""The alternative style losses against float64 NumPy written from their equations
(for ``wasserstein``, matrix square roots from an exact eigendecomposition)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.model import style_losses as sl
from jaxstyle.media.images import load_image
from jaxstyle.model.losses import LossWeights, Objective
from jaxstyle.model.vgg import vgg19_features

from conftest import EXAMPLES


def features(seed: int, h: int = 6, w: int = 7, n: int = 5) -> np.ndarray:
    """Non-negative, correlated responses, like a ReLU layer's."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(n, n))
    return np.maximum(rng.normal(size=(h, w, n)) @ mix + 0.3, 0.0)


def np_mean_cov(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = f.reshape(-1, f.shape[-1]).astype(np.float64)
    mu = f.mean(axis=0)
    d = f - mu
    return mu, d.T @ d / f.shape[0]


def np_sqrtm(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def np_reg(c: np.ndarray) -> np.ndarray:
    n = c.shape[0]
    return c + sl.COV_REGULARISATION * np.trace(c) / n * np.eye(n)


def np_quantiles(sorted_vals: np.ndarray, points: int) -> np.ndarray:
    """Read a sorted (K, N) table at levels (k + 1/2) / points, linear between entries."""
    k = sorted_vals.shape[0]
    idx = (np.arange(points) + 0.5) / points * k - 0.5
    return np.stack([np.interp(idx, np.arange(k), sorted_vals[:, j]) for j in range(sorted_vals.shape[1])], axis=1)


def stats_target(kind: str, style: np.ndarray):
    return sl.target(kind, sl.statistics(kind, jnp.asarray(style, jnp.float32)))


def test_mean_cov_matches_numpy():
    f, s = features(0), features(1, 9, 8)
    mu, c = np_mean_cov(f)
    mu_s, c_s = np_mean_cov(s)
    n = f.shape[-1]
    want = np.sum((mu - mu_s) ** 2) / n + np.sum((c - c_s) ** 2) / n**2
    got = sl.mean_cov_layer_loss(jnp.asarray(f, jnp.float32), stats_target("mean_cov", s))
    assert abs(float(got) - want) <= 1e-4 * want


def test_newton_schulz_square_root_matches_eigendecomposition():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    a = (q * np.geomspace(1e-2, 1.0, 16)) @ q.T  # condition number 100
    got = np.asarray(sl.sqrtm_newton_schulz(jnp.asarray(a, jnp.float32)), np.float64)
    assert np.abs(got - np_sqrtm(a)).max() < 1e-4
    got_eigh = np.asarray(sl.sqrtm_psd(jnp.asarray(a, jnp.float32)), np.float64)
    assert np.abs(got_eigh - np_sqrtm(a)).max() < 1e-5


def test_wasserstein_matches_exact_gaussian_w2():
    f, s = features(4), features(5, 9, 8)
    mu, c = np_mean_cov(f)
    mu_s, c_s = np_mean_cov(s)
    c, c_s = np_reg(c), np_reg(c_s)
    root = np_sqrtm(c_s)
    w2 = np.sum((mu - mu_s) ** 2) + np.trace(c) + np.trace(c_s) - 2 * np.trace(np_sqrtm(root @ c @ root))
    want = w2 / f.shape[-1]
    got = float(sl.wasserstein_layer_loss(jnp.asarray(f, jnp.float32), stats_target("wasserstein", s)))
    assert abs(got - want) <= 2e-3 * want, (got, want)
    # the distance of a distribution to itself is (up to the iteration's accuracy) zero
    same = float(sl.wasserstein_layer_loss(jnp.asarray(s, jnp.float32), stats_target("wasserstein", s)))
    assert abs(same) < 1e-3 * want


def test_wasserstein_stays_finite_when_the_layer_is_rank_deficient():
    """More channels than positions (a deep layer of a small image): the covariance is singular."""
    f, s = features(6, 2, 3, 16), features(7, 2, 2, 16)
    tgt = stats_target("wasserstein", s)
    value, grad = jax.value_and_grad(sl.wasserstein_layer_loss)(jnp.asarray(f, jnp.float32), tgt)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))


def np_histogram_remap(flat: np.ndarray, table: np.ndarray, bins: int) -> np.ndarray:
    """Each response's rank from its channel's histogram (numpy.histogram, linear within a bin),
    then the artwork's quantile table read at that rank."""
    out = np.empty_like(flat)
    for j in range(flat.shape[1]):
        col = flat[:, j]
        counts, edges = np.histogram(col, bins=bins, range=(col.min(), col.max()))
        cdf_edges = np.concatenate([[0.0], np.cumsum(counts)]) / len(col)  # the CDF at each edge
        cdf = np.interp(col, edges, cdf_edges)
        k = table.shape[0]
        out[:, j] = np.interp(np.clip(cdf * k - 0.5, 0, k - 1), np.arange(k), table[:, j])
    return out


def test_histogram_matches_numpy_remap_and_holds_the_target_constant():
    f, s = features(8, 12, 11), features(9, 10, 9)
    m, n = f.shape[0] * f.shape[1], f.shape[-1]
    table = np_quantiles(np.sort(s.reshape(-1, n), axis=0), sl.QUANTILES)
    flat = f.reshape(-1, n)
    remapped = np_histogram_remap(flat, table, sl.HISTOGRAM_BINS)
    want = np.mean((flat - remapped) ** 2)
    tgt = stats_target("histogram", s)
    np.testing.assert_allclose(np.asarray(tgt["quantiles"]), table, rtol=1e-5, atol=1e-5)
    value, grad = jax.value_and_grad(sl.histogram_layer_loss)(jnp.asarray(f, jnp.float32), tgt)
    assert abs(float(value) - want) <= 1e-4 * want
    # Risser et al.'s gradient: 2 (F - R(F)) / (N M), the remapped R(F) held constant
    want_grad = 2 * (flat - remapped) / (m * n)
    assert np.abs(np.asarray(grad).reshape(-1, n) - want_grad).max() < 1e-4 * np.abs(want_grad).max()


def test_histogram_remap_ranks_like_a_sort():
    """With many responses per bin the histogram's ranks are the sorted ranks, to a bin's width."""
    rng = np.random.default_rng(10)
    flat = rng.gamma(2.0, size=(20000, 3))
    table = np.sort(rng.normal(size=(sl.QUANTILES, 3)), axis=0)
    ranks = np.argsort(np.argsort(flat, axis=0), axis=0)
    exact = np.stack([np.interp((ranks[:, j] + 0.5) / len(flat) * sl.QUANTILES - 0.5, np.arange(sl.QUANTILES),
                                table[:, j]) for j in range(3)], axis=1)
    got = np.asarray(sl.histogram_remap(jnp.asarray(flat, jnp.float32), jnp.asarray(table, jnp.float32)))
    assert np.sqrt(np.mean((got - exact) ** 2)) < 0.01 * table.std()


@pytest.mark.parametrize("kind", ["mean_cov", "wasserstein", "histogram"])
def test_blend_targets_mix_the_statistics(vgg_params, kind):
    """A blend of two artworks is the weighted sum of their per-position statistics (for the
    histogram loss, of their quantile functions), then the loss's own target."""
    content = jnp.asarray(load_image(EXAMPLES / "home.jpg", shape=(32, 40)))
    a = jnp.asarray(load_image(EXAMPLES / "starry_night.jpg", shape=(32, 40)))
    b = jnp.asarray(load_image(EXAMPLES / "graf1.png", shape=(24, 40)))
    obj = Objective(("conv4_2",), ("conv1_1", "conv2_1"), losses="mean", style_loss=kind)
    t = obj.targets(vgg_params, content, [a, b], [0.25, 0.75])
    for layer in obj.style_layers:
        sa, sb = (sl.statistics(kind, vgg19_features(vgg_params, s, (layer,))[layer]) for s in (a, b))
        mixed = {k: 0.25 * np.asarray(sa[k], np.float64) + 0.75 * np.asarray(sb[k], np.float64) for k in sa}
        got = t.style[layer]
        if kind == "histogram":
            np.testing.assert_allclose(np.asarray(got["quantiles"]), mixed["quantiles"], rtol=1e-4, atol=1e-3)
            continue
        np.testing.assert_allclose(np.asarray(got["mean"]), mixed["mean"], rtol=1e-4, atol=1e-3)
        cov = mixed["second"] - np.outer(mixed["mean"], mixed["mean"])
        if kind == "mean_cov":
            np.testing.assert_allclose(np.asarray(got["cov"]), cov, rtol=1e-3, atol=1e-1)
        else:
            np.testing.assert_allclose(np.asarray(got["cov_sqrt"]), np_sqrtm(np_reg(cov)), rtol=1e-3, atol=5e-2)


@pytest.mark.parametrize("kind", ["mean_cov", "wasserstein", "histogram"])
def test_each_style_loss_is_zero_at_the_artwork_and_differentiable(vgg_params, kind):
    """Through the whole objective: the artwork itself (at the photo's size) has a style loss near
    zero, and a noise image a larger one with a finite gradient."""
    style = jnp.asarray(load_image(EXAMPLES / "starry_night.jpg", shape=(32, 32)))
    obj = Objective((), ("conv1_1", "conv2_1", "conv3_1"), losses="mean", style_loss=kind)
    t = obj.targets(vgg_params, style, style)
    w = LossWeights(jnp.float32(0), jnp.float32(1), {}, {l: jnp.float32(1 / 3) for l in obj.style_layers}, {})
    at_art = float(obj.parts(style, vgg_params, t, w)["style"])
    noise = jax.random.uniform(jax.random.key(0), style.shape)
    (value, _), grad = jax.value_and_grad(obj, has_aux=True)(noise, vgg_params, t, w)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
    assert at_art < 0.01 * float(value), (at_art, float(value))
