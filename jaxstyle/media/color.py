"""Colour control from Gatys et al., *Controlling Perceptual Factors in Neural Style Transfer*
(CVPR 2017), section 5, as pure NumPy functions on ``(H, W, 3)`` RGB in [0, 1].

* luminance-only transfer: optimise luminance only and keep the photograph's colour channels
  (:func:`rgb_to_yiq`, :func:`match_luminance`, :func:`combine_luminance`);
* colour histogram matching: give the style image the photograph's colour mean and covariance
  before transfer (:func:`match_color_histogram`);
* the simple post-process: keep the result's luminance and the photograph's chroma.
"""

from __future__ import annotations

import numpy as np

# NTSC YIQ: Y is luminance, I and Q the two chroma channels (the 2017 paper's choice).
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB -> YIQ (float64)."""
    return np.asarray(image, np.float64) @ _RGB_TO_YIQ.T


def yiq_to_rgb(image: np.ndarray) -> np.ndarray:
    """``(..., 3)`` YIQ -> RGB (float64, not clipped)."""
    return np.asarray(image, np.float64) @ _YIQ_TO_RGB.T


def gray_rgb(luminance: np.ndarray) -> np.ndarray:
    """``(H, W)`` luminance -> ``(H, W, 3)`` gray RGB float32 (the network's input for luminance-only)."""
    return np.repeat(np.asarray(luminance, np.float32)[..., None], 3, axis=-1)


def match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
    """Style luminance shifted and scaled to the content luminance's mean and standard deviation."""
    s_mean, s_std = style_y.mean(), style_y.std()
    return (style_y - s_mean) * (content_y.std() / max(s_std, 1e-12)) + content_y.mean()


def combine_luminance(luminance: np.ndarray, chroma_from: np.ndarray) -> np.ndarray:
    """RGB with the given ``(H, W)`` luminance and the I, Q chroma of ``chroma_from``; float64."""
    yiq = rgb_to_yiq(chroma_from)
    yiq[..., 0] = luminance
    return yiq_to_rgb(yiq)


def match_color_histogram(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Affine map of the style's RGB so its mean and covariance equal the content's (not clipped).

    x' = C_c^(1/2) C_s^(-1/2) (x - mu_s) + mu_c with symmetric matrix square roots.
    """
    def stats(img):
        flat = np.asarray(img, np.float64).reshape(-1, 3)
        return flat.mean(0), np.cov(flat, rowvar=False, bias=True)

    def sqrtm(c, inverse=False):
        w, v = np.linalg.eigh(c)
        w = np.maximum(w, 1e-10)
        return (v * (w ** (-0.5 if inverse else 0.5))) @ v.T

    mu_s, cov_s = stats(style)
    mu_c, cov_c = stats(content)
    a = sqrtm(cov_c) @ sqrtm(cov_s, inverse=True)
    flat = np.asarray(style, np.float64).reshape(-1, 3)
    return ((flat - mu_s) @ a.T + mu_c).reshape(np.shape(style))
