"""Style losses to choose from (the config's ``style_loss``): the paper's Gram matrices and three
alternatives that compare other statistics of the same VGG-19 responses.

Each loss is one pure function of one layer's features ``(h, w, N)`` and that layer's target, and is
size-independent (a mean over positions, as ``losses: mean`` is), so the artwork's statistics are
taken once per position and serve any size, tile or blend. A target is a dict of arrays (a pytree):

* ``gram``: Eq. 4 of Gatys, Ecker and Bethge (2016), mean-normalised
  (:func:`jaxstyle.model.losses.mean_style_layer_loss`); its target is G / M, an ``(N, N)`` array.
* ``mean_cov``: ``||mu - mu_s||^2 / N + ||C - C_s||_F^2 / N^2``, the squared differences of the
  features' mean and covariance (Li et al. 2017, "Demystifying neural style transfer", show that
  Gram matching is matching these second moments with the mean folded in).
* ``wasserstein``: the squared 2-Wasserstein distance between Gaussian fits of the two feature
  distributions, ``(||mu - mu_s||^2 + tr C + tr C_s - 2 tr (C_s^1/2 C C_s^1/2)^1/2) / N``
  (Dowson and Landau 1982; as a style loss: Kolkin et al. 2019, Mroueh 2019).
* ``histogram``: per-channel histogram matching after Risser et al. 2017, "Stable and controllable
  neural texture synthesis": ``1/(N M) sum_ij (F_ij - Q_j(C_j(F_ij)))^2`` with C_j channel j's
  cumulative histogram and Q_j the artwork's quantile function for it, the remapped target held
  constant.

Every loss here is multiplied by its entry of :data:`DEFAULT_WEIGHTS`, measured so that the default
alpha/beta gives a balance like the Gram loss's (docs/loss-lab.md).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

#: The config's ``style_loss`` choices; ``gram`` is the paper's and the default. ``mrf`` and
#: ``remd`` compare correspondences, not statistics, and ``neighbours`` replaces the photograph's
#: features by the artwork's nearest (:mod:`jaxstyle.model.correspondence`).
STYLE_LOSSES = ("gram", "mean_cov", "wasserstein", "histogram", "mrf", "remd", "neighbours")
#: The style losses whose target is one pool of the artworks' patches or samples, not a blend of
#: per-position statistics: several artworks pool theirs, so only an equal blend is defined.
POOLED = ("mrf", "remd", "neighbours")
#: The config's ``content_loss`` choices: the paper's Eq. 1 (``features``, the default) or
#: STROTSS's self-similarity (:mod:`jaxstyle.model.correspondence`).
CONTENT_LOSSES = ("features", "self_similarity")

#: Each style loss's factor, measured so that the default alpha/beta (0.1) gives the balance the
#: Gram loss gives: the same final mean-normalised content loss as the Gram loss's default run
#: (0.379 for leuvenA x The Starry Night at 256 px), interpolated in log-log from runs at beta 2, 5
#: and 10 (docs/loss-lab.md).
DEFAULT_WEIGHTS = {"gram": 1.0, "mean_cov": 0.6, "wasserstein": 0.22, "histogram": 0.35, "mrf": 0.025, "remd": 0.07,
                   "neighbours": 0.5}
#: Each content loss's factor (docs/loss-lab.md says by what rule).
DEFAULT_CONTENT_WEIGHTS = {"features": 1.0, "self_similarity": 6.0}

#: Points of the artwork's quantile function kept per channel (``histogram``): enough that linear
#: interpolation between them is finer than the responses' own noise, and fixed, so the target's
#: shape does not depend on the artwork's size.
QUANTILES = 256
#: ``histogram``: bins of the generated image's own histogram, per channel.
HISTOGRAM_BINS = 256
#: ``wasserstein``: covariances get this fraction of their mean eigenvalue added on the diagonal, so
#: rank-deficient layers (few positions, many channels) keep a finite matrix square root.
COV_REGULARISATION = 1e-3
#: ``wasserstein``: Newton-Schulz iterations for the matrix square root.
NEWTON_SCHULZ_STEPS = 20


def _flat(features: jax.Array) -> jax.Array:
    """``(h, w, N) -> (M, N)``."""
    return features.reshape(-1, features.shape[-1])


def moments(features: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The mean ``(N,)`` and the second moment per position G / M ``(N, N)`` of ``(h, w, N)`` features."""
    f = _flat(features)
    return jnp.mean(f, axis=0), f.T @ f / f.shape[0]


def quantile_function(features: jax.Array, points: int = QUANTILES) -> jax.Array:
    """Each channel's quantile function at ``(k + 1/2) / points``, ``(points, N)``, from ``(h, w, N)``."""
    f = jnp.sort(_flat(features), axis=0)
    return _resample(f, points)


def _resample(sorted_values: jax.Array, points: int) -> jax.Array:
    """A sorted ``(K, N)`` quantile table read at ``points`` equally spaced levels, ``(points, N)``."""
    k = sorted_values.shape[0]
    levels = (jnp.arange(points) + 0.5) / points * k - 0.5  # in the table's index units
    return jax.vmap(lambda col: jnp.interp(levels, jnp.arange(k, dtype=col.dtype), col), in_axes=1,
                    out_axes=1)(sorted_values)


def statistics(kind: str, features: jax.Array) -> dict[str, jax.Array]:
    """What loss ``kind`` (not ``gram``) needs of the artwork's ``(h, w, N)`` features, all per
    position, so that a weighted sum of several artworks' statistics is their blend."""
    if kind in ("mean_cov", "wasserstein"):
        mean, second = moments(features)
        return {"mean": mean, "second": second}
    if kind == "histogram":
        return {"quantiles": quantile_function(features)}
    raise ValueError(f"unknown style loss {kind!r}")


def sqrtm_psd(a: jax.Array) -> jax.Array:
    """The square root of a symmetric positive semi-definite ``(N, N)`` matrix, by eigendecomposition
    (for a fixed target, computed once)."""
    w, v = jnp.linalg.eigh(a)
    return (v * jnp.sqrt(jnp.maximum(w, 0.0))) @ v.T


def _cov(mean: jax.Array, second: jax.Array) -> jax.Array:
    """The covariance ``(N, N)`` from the mean and the second moment per position."""
    return second - jnp.outer(mean, mean)


def _regularised_cov(mean: jax.Array, second: jax.Array) -> jax.Array:
    cov = _cov(mean, second)
    n = cov.shape[-1]
    return cov + COV_REGULARISATION * jnp.trace(cov) / n * jnp.eye(n, dtype=cov.dtype)


def target(kind: str, stats: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The layer's target for loss ``kind`` (not ``gram``, whose targets :mod:`jaxstyle.model.losses`
    makes) from the artwork's (blended) statistics."""
    if kind == "mean_cov":
        return {"mean": stats["mean"], "cov": _cov(stats["mean"], stats["second"])}
    if kind == "wasserstein":
        cov = _regularised_cov(stats["mean"], stats["second"])
        return {"mean": stats["mean"], "cov_trace": jnp.trace(cov), "cov_sqrt": sqrtm_psd(cov)}
    if kind == "histogram":
        return {"quantiles": stats["quantiles"]}
    raise ValueError(f"unknown style loss {kind!r}")


def mean_cov_layer_loss(features: jax.Array, tgt: dict[str, jax.Array]) -> jax.Array:
    """``||mu - mu_s||^2 / N + ||C - C_s||_F^2 / N^2`` for ``(h, w, N)`` features."""
    mean, second = moments(features)
    cov = _cov(mean, second)
    n = features.shape[-1]
    return jnp.sum(jnp.square(mean - tgt["mean"])) / n + jnp.sum(jnp.square(cov - tgt["cov"])) / n**2


def sqrtm_newton_schulz(a: jax.Array, steps: int = NEWTON_SCHULZ_STEPS) -> jax.Array:
    """The square root of a symmetric positive definite ``(N, N)`` matrix by the coupled Newton-Schulz
    iteration (Higham 2008, Eq. 6.35): matrix products only, so it runs fast on an accelerator
    and differentiates through. ``a`` is first divided by its trace, which puts every eigenvalue
    in (0, 1], where the iteration converges."""
    n = a.shape[-1]
    scale = jnp.trace(a)
    eye = jnp.eye(n, dtype=a.dtype)

    def step(carry, _):
        y, z = carry
        t = 0.5 * (3.0 * eye - z @ y)
        return (y @ t, t @ z), None

    (y, _), _ = jax.lax.scan(step, (a / scale, eye), None, length=steps)
    return y * jnp.sqrt(scale)


def wasserstein_layer_loss(features: jax.Array, tgt: dict[str, jax.Array]) -> jax.Array:
    """``W_2^2 / N`` between Gaussian fits: ``(||mu - mu_s||^2 + tr C + tr C_s
    - 2 tr (C_s^1/2 C C_s^1/2)^1/2) / N`` for ``(h, w, N)`` features (both covariances regularised)."""
    mean, second = moments(features)
    cov = _regularised_cov(mean, second)
    root = tgt["cov_sqrt"]
    cross = sqrtm_newton_schulz(root @ cov @ root)
    w2 = jnp.sum(jnp.square(mean - tgt["mean"])) + jnp.trace(cov) + tgt["cov_trace"] - 2.0 * jnp.trace(cross)
    return w2 / features.shape[-1]


def histogram_remap(features: jax.Array, quantiles: jax.Array, bins: int = HISTOGRAM_BINS) -> jax.Array:
    """R(F): each response moved to the artwork's response of the same rank in its channel.

    The rank comes from the channel's own histogram (``bins`` equal bins between its smallest and
    largest response, linear within a bin, as Risser et al. do), not from a sort, which costs some
    15 times more on a CPU. ``features``: ``(M, N)``; ``quantiles``: the artwork's ``(K, N)``
    quantile table (:func:`quantile_function`). Returns ``(M, N)``.
    """
    m, n = features.shape
    lo, hi = jnp.min(features, axis=0), jnp.max(features, axis=0)
    pos = (features - lo) / (jnp.maximum(hi - lo, 1e-12) / bins)  # in bin units, 0 .. bins
    b = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, bins - 1)
    counts = jnp.zeros((bins, n), features.dtype).at[b, jnp.arange(n)[None, :]].add(1.0)
    below = jnp.cumsum(counts, axis=0) - counts
    cdf = (jnp.take_along_axis(below, b, axis=0) + (pos - b) * jnp.take_along_axis(counts, b, axis=0)) / m
    k = quantiles.shape[0]
    q = jnp.clip(cdf * k - 0.5, 0.0, k - 1.0)  # the table holds levels (i + 1/2) / k
    i0 = jnp.floor(q).astype(jnp.int32)
    i1 = jnp.minimum(i0 + 1, k - 1)
    w = q - i0
    return jnp.take_along_axis(quantiles, i0, axis=0) * (1 - w) + jnp.take_along_axis(quantiles, i1, axis=0) * w


def histogram_layer_loss(features: jax.Array, tgt: dict[str, jax.Array]) -> jax.Array:
    """Risser et al.'s histogram loss ``1/(N M) ||F - R(F)||^2`` for ``(h, w, N)`` features, with R(F)
    the features remapped to the artwork's per-channel histogram (:func:`histogram_remap`).

    The remapped target is held constant (``stop_gradient``): the gradient is ``2 (F - R(F)) /
    (N M)``, a pull of each response towards its histogram-matched value, as in their paper.
    """
    f = _flat(features)
    return jnp.mean(jnp.square(f - jax.lax.stop_gradient(histogram_remap(f, tgt["quantiles"]))))


#: ``kind -> layer loss (features (h, w, N), target) -> scalar``, for every kind but ``gram``, whose
#: loss (with masks and both normalisations) lives in :mod:`jaxstyle.model.losses`.
LAYER_LOSSES: dict[str, Callable[[jax.Array, dict], jax.Array]] = {
    "mean_cov": mean_cov_layer_loss,
    "wasserstein": wasserstein_layer_loss,
    "histogram": histogram_layer_loss,
}
