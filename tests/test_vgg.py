"""VGG-19 forward pass against an independent float64 NumPy implementation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import EXAMPLES, PHOTOS
from helpers import np_layer_names, np_vgg19
from jaxstyle import CONV_NAMES, ConfigError, vgg19_features
from jaxstyle.images import load_image
from jaxstyle.vgg import min_image_side


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
    jaxpr = jax.make_jaxpr(lambda x: vgg19_features(vgg_params, x, ["conv2_1"]))(small_image)
    convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 3  # conv1_1, conv1_2, conv2_1


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
