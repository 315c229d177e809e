"""Optical flow between a clip's frames, where it can be trusted, and warping along it.

Ruder, Dosovitskiy and Brox, *Artistic style transfer for videos* (GCPR 2016), tie a stylised
frame to its warped neighbour wherever the flow is reliable. Here:

* **Flow**: OpenCV's DIS optical flow (no learned weights, nothing downloaded), on the original
  frames at the run's final size. A flow ``f`` from frame a to frame b is ``(H, W, 2)`` at a's
  pixels, ``(dx, dy)``: pixel p of a is seen at p + f(p) in b. Coarser stages use it resized,
  vectors scaled by the same factor (:func:`resize_flow`).
* **Warp**: :func:`warp` moves b into a's frame, ``warp(b, f)(p) = b(p + f(p))``, bilinear and
  differentiable in JAX; positions outside b repeat its edge (the weights exclude them anyway).
* **Consistency weights** c (:func:`consistency`): 0 where the pixel is disoccluded (forward and
  backward flow disagree), on a motion boundary, or where p + f(p) leaves the frame (by more than
  the edge pixel's half pixel); 1 elsewhere.
  The binary mask is then eroded by one pixel and box-blurred (3 x 3), so the zeros spread a
  little and c falls off smoothly at their edge, as the authors' consistency checker does.
* **Warping error** (:func:`warping_error`), Lai et al., ECCV 2018: the measure of temporal
  consistency, computed with Farneback's flow (another method than the one the run uses).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError

FLOW_HINT = "clips need OpenCV's optical flow: pip install -e \".[video]\" (or pip install opencv-python-headless)"


def require_flow():
    """OpenCV, or one line saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise ConfigError(FLOW_HINT) from None
    return cv2



def gray_u8(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` floats in [0, 1] -> ``(H, W)`` uint8 luminance (Rec. 601), what flow reads."""
    y = frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114
    return np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow from frame ``a`` to frame ``b`` (``(H, W, 3)`` in [0, 1]): ``(H, W, 2)``.

    The ``medium`` preset; OpenCV runs it single-threaded here so the flow, and with it the run,
    is the same whatever the number of cores."""
    cv2 = require_flow()
    cv2.setNumThreads(1)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(gray_u8(a), gray_u8(b), None).astype(np.float32)


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Farneback's optical flow from ``a`` to ``b``: ``(H, W, 2)``; the evaluation's flow."""
    cv2 = require_flow()
    cv2.setNumThreads(1)
    return cv2.calcOpticalFlowFarneback(gray_u8(a), gray_u8(b), None, 0.5, 4, 15, 5, 5, 1.1, 0).astype(np.float32)


def clip_flows(frames: np.ndarray, method=dis_flow) -> tuple[np.ndarray, np.ndarray]:
    """``(forward, backward)``, each ``(F - 1, H, W, 2)``: forward[t] from frame t to t + 1,
    backward[t] from frame t + 1 to t."""
    fwd = [method(frames[t], frames[t + 1]) for t in range(len(frames) - 1)]
    bwd = [method(frames[t + 1], frames[t]) for t in range(len(frames) - 1)]
    h, w = frames.shape[1:3]
    empty = np.zeros((0, h, w, 2), np.float32)
    return (np.stack(fwd) if fwd else empty), (np.stack(bwd) if bwd else empty)


def sample_np(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """NumPy bilinear ``image(p + flow(p))``, edges repeated: ``(H, W, C)``."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    x = np.clip(xx + flow[..., 0], 0, w - 1)
    y = np.clip(yy + flow[..., 1], 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    return ((image[y0, x0] * (1 - fx) + image[y0, x1] * fx) * (1 - fy)
            + (image[y1, x0] * (1 - fx) + image[y1, x1] * fx) * fy)


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
    """``image(p + flow(p))``, bilinear, edges repeated; differentiable in ``image`` and ``flow``.

    Args:
      image: ``(H, W, C)``, the frame to move.
      flow: ``(H, W, 2)`` at the destination's pixels, ``(dx, dy)``.
    Returns:
      ``(H, W, C)``.
    """
    h, w = image.shape[:2]
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype), indexing="ij")
    x = jnp.clip(xx + flow[..., 0], 0, w - 1)
    y = jnp.clip(yy + flow[..., 1], 0, h - 1)
    x0 = jnp.clip(jnp.floor(x), 0, w - 1).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, h - 1).astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _cubic_weights(t: jax.Array) -> list[jax.Array]:
    """Catmull-Rom weights of the samples at offsets -1, 0, 1, 2 for a position t in [0, 1)."""
    t2, t3 = t * t, t * t * t
    return [(-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2, (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2]


def warp_cubic(image: jax.Array, flow: jax.Array) -> jax.Array:
    """:func:`warp` with Catmull-Rom (bicubic) interpolation over 4 x 4 samples, edges repeated.

    A bilinear warp at a fractional offset is a low-pass filter; a clip warps each frame from the
    one before, so the softening compounds frame after frame. Catmull-Rom keeps far more of the
    fine texture (docs/video.md measures both). Shapes as :func:`warp`."""
    h, w = image.shape[:2]
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype), indexing="ij")
    x = jnp.clip(xx + flow[..., 0], 0, w - 1)
    y = jnp.clip(yy + flow[..., 1], 0, h - 1)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    wx, wy = _cubic_weights(x - x0), _cubic_weights(y - y0)
    xs = [jnp.clip(x0 + k, 0, w - 1).astype(jnp.int32) for k in (-1, 0, 1, 2)]
    ys = [jnp.clip(y0 + k, 0, h - 1).astype(jnp.int32) for k in (-1, 0, 1, 2)]
    rows = [sum(image[yi, xi] * wxi[..., None] for xi, wxi in zip(xs, wx)) for yi in ys]
    return sum(r * wyi[..., None] for r, wyi in zip(rows, wy))


#: The clip's warps by name (``video.warp``).
WARPS = {"bilinear": warp, "bicubic": warp_cubic}


@functools.partial(jax.jit, static_argnames="kind")
def warp_batch(images: jax.Array, flows: jax.Array, kind: str = "bilinear") -> jax.Array:
    """:data:`WARPS`'s ``kind`` over a batch ``(N, H, W, C)`` and flows ``(N, H, W, 2)``."""
    return jax.vmap(WARPS[kind])(images, flows)


def inside(flow: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """``(H, W)`` bool: where p + flow(p) stays inside the frame, or within ``margin`` pixels of it
    (the edge pixel's own half pixel: a still edge's flow of +0.01 px is not leaving the frame)."""
    h, w = flow.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    x, y = xx + flow[..., 0], yy + flow[..., 1]
    return (x >= -margin) & (x <= w - 1 + margin) & (y >= -margin) & (y <= h - 1 + margin)


def disoccluded(w_hat: np.ndarray, w_tilde: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: |w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5, with w^ the flow at the
    destination's pixels and w~ the opposite flow sampled at p + w^(p)."""
    back = sample_np(w_tilde, w_hat)
    return np.sum(np.square(back + w_hat), -1) > 0.01 * (np.sum(back**2, -1) + np.sum(w_hat**2, -1)) + 0.5


def motion_boundary(w_hat: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: |grad u|^2 + |grad v|^2 > 0.01 |w^|^2 + 0.002 (central differences)."""
    du = np.gradient(w_hat[..., 0])
    dv = np.gradient(w_hat[..., 1])
    grad = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    return grad > 0.01 * np.sum(w_hat**2, -1) + 0.002


def consistency_mask(w_hat: np.ndarray, w_tilde: np.ndarray, boundaries: bool = True) -> np.ndarray:
    """``(H, W)`` float 0/1 before smoothing: 1 where warping along ``w_hat`` can be trusted."""
    ok = inside(w_hat, 0.5) & ~disoccluded(w_hat, w_tilde)
    if boundaries:
        ok &= ~motion_boundary(w_hat)
    return ok.astype(np.float32)


def _filter3(a: np.ndarray, reduce) -> np.ndarray:
    padded = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return reduce(np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]), axis=0)


def consistency(w_hat: np.ndarray, w_tilde: np.ndarray) -> np.ndarray:
    """Ruder et al.'s per-pixel weights c in [0, 1], ``(H, W)`` float32: the binary mask of
    :func:`consistency_mask`, its zeros spread by one pixel (3 x 3 minimum) and softened (3 x 3
    mean), so pixels next to an occlusion count less too."""
    c = consistency_mask(w_hat, w_tilde)
    return _filter3(_filter3(c, np.min), np.mean).astype(np.float32)


def resize_flow(flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W, 2)`` -> ``(h, w, 2)`` bilinear, vectors scaled by the same factors."""
    h0, w0 = flow.shape[:2]
    if (h0, w0) == tuple(shape):
        return flow
    out = np.asarray(jax.image.resize(jnp.asarray(flow), (*shape, 2), "linear"))
    return (out * np.array([shape[1] / w0, shape[0] / h0], np.float32)).astype(np.float32)


def warping_pairs(original: np.ndarray, method=farneback_flow) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each t, the flow F_{t->t+1} and the binary mask M (disocclusion and out-of-frame checks)
    of the warping error, from the original frames ``(F, H, W, 3)`` with ``method``."""
    out = []
    for t in range(len(original) - 1):
        f = method(original[t], original[t + 1])
        b = method(original[t + 1], original[t])
        out.append((f, inside(f) & ~disoccluded(f, b)))
    return out


def warping_error(stylised: np.ndarray, original: np.ndarray, method=farneback_flow,
                  pairs: list[tuple[np.ndarray, np.ndarray]] | None = None) -> float:
    """Lai et al.'s warping error: for each t, over pixels where M = 1 and over channels, the mean of
    (V_t - warp(V_{t+1}, F_{t->t+1}))^2; averaged over t.

    ``stylised``, ``original``: ``(F, H, W, 3)`` in [0, 1]. F and M come from the original frames
    with ``method`` (default Farneback; :func:`warping_pairs`, or ``pairs`` computed once for
    several stylisations of one clip); M is binary, from the disocclusion and out-of-frame checks.
    """
    errors = []
    for t, (f, m) in enumerate(warping_pairs(original, method) if pairs is None else pairs):
        if not m.any():
            continue
        diff = np.square(np.asarray(stylised[t], np.float64) - sample_np(np.asarray(stylised[t + 1], np.float64), f))
        errors.append(float(diff[m].mean()))
    return float(np.mean(errors)) if errors else float("nan")
