"""The paper's loss functions against float64 NumPy, finite differences and hand-made cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import EXAMPLES
from helpers import np_vgg19
from jaxstyle.driver.job import run
from jaxstyle.engine.config import validate
from jaxstyle.engine.progress import RunHooks
from jaxstyle.media.images import load_image
from jaxstyle.model.losses import (LossWeights, Objective, content_loss, gram_matrix, lattice_energy, mean_content_loss,
                             mean_style_layer_loss, out_of_range, style_layer_loss, total_loss, total_variation)

rng = np.random.default_rng(0)


def test_content_loss_eq1():
    f, p = rng.random((2, 5, 6, 7)), rng.random((2, 5, 6, 7))
    expected = 0.5 * ((f - p) ** 2).reshape(2, -1).sum(1)
    np.testing.assert_allclose(content_loss(jnp.asarray(f, jnp.float32), jnp.asarray(p, jnp.float32)),
                               expected, rtol=1e-5)
    # Hand-made: one entry differs by 2 -> 1/2 * 4 = 2.
    a = np.zeros((2, 2, 3), np.float32)
    b = a.copy()
    b[1, 0, 2] = 2.0
    assert float(content_loss(jnp.asarray(a), jnp.asarray(b))) == 2.0


def test_gram_matrix_eq3():
    f = rng.random((3, 4, 5, 6))  # batch 3, 4x5 positions, N_l = 6
    F = f.reshape(3, 20, 6).transpose(0, 2, 1)  # the paper's F^l: N_l x M_l
    expected = F @ F.transpose(0, 2, 1)
    got = gram_matrix(jnp.asarray(f, jnp.float32))
    assert got.shape == (3, 6, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_gram_matrix_gradient_and_jvp_match_hand_formulas():
    # gram_matrix has its own JVP rule (one product in the backward pass); check it against the
    # derivatives of G = F^T F written out in float64: d/dF sum_ij W_ij G_ij = F (W + W^T) for
    # any W, and dG = dF^T F + F^T dF along a direction dF.
    f, w, v = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 5, 5)), rng.standard_normal((2, 3, 4, 5))
    F, V = f.reshape(2, 12, 5), v.reshape(2, 12, 5)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    grad = jax.grad(lambda x: jnp.sum(f32(w) * gram_matrix(x)))(f32(f))
    np.testing.assert_allclose(grad, (F @ (w + w.transpose(0, 2, 1))).reshape(f.shape), rtol=1e-5, atol=1e-5)
    _, tangent = jax.jvp(gram_matrix, (f32(f),), (f32(v),))
    np.testing.assert_allclose(tangent, V.transpose(0, 2, 1) @ F + F.transpose(0, 2, 1) @ V, rtol=1e-5, atol=1e-5)


def test_style_layer_loss_eq4():
    g, a = rng.random((6, 6)), rng.random((6, 6))
    m = 20
    expected = ((g - a) ** 2).sum() / (4 * 36 * m**2)
    np.testing.assert_allclose(style_layer_loss(jnp.asarray(g, jnp.float32), jnp.asarray(a, jnp.float32), m),
                               expected, rtol=1e-5)


def test_mean_forms_of_eq1_and_eq4():
    f, p = rng.random((2, 5, 6, 7)), rng.random((2, 5, 6, 7))
    expected = ((f - p) ** 2).reshape(2, -1).sum(1) / (7 * 30)  # 1 / (N_l M_l)
    np.testing.assert_allclose(mean_content_loss(jnp.asarray(f, jnp.float32), jnp.asarray(p, jnp.float32)),
                               expected, rtol=1e-5)
    g, a = rng.random((6, 6)), rng.random((6, 6))
    m = 20
    np.testing.assert_allclose(mean_style_layer_loss(jnp.asarray(g, jnp.float32), jnp.asarray(a, jnp.float32), m),
                               ((g / m - a) ** 2).sum() / 36, rtol=1e-5)
    # With the artwork's per-position Gram matrix A / M, the mean form is four times Eq. 4.
    np.testing.assert_allclose(mean_style_layer_loss(jnp.asarray(g, jnp.float32), jnp.asarray(a / m, jnp.float32), m),
                               4 * style_layer_loss(jnp.asarray(g, jnp.float32), jnp.asarray(a, jnp.float32), m),
                               rtol=1e-5)


def test_total_loss_eq7_and_tv():
    assert float(total_loss(jnp.float32(3.0), jnp.float32(5.0), 2.0, 0.5)) == 8.5
    img = np.zeros((3, 3, 1), np.float32)
    img[1, 1, 0] = 1.0  # four neighbours differ by 1
    assert float(total_variation(jnp.asarray(img))) == 4.0


def test_out_of_range_hand_made_float64_and_finite_differences():
    # Inside [0, 1] (ends included) it is 0; outside, the mean of the squared distance to the range.
    assert float(out_of_range(jnp.asarray(np.random.default_rng(6).random((5, 7, 3)), jnp.float32))) == 0.0
    assert float(out_of_range(jnp.asarray(np.dstack([np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 2))])))) == 0.0
    img = np.full((2, 2, 3), 0.5)
    img[0, 0, 0], img[1, 1, 2] = 1.5, -0.25  # 0.5 above, 0.25 below: (0.25 + 0.0625) / 12
    assert float(out_of_range(jnp.asarray(img, jnp.float32))) == pytest.approx(0.3125 / 12, rel=1e-6)
    f = lambda a: float(np.mean(np.square(a - np.clip(a, 0, 1))))  # noqa: E731  (the float64 reference)
    x = np.random.default_rng(5).normal(0.5, 0.6, (2, 9, 11, 3))  # a batch, about 40 % outside
    np.testing.assert_allclose(np.asarray(out_of_range(jnp.asarray(x, jnp.float32))), [f(a) for a in x], rtol=1e-5)
    grad = np.asarray(jax.grad(lambda a: out_of_range(a))(jnp.asarray(x[0], jnp.float32)), np.float64)
    eps = 1e-4
    for idx in zip(*np.nonzero((x[0] < -0.01) | (x[0] > 1.01) | ((x[0] > 0.01) & (x[0] < 0.99)))):
        up, down = x[0].copy(), x[0].copy()
        up[idx] += eps
        down[idx] -= eps
        np.testing.assert_allclose(grad[idx], (f(up) - f(down)) / (2 * eps), rtol=1e-3, atol=1e-9)


def test_the_range_term_keeps_a_run_inside_0_1(vgg_params):
    """A start of wide noise (values from -0.5 to 1.5), the term swept off and on in one batch: with
    it the optimised values (``raw``: before the clipping that writing does) stay much closer to [0, 1]."""
    cfg = validate({"content": str(EXAMPLES / "leuvenA.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
                    "size": 32, "print_every": 0, "scales": [], "noise": "uniform", "noise_amplitude": 1.0,
                    "optimizer": {"iterations": 8}, "sweep": {"terms": [{"range": 0.0}, {"range": 1000.0}]}})
    free, kept = (float(out_of_range(jnp.asarray(im))) for im in run(cfg, vgg_params, RunHooks(log=lambda s: None)).raw)
    assert free > 1e-3 and kept < 0.1 * free, (free, kept)


def _lattice_energy_float64(image: np.ndarray, sigma: float = 6.0) -> float:
    """The lattice term's definition at full resolution: the image times (-1)^x, (-1)^y and
    (-1)^(x+y), each blurred by a Gaussian (valid positions), squared, averaged; summed."""
    r = int(3 * sigma)
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    h, w = image.shape[:2]
    sx, sy = (-1.0) ** np.arange(w)[None, :, None], (-1.0) ** np.arange(h)[:, None, None]
    total = 0.0
    for sign in (sx, sy, sx * sy):
        a = image * sign
        a = sum(g[i] * a[i:h - 2 * r + i] for i in range(2 * r + 1))
        a = sum(g[i] * a[:, i:w - 2 * r + i] for i in range(2 * r + 1))
        total += float(np.mean(a ** 2))
    return total


def test_lattice_energy_hand_made_and_against_the_full_resolution_definition():
    yy, xx = np.mgrid[0:96, 0:128]
    flat = np.full((96, 128, 3), 0.5)
    smooth = 0.5 + 0.2 * np.sin(xx / 7.3) * np.cos(yy / 5.1)
    # A lattice of amplitude a scores a^2, in each of its three forms; flat, a ramp and a smooth
    # texture score (nearly) 0.
    for sign in ((-1.0) ** xx, (-1.0) ** yy, (-1.0) ** (xx + yy)):
        img = flat + 0.01 * sign[..., None]
        np.testing.assert_allclose(float(lattice_energy(jnp.asarray(img, jnp.float32))), 1e-4, rtol=1e-3)
    assert float(lattice_energy(jnp.asarray(flat, jnp.float32))) == 0.0
    assert abs(float(lattice_energy(jnp.asarray(np.dstack([xx / 128.0] * 3), jnp.float32)))) < 1e-12
    assert float(lattice_energy(jnp.asarray(np.dstack([smooth] * 3), jnp.float32))) < 1e-8
    # A lattice whose amplitude varies smoothly over the image, on a texture with noise: the
    # computed form (4 x 4 means, a quarter-size Gaussian) is within 10 % of the definition.
    envelope = 0.01 + 0.02 * np.exp(-((xx - 64) ** 2 + (yy - 48) ** 2) / (2 * 30.0 ** 2))
    noise = np.random.default_rng(3).normal(0, 0.02, (96, 128, 3))
    img = np.dstack([smooth] * 3) + noise + (envelope * (-1.0) ** xx)[..., None]
    expected = _lattice_energy_float64(img)
    np.testing.assert_allclose(float(lattice_energy(jnp.asarray(img, jnp.float32))), expected, rtol=0.1)
    assert expected > 3e-4  # the lattice, not the noise, is what both measure
    # Too small for one Gaussian: 0, not an error (a tiny tile or image).
    assert float(lattice_energy(jnp.zeros((32, 32, 3)))) == 0.0


def test_lattice_energy_gradient_matches_finite_differences():
    rng64 = np.random.default_rng(4)
    x = rng64.random((48, 48, 3))
    grad = np.asarray(jax.grad(lambda a: lattice_energy(a))(jnp.asarray(x, jnp.float32)), np.float64)
    np.testing.assert_allclose(float(lattice_energy(jnp.asarray(x, jnp.float32))), _quadratic(x), rtol=1e-4)
    eps = 1e-2  # the energy is quadratic in the image: central differences are exact up to rounding
    for idx in [(20, 20, 0), (24, 17, 1), (10, 30, 2), (0, 0, 0)]:
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (_quadratic(up) - _quadratic(down)) / (2 * eps)
        np.testing.assert_allclose(grad[idx], fd, rtol=2e-3, atol=1e-9)


def _quadratic(x: np.ndarray) -> float:
    """lattice_energy's own arithmetic (4 x 4 means after [-1, 2, -1] / 4) in float64."""
    g = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
    g /= g.sum()
    hx = lambda a: (2 * a[:, 1:-1] - a[:, :-2] - a[:, 2:]) / 4  # noqa: E731
    hy = lambda a: (2 * a[1:-1] - a[:-2] - a[2:]) / 4  # noqa: E731
    total = 0.0
    for a, fx, fy in ((hx(x[1:-1]), 1, 0), (hy(x[:, 1:-1]), 0, 1), (hx(hy(x)), 1, 1)):
        h, w = a.shape[0] // 4 * 4, a.shape[1] // 4 * 4
        a = a[:h, :w] * ((-1.0) ** (np.arange(w) * fx))[None, :, None] * ((-1.0) ** (np.arange(h) * fy))[:, None, None]
        m = a.reshape(h // 4, 4, w // 4, 4, -1).mean(axis=(1, 3))
        m = sum(g[i] * m[i:h // 4 - 8 + i] for i in range(9))
        m = sum(g[i] * m[:, i:w // 4 - 8 + i] for i in range(9))
        total += float(np.mean(m ** 2))
    return total


def test_objective_matches_float64_numpy(vgg_params):
    content = load_image(EXAMPLES / "home.jpg", shape=(32, 40))
    style = load_image(EXAMPLES / "starry_night.jpg", shape=(32, 40))
    x = rng.random((32, 40, 3)).astype(np.float32)
    obj = Objective(("conv4_2",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"), losses="paper")
    sw = {"conv1_1": 0.1, "conv2_1": 0.2, "conv3_1": 0.3, "conv4_1": 0.25, "conv5_1": 0.15}
    w = LossWeights(jnp.float32(0.7), jnp.float32(1e3), {"conv4_2": jnp.float32(1.0)},
                    {k: jnp.float32(v) for k, v in sw.items()}, {})
    parts = obj.parts(jnp.asarray(x), vgg_params, obj.targets(vgg_params, content, style), w)
    fx, fc, fs = (np_vgg19(vgg_params, im) for im in (x, content, style))
    l_content = 0.5 * ((fx["conv4_2"] - fc["conv4_2"]) ** 2).sum()
    l_style = 0.0
    for layer, wl in sw.items():
        n = fx[layer].shape[-1]
        F = fx[layer].reshape(-1, n).T
        S = fs[layer].reshape(-1, n).T
        m = F.shape[1]
        l_style += wl * ((F @ F.T - S @ S.T) ** 2).sum() / (4 * n**2 * m**2)
    np.testing.assert_allclose(float(parts["content"]), l_content, rtol=1e-4)
    np.testing.assert_allclose(float(parts["style"]), l_style, rtol=1e-4)
    np.testing.assert_allclose(float(parts["total"]), 0.7 * l_content + 1e3 * l_style, rtol=1e-4)


def _np_gram(f):
    flat = f.reshape(-1, f.shape[-1])
    return flat.T @ flat


def _np_pool_mask(m, times):
    for _ in range(times):
        h, w = m.shape[0] // 2 * 2, m.shape[1] // 2 * 2
        m = m[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return m


@pytest.mark.parametrize("losses", ["mean", "paper"])
def test_blends_and_masks_in_both_normalisations_match_float64_numpy(vgg_params, losses):
    # Two artworks at sizes other than the photograph's (M_style differs from M), blended, and the
    # same two as masked regions (guided Gram matrices, each region with its own M).
    content = load_image(EXAMPLES / "home.jpg", shape=(32, 40))
    styles = [load_image(EXAMPLES / "starry_night.jpg", shape=(48, 56)),
              load_image(EXAMPLES / "graf1.png", shape=(40, 32))]
    x = rng.random((32, 40, 3)).astype(np.float32)
    masks = np.zeros((2, 32, 40), np.float32)
    masks[0, :, :24] = 1.0
    masks[1, :, 16:] = 0.5  # overlapping and fractional: region areas are sums of mask values
    layers = {"conv1_1": 0.3, "conv2_1": 0.3, "conv3_1": 0.4}
    obj = Objective(("conv2_2", "conv3_1"), tuple(layers), losses=losses)
    w = LossWeights(jnp.float32(1.0), jnp.float32(1.0), {"conv2_2": jnp.float32(0.25), "conv3_1": jnp.float32(2.0)},
                    {k: jnp.float32(v) for k, v in layers.items()}, {})
    fx, fc = np_vgg19(vgg_params, x), np_vgg19(vgg_params, content)
    fs = [np_vgg19(vgg_params, s) for s in styles]
    per_position = {l: [_np_gram(f[l]) / (f[l].shape[0] * f[l].shape[1]) for f in fs] for l in layers}

    def content_part():
        total = 0.0
        for l, wl in (("conv2_2", 0.25), ("conv3_1", 2.0)):
            d2 = ((fx[l] - fc[l]) ** 2).sum()
            total += wl * (d2 / fx[l].size if losses == "mean" else 0.5 * d2)
        return total

    blend = [0.3, 0.7]
    l_style = 0.0
    for l, wl in layers.items():
        n, m = fx[l].shape[-1], fx[l].shape[0] * fx[l].shape[1]
        a = blend[0] * per_position[l][0] + blend[1] * per_position[l][1]
        g = _np_gram(fx[l])
        e = ((g / m - a) ** 2).sum() / n**2 if losses == "mean" else ((g - m * a) ** 2).sum() / (4 * n**2 * m**2)
        l_style += wl * e
    t = obj.targets(vgg_params, content, styles, blend)
    parts = obj.parts(jnp.asarray(x), vgg_params, t, w)
    np.testing.assert_allclose(float(parts["content"]), content_part(), rtol=1e-4)
    np.testing.assert_allclose(float(parts["style"]), l_style, rtol=1e-4)

    l_style = 0.0
    for l, wl in layers.items():
        n = fx[l].shape[-1]
        pooled = [_np_pool_mask(mk, int(l[4]) - 1) for mk in masks.astype(np.float64)]
        for mk, a in zip(pooled, per_position[l]):
            area = mk.sum()
            g = _np_gram(fx[l] * mk[..., None])
            e = ((g / area - a) ** 2).sum() / n**2 if losses == "mean" else \
                ((g - area * a) ** 2).sum() / (4 * n**2 * area**2)
            l_style += wl * e
    t = obj.targets(vgg_params, content, styles, masks=jnp.asarray(masks))
    parts = obj.parts(jnp.asarray(x), vgg_params, t, w)
    np.testing.assert_allclose(float(parts["content"]), content_part(), rtol=1e-4)
    np.testing.assert_allclose(float(parts["style"]), l_style, rtol=1e-4)


def test_mean_losses_do_not_depend_on_the_image_size(vgg_params):
    # The same photograph, artwork and (resized) image at 32 and 64 px: the mean form's content
    # and style losses stay within a factor of 2, while Eq. 1's content loss grows with the area.
    obj = {k: Objective(("conv4_2",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"), losses=k)
           for k in ("mean", "paper")}
    w = LossWeights(jnp.float32(1.0), jnp.float32(1.0), {"conv4_2": jnp.float32(1.0)},
                    {f"conv{i}_1": jnp.float32(0.2) for i in range(1, 6)}, {})
    parts = {}
    for side in (32, 64):
        shape = (side, side)
        content = load_image(EXAMPLES / "leuvenA.jpg", shape=shape)
        style = load_image(EXAMPLES / "starry_night.jpg", shape=shape)
        x = load_image(EXAMPLES / "fruits.jpg", shape=shape)
        for k, o in obj.items():
            parts[k, side] = {n: float(v) for n, v in o.parts(jnp.asarray(x), vgg_params,
                                                              o.targets(vgg_params, content, style), w).items()}
    for term in ("content", "style"):
        ratio = parts["mean", 64][term] / parts["mean", 32][term]
        assert 0.5 < ratio < 2.0, (term, ratio)
    assert parts["paper", 64]["content"] / parts["paper", 32]["content"] > 3.0


@pytest.fixture(scope="module")
def x64_results():
    env = {**os.environ, "JAX_ENABLE_X64": "1"}
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "x64_checks.py")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_grad_matches_finite_differences_float64(x64_results):
    assert max(x64_results["grad_fd_rel"]) < 1e-6, x64_results["grad_fd_rel"]


def test_batch_variants_are_independent_float64(x64_results):
    # Each seed of a 2-seed batch equals that seed run alone after 20 L-BFGS iterations.
    assert max(x64_results["batch_vs_solo_maxabs"]) < 1e-6, x64_results["batch_vs_solo_maxabs"]
    # ... and the optimisation really moved: every loss fell by more than half.
    for start, end in zip(x64_results["initial_losses"], x64_results["batch_losses"]):
        assert end < 0.5 * start


def test_variants_sharded_over_4_devices_match_one_device():
    env = {**os.environ, "JAX_ENABLE_X64": "1", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "sharding_checks.py")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["one_devices_of_x"] == 1 and out["four_devices_of_x"] == 4
    assert out["maxabs_sharded_vs_single"] < 1e-6, out
    assert out["loss_drop"] < 0.5  # the optimisation really ran
    assert out["run_devices"] == 4 and out["run_images"] == [3, 24, 32, 3] and out["run_variants"] == [0, 1, 2]


def test_remat_gives_the_same_loss_and_gradient(vgg_params):
    import jax
    content = load_image(EXAMPLES / "home.jpg", shape=(32, 40))
    style = load_image(EXAMPLES / "starry_night.jpg", shape=(32, 40))
    x = jnp.asarray(rng.random((32, 40, 3)), jnp.float32)
    w = LossWeights(1.0, 1e3, {"conv4_2": 1.0}, {l: 0.2 for l in ("conv1_1", "conv3_1", "conv5_1")}, {})
    grads = []
    for remat in (False, True):
        obj = Objective(("conv4_2",), ("conv1_1", "conv3_1", "conv5_1"), remat=remat)
        t = obj.targets(vgg_params, content, style)
        grads.append(jax.jit(jax.value_and_grad(lambda x, p: obj(x, p, t, w)[0]))(x, vgg_params))
        if remat:  # the checkpointed program really recomputes: it holds a remat region
            jaxpr = jax.make_jaxpr(jax.grad(lambda x: obj(x, vgg_params, t, w)[0]))(x)
            assert "remat" in str(jaxpr) or "checkpoint" in str(jaxpr)
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-5)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6 * float(jnp.abs(grads[0][1]).max()))
