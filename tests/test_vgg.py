"""VGG-19 forward pass against an independent float64 NumPy implementation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import EXAMPLES, PHOTOS
from helpers import np_conv3x3, np_conv3x3_adjoints, np_layer_names, np_vgg19
from jaxstyle import CONV_NAMES, ConfigError, vgg19_features
from jaxstyle.media.images import load_image
from jaxstyle.model.vgg import min_image_side


@pytest.fixture(scope="module")
def small_image():
    # 36 x 44: odd sizes appear after the third pooling (9 x 11 -> 4 x 5), so floor pooling is pinned.
    return load_image(EXAMPLES / "home.jpg", shape=(36, 44))


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_all_layers_match_float64_numpy(vgg_params, small_image, pooling):
    ref = np_vgg19(vgg_params, small_image, pooling)
    got = jax.jit(lambda p, x: vgg19_features(p, x, np_layer_names(), pooling))(vgg_params, small_image)
    assert set(got) == set(ref)
    for name, r in ref.items():
        g = np.asarray(got[name], np.float64)
        assert g.shape == r.shape, name
        rel = np.linalg.norm(g - r) / np.linalg.norm(r)
        assert rel < 1e-5, (name, rel)
        assert (g >= 0).all()  # rectified responses (Caffe's in-place ReLU)


def test_winograd_layers_match_float64_numpy(vgg_params):
    # prepare_kernels gives conv3_2 .. conv4_4 of an 80 x 96 image (maps of 20 x 24 and 10 x 12
    # positions) the Winograd path; every layer, and the gradient's use of it, must keep the bounds.
    from jaxstyle.model.vgg import prepare_kernels, winograd_layers
    image = load_image(EXAMPLES / "home.jpg", shape=(80, 96))
    layers = np_layer_names()
    assert winograd_layers(80, 96, layers) == ["conv3_2", "conv3_3", "conv3_4", "conv4_1", "conv4_2", "conv4_3",
                                               "conv4_4"]
    ref = np_vgg19(vgg_params, image)
    got = jax.jit(lambda p, x: vgg19_features(p, x, layers))(prepare_kernels(vgg_params, layers), image)
    for name, r in ref.items():
        g = np.asarray(got[name], np.float64)
        assert g.shape == r.shape and np.linalg.norm(g - r) / np.linalg.norm(r) < 1e-5, name


def test_winograd_table():
    from jaxstyle.model.vgg import winograd_layers, winograd_pays
    assert winograd_pays(10, 10, 256) and winograd_pays(64, 48, 512) and winograd_pays(1, 100, 512)
    assert not winograd_pays(11, 9, 512) and not winograd_pays(64, 49, 512) and not winograd_pays(32, 24, 128)
    # The default 512 px stage of a 4:3 photograph: conv4_x at 64 x 48 and conv5_1 at 32 x 24 take it,
    # conv3_x at 128 x 96 does not; at 256 px conv3_2 .. conv5_1 (at 16 x 12), at 128 px all but
    # conv5_1 (8 x 6, too few positions to repay compiling the path).
    deep = ["conv4_2", "conv5_1"]
    assert winograd_layers(384, 512, deep) == ["conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1"]
    assert winograd_layers(192, 256, deep) == ["conv3_2", "conv3_3", "conv3_4", "conv4_1", "conv4_2", "conv4_3",
                                               "conv4_4", "conv5_1"]
    assert winograd_layers(96, 128, deep) == winograd_layers(192, 256, deep)[:-1]
    assert winograd_layers(192, 256, ["conv3_1"]) == []


@pytest.mark.parametrize("hw", [(1, 1), (1, 3), (3, 1), (2, 3), (3, 3), (4, 6), (5, 7)])
def test_winograd_convolution_matches_numpy(hw):
    # F(2 x 2, 3 x 3) against the nine shifted float64 products: values, input gradients and the
    # kernel gradient, odd and even sides from 1 px, in a batch and alone, under jit, vmap and
    # lax.cond. An odd side runs on one more zero row or column, which must not leak in.
    import jax.numpy as jnp
    from jaxstyle.model.vgg import _conv_winograd, winograd_kernels

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, *hw, 4)).astype(np.float32)
    k = rng.standard_normal((3, 3, 4, 6)).astype(np.float32)
    r = rng.standard_normal((2, *hw, 6)).astype(np.float32)
    zero = np.zeros(6)
    want = np.stack([np_conv3x3(x[i].astype(np.float64), k.astype(np.float64), zero) for i in range(2)])
    per_image = [np_conv3x3_adjoints(x[i].astype(np.float64), k.astype(np.float64), r[i].astype(np.float64))
                 for i in range(2)]
    want_dx, want_dk = np.stack([d for d, _ in per_image]), sum(dk for _, dk in per_image)
    u = winograd_kernels(jnp.asarray(k))
    conv = lambda x, k: _conv_winograd(x, k, u)  # noqa: E731
    grad = jax.grad(lambda x, k: jnp.sum(conv(x, k) * r), argnums=(0, 1))
    in_cond = lambda x, k: jax.lax.cond(x.sum() > -1e9, grad, lambda x, k: (x, k), x, k)  # noqa: E731
    for fun in (grad, in_cond):
        dx, dk = jax.jit(fun)(x, k)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(dk, want_dk, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(jax.jit(conv)(x, k), want, rtol=1e-5, atol=1e-4)
    # One image at a time through vmap (a batch of one each), and its input gradient there.
    one = jax.vmap(lambda xi, ri: (conv(xi[None], k)[0], jax.grad(lambda z: jnp.sum(conv(z[None], k)[0] * ri))(xi)))
    y, dx = jax.jit(one)(x, r)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-4)


def test_batch_matches_single_and_shapes(vgg_params, small_image):
    other = load_image(EXAMPLES / "fruits.jpg", shape=(36, 44))
    batch = np.stack([small_image, other])
    layers = ["conv1_1", "conv3_2", "pool4"]
    b = vgg19_features(vgg_params, batch, layers)
    s = vgg19_features(vgg_params, other, layers)
    assert b["conv1_1"].shape == (2, 36, 44, 64)
    assert b["conv3_2"].shape == (2, 9, 11, 256)
    assert b["pool4"].shape == (2, 2, 2, 512)
    assert s["conv3_2"].shape == (9, 11, 256)
    np.testing.assert_allclose(b["conv3_2"][1], s["conv3_2"], rtol=1e-5, atol=1e-4)


def test_computes_no_deeper_layer_than_requested(vgg_params, small_image):
    text = jax.jit(lambda x: vgg19_features(vgg_params, x, ["conv2_1"])).lower(small_image).as_text()
    assert text.count("stablehlo.convolution") == 3  # conv1_1, conv1_2, conv2_1


def test_unknown_layer_is_a_clear_error(vgg_params, small_image):
    with pytest.raises(ConfigError, match="unknown VGG-19 layer 'conv4_5'"):
        vgg19_features(vgg_params, small_image, ["conv4_5"])
    with pytest.raises(ConfigError, match="did you mean 'conv4_2'"):
        vgg19_features(vgg_params, small_image, ["conv_4_2"])
    with pytest.raises(ConfigError, match="pooling"):
        vgg19_features(vgg_params, small_image, ["conv1_1"], pooling="median")


def test_min_image_side():
    assert min_image_side(["conv1_1"]) == 1
    assert min_image_side(["conv4_2"]) == 8
    assert min_image_side(["conv5_1", "conv1_1"]) == 16
    assert min_image_side(["pool5"]) == 32


@pytest.mark.parametrize("size", [256, 384])
def test_shipped_weights_are_mean_normalised(vgg_params, size):
    # Paper section 2: mean activation of each filter over images and positions is 1. The weights
    # were normalised on ImageNet, so on our three photographs the mean sits near, not at, 1.
    sums, counts = {}, {}
    for name in PHOTOS:
        feats = vgg19_features(vgg_params, load_image(EXAMPLES / name, size), CONV_NAMES, "max")
        for layer, r in feats.items():
            r = np.asarray(r, np.float64).reshape(-1, r.shape[-1])
            sums[layer] = sums.get(layer, 0) + r.sum(0)
            counts[layer] = counts.get(layer, 0) + r.shape[0]
    for layer in CONV_NAMES:
        mean_over_filters = float((sums[layer] / counts[layer]).mean())
        assert 0.8 <= mean_over_filters <= 1.25, (layer, mean_over_filters)


@pytest.mark.parametrize("hw", [(5, 7), (2, 3), (1, 1)])
def test_conv_gradients_match_numpy_adjoint_at_top_level_and_inside_loops(hw):
    # conv3x3 has its own input-gradient rule (an HWIO convolution of the flipped kernel, given or
    # made in place), and fewer than 9 positions take a matrix product instead (2 x 3, 1 x 1); its
    # gradients must be those of the convolution wherever they are taken.
    import jax.numpy as jnp
    from jaxstyle.model.vgg import _input_grad_flipped, _input_grad_jax, conv3x3, flip_kernel

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, *hw, 4)).astype(np.float32)
    k = rng.standard_normal((3, 3, 4, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    r = rng.standard_normal((2, *hw, 6)).astype(np.float32)
    # The flipped kernel written out by hand: element [a, b, o, i] is k[2 - a, 2 - b, i, o].
    hand = np.empty((3, 3, 6, 4), np.float32)
    for a in range(3):
        for c in range(3):
            hand[a, c] = k[2 - a, 2 - c].T
    np.testing.assert_array_equal(flip_kernel(k), hand)
    per_image = [np_conv3x3_adjoints(x[i].astype(np.float64), k.astype(np.float64), r[i].astype(np.float64))
                 for i in range(2)]
    want_dx = np.stack([d for d, _ in per_image])
    want_dk = sum(dk for _, dk in per_image)
    for flipped in (None, hand):
        loss = lambda x, k: jnp.sum(conv3x3(x, k, b, flipped) * r)  # noqa: E731
        grad = jax.grad(loss, argnums=(0, 1))
        in_loop = lambda x, k: jax.lax.fori_loop(0, 1, lambda i, g: grad(x, k), grad(0 * x, 0 * k))  # noqa: E731
        in_cond = lambda x, k: jax.lax.cond(x.sum() > -1e9, grad, lambda x, k: (x, k), x, k)  # noqa: E731
        for fun in (grad, in_loop, in_cond):
            dx, dk = jax.jit(fun)(x, k)
            np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(dk, want_dk, rtol=1e-5, atol=1e-4)
    # Both forms of the input gradient: the CPU rule above and JAX's own (used on other backends).
    for input_grad in (_input_grad_flipped, _input_grad_jax):
        np.testing.assert_allclose(input_grad(r, k, hand), want_dx, rtol=1e-5, atol=1e-4)


def test_flipped_kernels_are_added_up_to_the_deepest_layer_only(vgg_params):
    from jaxstyle.model.vgg import with_flipped_kernels

    got = with_flipped_kernels(vgg_params, ["conv2_1", "conv1_1"])
    assert [n for n in CONV_NAMES if "flipped" in got[n]] == ["conv1_1", "conv1_2", "conv2_1"]
    k = np.asarray(vgg_params["conv1_2"]["kernel"])
    np.testing.assert_array_equal(got["conv1_2"]["flipped"], k[::-1, ::-1].transpose(0, 1, 3, 2))
    assert "flipped" not in vgg_params["conv1_1"]  # the caller's dict is left as it was
    # The network's responses do not change.
    x = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    a = vgg19_features(vgg_params, x, ["conv2_1"])["conv2_1"]
    np.testing.assert_array_equal(a, vgg19_features(got, x, ["conv2_1"])["conv2_1"])


def test_input_gradient_lowers_to_hwio_convolutions_on_cpu(vgg_params):
    # JAX's own transpose labels the kernel "[0, 1, o, i]", which XLA:CPU runs several times slower
    # inside loops and conditionals; every convolution of the network's gradient must be HWIO.
    import jax.numpy as jnp
    x = np.zeros((16, 16, 3), np.float32)
    loss = lambda x: jnp.sum(vgg19_features(vgg_params, x, ["conv2_1"])["conv2_1"] ** 2)
    text = jax.jit(lambda x: jax.lax.fori_loop(0, 1, lambda i, y: y - jax.grad(loss)(y), x)).lower(x).as_text()
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    assert len(convs) == 3 + 3  # conv1_1, conv1_2, conv2_1: forward and input gradient each
    assert all("x[0, 1, i, o]->" in line for line in convs), convs


def test_no_convolution_has_fewer_positions_than_its_window(vgg_params):
    # XLA:CPU swaps the operands of a convolution whose input has fewer than 9 positions and then
    # runs it on a slow generic path; a 32 x 40 image reaches conv5_1 at 2 x 2, which conv3x3
    # computes as a matrix product instead. Its responses against NumPy: test_all_layers_...
    import re

    import jax.numpy as jnp
    x = np.zeros((32, 40, 3), np.float32)
    loss = lambda x: jnp.sum(vgg19_features(vgg_params, x, ["conv5_1"])["conv5_1"] ** 2)  # noqa: E731
    text = jax.jit(jax.grad(loss)).lower(x).as_text()
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    inputs = [tuple(int(d) for d in re.search(r"\(tensor<(\d+)x(\d+)x(\d+)x", line).groups()) for line in convs]
    assert len(convs) == 2 * 12 and min(h * w for _, h, w in inputs) == 4 * 5, inputs  # conv5_1 is the 13th


def _np_padded_conv(x: np.ndarray, k: np.ndarray, padding: str) -> np.ndarray:
    """(H, W, Cin) -> (H, W, Cout) in float64: numpy's own pad (reflect, edge), then the nine shifted
    products without padding."""
    h, w, _ = x.shape
    mode = {"reflect": "reflect", "replicate": "edge"}[padding]
    if mode == "reflect" and min(h, w) == 1:
        mode = "edge"  # a 1 px side has nothing to mirror: the pixel repeats
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode=mode)
    return sum(xp[dy:dy + h, dx:dx + w] @ k[dy, dx] for dy in range(3) for dx in range(3))


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
@pytest.mark.parametrize("hw", [(1, 1), (1, 4), (2, 3), (3, 3), (4, 5), (11, 10)])
def test_padding_modes_match_numpy_values_and_input_gradients(padding, hw):
    # Values against numpy's pad; input gradients against the transpose of the whole linear map
    # x -> conv(pad(x)), built in float64 from its responses to every basis image. The 11 x 10 case
    # with 256 input channels also goes through the Winograd path (110 positions); the others
    # through XLA's convolution (9 or more positions) or the product of shifted copies.
    import jax.numpy as jnp
    from jaxstyle.model.vgg import conv3x3, winograd_kernels, winograd_pays

    cin = 256 if hw == (11, 10) else 3
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, *hw, cin)).astype(np.float32)
    k = (rng.standard_normal((3, 3, cin, 4)) / np.sqrt(9 * cin)).astype(np.float32)
    b = np.zeros(4, np.float32)
    r = rng.standard_normal((2, *hw, 4)).astype(np.float32)
    k64 = k.astype(np.float64)
    want = np.stack([_np_padded_conv(x[i].astype(np.float64), k64, padding) for i in range(2)])
    if cin == 3:  # the map's matrix, one column per input element (small inputs only)
        n = int(np.prod(x.shape[1:]))
        cols = [_np_padded_conv(e.reshape(x.shape[1:]), k64, padding).ravel() for e in np.eye(n)]
        matrix = np.stack(cols, axis=1)
        want_dx = np.stack([(matrix.T @ r[i].astype(np.float64).ravel()).reshape(x.shape[1:]) for i in range(2)])
    wg = winograd_kernels(jnp.asarray(k)) if cin == 256 else None
    assert (wg is not None) == (cin == 256 and winograd_pays(*hw, cin))
    conv = jax.jit(lambda x: conv3x3(x, k, b, None, wg, padding))
    np.testing.assert_allclose(conv(x), want, rtol=1e-5, atol=1e-4)
    dx = jax.jit(jax.grad(lambda x: jnp.sum(conv3x3(x, k, b, None, wg, padding) * r)))(x)
    if cin == 3:
        np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-4)
    else:  # too large for the matrix: the direct path's gradient (checked above) must agree
        ref = jax.jit(jax.grad(lambda x: jnp.sum(conv3x3(x, k, b, None, None, padding) * r)))(x)
        np.testing.assert_allclose(dx, ref, rtol=1e-5, atol=1e-4)
        # ... and the direct path's against finite differences of numpy's values along one direction.
        v = rng.standard_normal(x.shape)
        eps = 1e-3
        fd = sum(np.sum((_np_padded_conv(x[i] + eps * v[i], k64, padding)
                         - _np_padded_conv(x[i] - eps * v[i], k64, padding)) * r[i]) for i in range(2)) / (2 * eps)
        assert abs(np.vdot(np.asarray(ref, np.float64), v) - fd) < 1e-4 * abs(fd)


def test_padding_zero_is_vgg_own_network_and_others_differ_at_the_edges_only(vgg_params):
    image = load_image(EXAMPLES / "home.jpg", shape=(40, 48))
    zero = vgg19_features(vgg_params, image, ["conv1_2"])["conv1_2"]
    np.testing.assert_array_equal(zero, vgg19_features(vgg_params, image, ["conv1_2"], padding="zero")["conv1_2"])
    for padding in ("reflect", "replicate"):
        other = np.asarray(vgg19_features(vgg_params, image, ["conv1_2"], padding=padding)["conv1_2"])
        diff = np.abs(other - np.asarray(zero)).max(axis=-1)
        assert diff[2:-2, 2:-2].max() < 1e-3 * np.abs(zero).max()  # two 3x3 layers reach 2 px in
        assert diff[0].max() > 1.0 and diff[:, -1].max() > 1.0
    with pytest.raises(ConfigError, match="padding"):
        vgg19_features(vgg_params, image, ["conv1_1"], padding="wrap")


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
def test_padding_on_the_first_layer_only(vgg_params, padding):
    # padding_layers: first pads conv1_1's input (the image) in the given mode and every deeper
    # convolution with zeros: against float64 NumPy, conv1_1 with numpy's pad, then VGG's network.
    from helpers import MEAN_BGR
    image = load_image(EXAMPLES / "home.jpg", shape=(20, 28))
    x = np.asarray(image, np.float64)[..., ::-1] * 255.0 - MEAN_BGR
    p = {n: {k: np.asarray(v, np.float64) for k, v in vgg_params[n].items()} for n in ("conv1_1", "conv1_2", "conv2_1")}
    c11 = np.maximum(_np_padded_conv(x, p["conv1_1"]["kernel"], padding) + p["conv1_1"]["bias"], 0)
    c12 = np.maximum(np_conv3x3(c11, p["conv1_2"]["kernel"], p["conv1_2"]["bias"]), 0)
    pool = c12.reshape(10, 2, 14, 2, -1).mean(axis=(1, 3))
    c21 = np.maximum(np_conv3x3(pool, p["conv2_1"]["kernel"], p["conv2_1"]["bias"]), 0)
    got = vgg19_features(vgg_params, image, ["conv1_1", "conv2_1"], padding=padding, padding_layers="first")
    for name, want in (("conv1_1", c11), ("conv2_1", c21)):
        g = np.asarray(got[name], np.float64)
        assert np.linalg.norm(g - want) / np.linalg.norm(want) < 1e-5, name
    # ... which differs from padding every layer, and from zeros everywhere, near the edges only.
    every = np.asarray(vgg19_features(vgg_params, image, ["conv2_1"], padding=padding)["conv2_1"])
    zero = np.asarray(vgg19_features(vgg_params, image, ["conv2_1"])["conv2_1"])
    for other in (every, zero):
        diff = np.abs(np.asarray(got["conv2_1"]) - other).max(axis=-1)
        assert diff.max() > 1e-2 and diff[2:-2, 2:-2].max() < 1e-3
    with pytest.raises(ConfigError, match="padding_layers must be one of all, first"):
        vgg19_features(vgg_params, image, ["conv1_1"], padding=padding, padding_layers="some")
