"""Mean-activation normalisation of VGG-19 (Gatys et al. 2016, section 2).

The paper rescales the network "such that the mean activation of each convolutional filter over
images and positions is equal to one". Because ReLU and pooling are positively homogeneous,
dividing filter k of layer l (its kernel slice and bias) by its mean m_k scales that response by
1/m_k, and multiplying the next layer's input channel k by m_k restores the next layer exactly.
Going layer by layer therefore changes the network only by one positive scale per filter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..core.errors import ImageError
from ..media.images import IMAGE_SUFFIXES, load_image
from .vgg import CAFFE_MEAN_BGR, CONV_NAMES, LAYER_NAMES


def normalize_mean_activation(
    params: Mapping[str, Mapping[str, np.ndarray]],
    images: Sequence[np.ndarray],
    pooling: str = "max",
) -> dict[str, dict[str, np.ndarray]]:
    """Rescale raw VGG-19 weights so each filter's mean rectified response is 1 on ``images``.

    Args:
      params: raw weights in this package's layout (HWIO kernels, Caffe input convention).
      images: calibration images, each ``(H, W, 3)`` RGB in [0, 1]; sizes may differ. The mean is
        taken over all positions of all images together.
      pooling: pooling used while measuring; the original network (and the paper) used max.

    Returns:
      New float32 parameters; a filter that never fires (mean 0) is left unscaled.
    """
    if not images:
        raise ImageError("normalisation needs at least one calibration image")
    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling must be 'avg' or 'max', not {pooling!r}")
    kernels = {n: np.array(params[n]["kernel"], np.float64) for n in CONV_NAMES}
    biases = {n: np.array(params[n]["bias"], np.float64) for n in CONV_NAMES}
    out: dict[str, dict[str, np.ndarray]] = {}
    # Float64 throughout: a filter that rarely fires has a small mean made of large cancelling
    # terms, and float32 activations would miss 1 by far more than 1e-4 there. Earlier layers are
    # final once normalised, so each image's activations are carried forward (one convolution per
    # layer, not a forward pass from the input), computed from the float32 weights that are stored.
    acts = [np.asarray(img, np.float64)[..., ::-1] * 255.0 - CAFFE_MEAN_BGR for img in images]
    for i, name in enumerate(CONV_NAMES):
        k = kernels[name].astype(np.float32).astype(np.float64)
        b = biases[name].astype(np.float32).astype(np.float64)
        outs = [np.maximum(_conv3x3_f64(a, k, b), 0.0) for a in acts]
        mean = sum(o.reshape(-1, o.shape[-1]).sum(0) for o in outs) / sum(
            o.shape[0] * o.shape[1] for o in outs)
        scale = np.where(mean > 0, mean, 1.0)
        out[name] = {"kernel": (k / scale).astype(np.float32), "bias": (b / scale).astype(np.float32)}
        if i + 1 == len(CONV_NAMES):
            break
        kernels[CONV_NAMES[i + 1]] *= scale[None, None, :, None]
        k, b = (out[name][p].astype(np.float64) for p in ("kernel", "bias"))
        acts = [np.maximum(_conv3x3_f64(a, k, b), 0.0) for a in acts]
        if LAYER_NAMES[LAYER_NAMES.index(name) + 1].startswith("pool"):
            acts = [_pool_f64(a, pooling) for a in acts]
    return out


def _conv3x3_f64(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, Cin) float64 3x3 convolution, zero padding 1, as nine shifted matrix products."""
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    y = np.broadcast_to(b, (h, w, k.shape[-1])).copy()
    for dy in range(3):
        for dx in range(3):
            y += xp[dy:dy + h, dx:dx + w] @ k[dy, dx]
    return y


def _pool_f64(x: np.ndarray, pooling: str) -> np.ndarray:
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    blocks = x[:h, :w].reshape(h // 2, 2, w // 2, 2, x.shape[-1])
    return blocks.max(axis=(1, 3)) if pooling == "max" else blocks.mean(axis=(1, 3))


def load_calibration_images(folder: str | Path, max_side: int = 256) -> list[np.ndarray]:
    """Every readable image in ``folder``, as RGB [0, 1] arrays with longest side ``max_side``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"calibration folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"no images in calibration folder {folder}")
    return [load_image(p, size=max_side) for p in files]
