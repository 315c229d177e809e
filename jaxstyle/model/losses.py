"""The paper's losses, one small pure function per equation, and the objective they make.

Equation numbers are those of Gatys, Ecker and Bethge, *Image Style Transfer Using Convolutional
Neural Networks* (CVPR 2016). Features are ``(..., h, w, N_l)`` arrays (the paper's F^l with its
M_l = h * w positions laid out spatially); every function works on any leading batch shape and
reduces only over the axes its equation sums.

Two normalisations (:data:`NORMALISATIONS`, the config's ``losses`` key):

* ``"paper"``: Eq. 1 and Eq. 4 as printed. L_content sums N_l M_l squared differences, so it grows
  with the image's area while L_style does not, and the alpha/beta that gives a look depends on the
  image size.
* ``"mean"``: the convention of the authors' released code. L_content is a mean over the N_l M_l
  responses and E_l compares Gram matrices per position, G^l / M_l against A^l / M_l^style, so
  neither term depends on the image size and one alpha/beta gives the same balance at any size.

Loss weights are arrays inside a :class:`LossWeights` pytree rather than Python constants, so one
compiled objective can be ``vmap``-ed over alpha, beta and per-layer weights (w_l = 0 switches a
layer off without changing the program).
"""

from __future__ import annotations

import traceback
from types import MappingProxyType
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError
from . import correspondence as corr
from .style_losses import CONTENT_LOSSES, DEFAULT_CONTENT_WEIGHTS, DEFAULT_WEIGHTS, LAYER_LOSSES, POOLED, STYLE_LOSSES
from .style_losses import statistics
from .style_losses import target as style_target
from .vgg import LAYERS, check_layers, layer_stride, vgg19_features


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Eq. 1: L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2.

    Args:
      features: F^l, ``(..., h, w, N_l)``.
      target: P^l, the photograph's responses, same shape (or broadcastable).
    Returns:
      ``(...)``, summed over positions and filters.
    """
    return 0.5 * jnp.sum(jnp.square(features - target), axis=(-3, -2, -1))


def mean_content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Eq. 1, mean-normalised: 1 / (N_l M_l) sum_ij (F^l_ij - P^l_ij)^2.

    Args:
      features: F^l, ``(..., h, w, N_l)``.
      target: P^l, same shape (or broadcastable).
    Returns:
      ``(...)``, the mean squared difference over positions and filters.
    """
    return jnp.mean(jnp.square(features - target), axis=(-3, -2, -1))


def gram_matrix(features: jax.Array) -> jax.Array:
    """Eq. 3: G^l_ij = sum_k F^l_ik F^l_jk.

    Args:
      features: ``(..., h, w, N_l)``.
    Returns:
      ``(..., N_l, N_l)``, unnormalised (the 1/(4 N^2 M^2) factor lives in Eq. 4).
    """
    return _gram(features.reshape(features.shape[:-3] + (-1, features.shape[-1])))


@jax.custom_jvp
def _gram(f: jax.Array) -> jax.Array:
    """F^T F of ``(..., M, N)`` features, ``(..., N, N)``."""
    return jnp.einsum("...mi,...mj->...ij", f, f)


@_gram.defjvp
def _gram_jvp(primals, tangents):
    # d(F^T F) = A + A^T with A = dF^T F. Autodiff of the einsum would differentiate each factor
    # separately, so the gradient F (C + C^T) took two (M x N x N) products; written this way its
    # transpose symmetrises the cotangent first and needs one. dF^T F rather than F^T dF: under
    # vmap, XLA:CPU then fuses the transposed product into its library call instead of writing an
    # (N, M) array that the ReLU's gradient reads across (docs/performance.md). A custom JVP (not
    # VJP) keeps forward mode and Hessian-vector products working.
    (f,), (df,) = primals, tangents
    a = jnp.einsum("...mi,...mj->...ij", df, f)
    return _gram(f), a + jnp.swapaxes(a, -1, -2)


def style_layer_loss(gram: jax.Array, target_gram: jax.Array, num_positions: int) -> jax.Array:
    """Eq. 4: E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2.

    Args:
      gram: G^l, ``(..., N_l, N_l)``.
      target_gram: A^l, the artwork's Gram matrix, ``(N_l, N_l)`` or broadcastable.
      num_positions: M_l, the number of positions (h * w) of the generated image's feature map.
    Returns:
      ``(...)``.
    """
    n = gram.shape[-1]
    return jnp.sum(jnp.square(gram - target_gram), axis=(-2, -1)) / (4.0 * n**2 * num_positions**2)


def mean_style_layer_loss(gram: jax.Array, target_gram: jax.Array, num_positions: int | jax.Array) -> jax.Array:
    """Eq. 4, mean-normalised: E_l = 1 / N_l^2 sum_ij (G^l_ij / M_l - A^l_ij / M_l^style)^2.

    Args:
      gram: G^l, ``(..., N_l, N_l)``.
      target_gram: A^l / M_l^style, the artwork's Gram matrix per position (the style image's own
        number of positions), ``(N_l, N_l)`` or broadcastable; so any size of artwork gives the
        same target.
      num_positions: M_l of the generated image's feature map.
    Returns:
      ``(...)``. With the artwork at the photograph's size this is 4 times Eq. 4's E_l.
    """
    n = gram.shape[-1]
    return jnp.sum(jnp.square(gram / num_positions - target_gram), axis=(-2, -1)) / n**2


def style_loss(layer_losses: Mapping[str, jax.Array], layer_weights: Mapping[str, jax.Array]) -> jax.Array:
    """Eq. 5: L_style = sum_l w_l E_l."""
    return sum(layer_weights[name] * e for name, e in layer_losses.items())


def total_loss(l_content: jax.Array, l_style: jax.Array, alpha: jax.Array, beta: jax.Array) -> jax.Array:
    """Eq. 7: L_total = alpha L_content + beta L_style."""
    return alpha * l_content + beta * l_style


def total_variation(image: jax.Array) -> jax.Array:
    """Squared total variation, sum of squared differences of neighbouring pixels.

    Not in the paper (which uses no image prior); a common smoothness term against the
    low-level noise the paper names as a limitation. ``(..., H, W, C) -> (...)``.
    """
    dy = jnp.diff(image, axis=-3)
    dx = jnp.diff(image, axis=-2)
    return jnp.sum(jnp.square(dy), axis=(-3, -2, -1)) + jnp.sum(jnp.square(dx), axis=(-3, -2, -1))


def out_of_range(image: jax.Array) -> jax.Array:
    """Mean squared distance of the image's values from [0, 1], 0 inside: ``(..., H, W, C) -> (...)``.

    Not in the paper. The pixels are optimised unbounded but written clipped to [0, 1]; where the
    optimiser pushed values past either end (a white ground: brighter than white), the written image
    is not the optimised one and its Eq. 5 style loss can be several times higher
    (docs/calibration.md). This term, a quadratic penalty, keeps them in; its gradient is
    continuous, so L-BFGS's curvature pairs stay valid, unlike projecting each step.
    """
    excess = image - jnp.clip(image, 0.0, 1.0)
    return jnp.mean(jnp.square(excess), axis=(-3, -2, -1))


#: :func:`lattice_energy`'s Gaussian, in pixels: its passband around the 2-px periods is about
#: 1/(2 pi 6) = 0.027 cycles per pixel wide, so a lattice in phase over tens of pixels falls in it
#: while fine texture, whose phase wanders, mostly does not (docs/highres.md).
LATTICE_SIGMA = 6.0
#: The energy is taken on 4 x 4 means (the Gaussian at a quarter of the size): 1/16 of the work,
#: and the means' own passband (first zero at 1/4 cycle per pixel) is far wider than the Gaussian's.
LATTICE_POOL = 4


def lattice_energy(image: jax.Array, sigma: float = LATTICE_SIGMA) -> jax.Array:
    """The energy of a 2-px lattice in phase over a neighbourhood: the image's 2-px periods
    (columns, rows, a chequer) moved to zero frequency by multiplying with (-1)^x, (-1)^y or
    (-1)^(x+y), each blurred by a Gaussian of ``sigma`` px (valid positions only), squared and
    averaged over positions and channels; the three summed. A lattice of amplitude a scores a^2.
    Computed on 4 x 4 means of the flipped image, after [-1, 2, -1] / 4 along the flipped axes;
    an image too small for one Gaussian there (under 38 px a side at ``sigma`` 6) scores 0.

    Not in the paper. Its average pooling cancels exactly such patterns (every 2 x 2 cell sums them to
    0), so only the first layers see them: the optimiser adds them where conv1_1's Gram matrix asks
    for fine detail, and the paper's loss hardly removes them (docs/highres.md). A mean, like
    ``losses: mean``'s terms, so its weight means the same at every size and in every tile.
    ``(H, W, 3) -> ()``.
    """
    q = LATTICE_POOL
    # The 2-px period along x (or y) is first isolated by [-1, 2, -1] / 4 (1 there, 0 for a flat or
    # linear run of pixels): the 4 x 4 means pass a trace of the low frequencies the sign flip moves
    # next to 0, and a photograph's low frequencies are strong.
    hx = lambda a: (2 * a[:, 1:-1] - a[:, :-2] - a[:, 2:]) / 4  # noqa: E731
    hy = lambda a: (2 * a[1:-1] - a[:-2] - a[2:]) / 4  # noqa: E731
    s = sigma / q
    g = np.exp(-0.5 * (np.arange(-int(3 * s), int(3 * s) + 1) / s) ** 2)
    taps = [float(v) for v in g / g.sum()]
    n = len(taps)
    total = jnp.zeros((), image.dtype)
    # Columns (the sign flips along x), rows (along y), chequer (both).
    for a, fx, fy in ((hx(image[1:-1]), 1, 0), (hy(image[:, 1:-1]), 0, 1), (hx(hy(image)), 1, 1)):
        h, w = a.shape[0] // q * q, a.shape[1] // q * q
        if h // q < n or w // q < n:
            return jnp.zeros((), image.dtype)
        sx = jnp.where(jnp.arange(w) % 2 * fx == 1, -1.0, 1.0).astype(image.dtype)[None, :, None]
        sy = jnp.where(jnp.arange(h) % 2 * fy == 1, -1.0, 1.0).astype(image.dtype)[:, None, None]
        m = (a[:h, :w] * sx * sy).reshape(h // q, q, w // q, q, -1).mean(axis=(1, 3))
        m = sum(t * m[i:i + h // q - n + 1] for i, t in enumerate(taps))
        m = sum(t * m[:, i:i + w // q - n + 1] for i, t in enumerate(taps))
        total = total + jnp.mean(jnp.square(m))
    return total


def temporal_loss(image: jax.Array, prior: jax.Array, weight: jax.Array) -> jax.Array:
    """Ruder, Dosovitskiy and Brox (GCPR 2016), Eq. 7, mean-normalised: the temporal term
    1 / (3 H W) sum_k c_k (x_k - w_k)^2, over pixels k and channels.

    Not in Gatys et al.: it ties a clip's frame to its neighbour's stylised frame warped along the
    optical flow (:func:`jaxstyle.media.flow.warp`), where the flow can be trusted.

    Args:
      image: x, the frame being optimised, ``(..., H, W, 3)``.
      prior: w, the neighbour's stylised frame warped into this one, same shape; held constant.
      weight: c, the per-pixel consistency weights in [0, 1], ``(..., H, W)``.
    Returns:
      ``(...)``.
    """
    return jnp.mean(weight[..., None] * jnp.square(image - prior), axis=(-3, -2, -1))


#: The config's ``losses`` key: Eq. 1 and 4 as printed, or their mean-normalised form.
NORMALISATIONS = ("mean", "paper")


class Targets(NamedTuple):
    """What the generated image is matched against, computed once before optimisation.

    content: ``{layer: P^l (h, w, N_l)}`` from the photograph.
    style: ``{layer: A^l (N_l, N_l)}`` from the artwork resized to the photograph's size, or with
      masks ``{layer: (K, N_l, N_l)}``, one target per masked region. With ``losses="mean"`` these
      are per position (A^l / M_l^style), with ``"paper"`` for the generated image's (or region's)
      number of positions, as Eq. 4 compares them.
    content_image: the photograph itself ``(H, W, 3)``, for terms that compare pixels.
    masks: ``None``, or ``{layer: (K, h, w)}`` region masks at each style layer's resolution.
    prior, prior_weight: a clip's frame only: the stylised frames it is tied to (its neighbour, and
      in sequential mode the first frame), each warped into it, ``(J, H, W, 3)``, and their
      consistency weights ``(J, H, W)``; the ``temporal`` term sums over the J ties.
    hold: a clip's frame only: ``(H, W)``, 1 where the pixel keeps its start value (still in the
      source, :mod:`jaxstyle.driver.clip`), 0 where it is optimised.
    """

    content: dict[str, jax.Array]
    style: dict[str, jax.Array]
    content_image: jax.Array
    masks: dict[str, jax.Array] | None = None
    prior: jax.Array | None = None
    prior_weight: jax.Array | None = None
    hold: jax.Array | None = None


def _grid_size(shape: Sequence[int], layers: Sequence[str]) -> int:
    """Positions of the finest grid among ``layers`` for an image of ``shape`` ``(H, W, ...)``."""
    return c_positions((*shape[:2], 3), corr.finest(layers))


def _channels(layer: str) -> int:
    """N_l, the number of channels of ``layer``'s responses."""
    return next(cout for name, _, cout in LAYERS if name == layer)


def c_positions(image_shape: Sequence[int], layer: str) -> int:
    """M_l, the number of positions of ``layer``'s responses for an image of ``image_shape``."""
    h, w = int(image_shape[-3]), int(image_shape[-2])
    for _ in range(layer_stride(layer).bit_length() - 1):
        h, w = h // 2, w // 2
    return h * w


def downsample_masks(masks: jax.Array, layer: str) -> jax.Array:
    """``(K, H, W)`` masks averaged 2x2 (floor, like the network's pooling) to ``layer``'s size."""
    for _ in range(layer_stride(layer).bit_length() - 1):
        k, h, w = masks.shape
        masks = masks[:, : h // 2 * 2, : w // 2 * 2].reshape(k, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return masks


def guided_style_layer_loss(features: jax.Array, target_grams: jax.Array, masks: jax.Array,
                            losses: str = "paper") -> jax.Array:
    """Eq. 4 per masked region (guided Gram matrices, Gatys et al. 2017, section 4), summed.

    Args:
      features: ``(h, w, N_l)``; masks: ``(K, h, w)``. Region k's Gram matrix is that of F * m_k,
        and its M_k = sum(m_k); a region of zero area contributes nothing.
      target_grams: ``(K, N_l, N_l)``: with ``losses="paper"`` each region's target A_k for its
        area (Eq. 4), with ``"mean"`` the artwork's Gram matrix per position (the mean form).
    """
    guided = features[None] * masks[..., None]
    area = jnp.sum(masks, axis=(-2, -1))
    safe = jnp.maximum(area, 1e-12)
    if losses == "mean":
        e = mean_style_layer_loss(gram_matrix(guided), target_grams, safe[:, None, None])
    else:
        e = style_layer_loss(gram_matrix(guided), target_grams, 1) / safe ** 2
    return jnp.sum(jnp.where(area > 0, e, 0.0))


class LossWeights(NamedTuple):
    """All loss weights as arrays (scalars for one variant, ``(V,)`` leaves for a batch).

    alpha, beta: Eq. 7's weights. content / style: per-layer weights (Eq. 5's w_l for style).
    terms: weight of each extra term by name (e.g. ``{"tv": ...}``). seed: see below.
    """

    alpha: jax.Array
    beta: jax.Array
    content: dict[str, jax.Array]
    style: dict[str, jax.Array]
    terms: dict[str, jax.Array]
    #: The variant's seed (uint32), where the objective samples positions (``remd``,
    #: ``self_similarity``): the positions are drawn from it, so they stay fixed within a stage.
    seed: jax.Array | None = None


#: An extra loss term: ``term(image (H, W, 3), features {layer: (h, w, C)}, targets) -> scalar``.
#: A term may carry a ``layers`` attribute, the VGG-19 layers it reads from ``features``.
LossTerm = Callable[[jax.Array, Mapping[str, jax.Array], Targets], jax.Array]

#: The built-in extra terms, selectable by name from a config (``terms: {tv: 1e-3}``). Terms of
#: your own come from a file (``terms: {path/to/file.py:function: 1.0}``, :mod:`jaxstyle.model.terms`), or
#: as a mapping passed to :class:`Objective`.
TERMS: Mapping[str, LossTerm] = MappingProxyType({
    "tv": lambda image, feats, targets: total_variation(image),
    # Values outside [0, 1], which writing the image would clip: ``weighting: auto`` adds it for a
    # sparse artwork (engine/balance.py), ``terms: {range: 1000}`` to any run.
    "range": lambda image, feats, targets: out_of_range(image),
    # The config's top-level ``lattice`` weight (on by default with ``losses: mean``).
    "lattice": lambda image, feats, targets: lattice_energy(image),
    # A clip's frames only (the config's top-level ``temporal`` weight): 0 without a prior.
    # Several priors (a leading axis: the previous frame, the first) each count in full.
    "temporal": lambda image, feats, targets: (jnp.zeros((), image.dtype) if targets.prior is None else
                                               jnp.sum(temporal_loss(image, targets.prior, targets.prior_weight))),
})


def call_term(name: str, fn: LossTerm, image: jax.Array, feats: Mapping[str, jax.Array],
              targets: Targets) -> jax.Array:
    """Term ``name``'s value, a scalar. A term that raises, or returns anything but one number, is
    a :class:`ConfigError` naming it (and the line of its own file where it failed): terms run
    while the program is traced, before any optimisation."""
    try:
        value = jnp.asarray(fn(image, feats, targets), image.dtype)
    except ConfigError:
        raise
    except Exception as exc:  # the term's own failure, whatever it is, is reported, not a traceback
        own_file = getattr(getattr(fn, "__code__", None), "co_filename", None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == own_file]
        where = f" (line {frames[-1].lineno})" if frames else ""
        raise ConfigError(f"term {name} failed{where}: {type(exc).__name__}: {exc}") from None
    if value.shape != ():
        raise ConfigError(f"term {name} must return a scalar, not an array of shape {value.shape}")
    return value


@dataclass(frozen=True)
class Objective:
    """The static structure of a loss: which layers, which pooling and padding, which extra terms, which
    normalisation of Eq. 1 and 4 (``losses``: ``"mean"`` or ``"paper"``, see the module docstring)
    and which style loss (``style_loss``: the paper's ``"gram"`` or one of
    :data:`jaxstyle.model.style_losses.STYLE_LOSSES`, which need ``losses="mean"`` and no masks).

    Everything numeric (weights, targets, the network) is an argument of :meth:`__call__`, so a
    single compiled function serves every variant of a batch.
    """

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: str = "avg"
    terms: tuple[str, ...] = ()
    remat: bool = False
    losses: str = "mean"
    term_fns: Mapping[str, LossTerm] = field(default_factory=lambda: dict(TERMS))
    style_loss: str = "gram"
    padding: str = "zero"
    padding_layers: str = "all"
    content_loss: str = "features"
    mrf_patch: int = 3
    mrf_stride: int = 2
    samples: int = 1024

    def __post_init__(self):
        if self.losses not in NORMALISATIONS:
            raise ValueError(f"losses must be one of {NORMALISATIONS}, not {self.losses!r}")
        if self.style_loss not in STYLE_LOSSES:
            raise ValueError(f"style_loss must be one of {STYLE_LOSSES}, not {self.style_loss!r}")
        if self.content_loss not in CONTENT_LOSSES:
            raise ValueError(f"content_loss must be one of {CONTENT_LOSSES}, not {self.content_loss!r}")
        if (self.style_loss != "gram" or self.content_loss != "features") and self.losses != "mean":
            raise ValueError(f"style_loss {self.style_loss!r} and content_loss {self.content_loss!r} "
                             "need losses='mean'")

    @property
    def samples_positions(self) -> bool:
        """Whether the objective reads a variant's seed (:attr:`LossWeights.seed`): it samples positions."""
        return self.style_loss == "remd" or self.content_loss == "self_similarity"

    def match_bytes(self, shape: Sequence[int], artwork_shapes: Sequence[Sequence[int]]) -> int:
        """Memory per variant of the matrices the correspondence losses build for an image of
        ``shape`` ``(H, W)`` against artworks of ``artwork_shapes``: the patch similarities of
        ``mrf`` (output patches x artwork patches, every layer), the cost matrices of ``remd``
        (samples x the artworks' samples) and the self-similarity matrices (samples squared, two),
        each counted three times over (the matrix, its gradient, a temporary); 0 for the others."""
        total = 0
        if self.style_loss == "mrf":
            for l in self.style_layers:
                out = corr.patch_count(tuple(shape[:2]), l, self.mrf_patch, self.mrf_stride)
                art = sum(corr.patch_count(tuple(a[:2]), l, self.mrf_patch, self.mrf_stride) for a in artwork_shapes)
                total += 3 * out * art
        if self.style_loss == "remd":
            n = min(self.samples, _grid_size(shape, self.style_layers))
            m = sum(min(self.samples, _grid_size(a, self.style_layers)) for a in artwork_shapes)
            width = sum(_channels(l) for l in self.style_layers)
            total += 3 * (2 * n * m + 2 * width * width)
        if self.style_loss == "neighbours":  # the search's block x artwork similarities (targets only)
            art = sum(corr.cell_count(tuple(a[:2]), self.style_layers) for a in artwork_shapes)
            total += 2 * corr.NEIGHBOUR_BLOCK * art
        if self.content_loss == "self_similarity":
            n = min(self.samples, _grid_size(shape, self.content_layers))
            total += 3 * 2 * n * n
        return 4 * total

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer the forward pass computes: content, style and those the extra terms read."""
        term_layers = tuple(l for t in self.terms for l in getattr(self.term_fns[t], "layers", ()))
        check_layers(term_layers)
        return tuple(dict.fromkeys(self.content_layers + self.style_layers + term_layers))

    def style_grams(self, params, style_image: jax.Array | Sequence[jax.Array]) -> dict[str, Any]:
        """The artwork(s)' statistics per position, ``{layer: (S, N_l, N_l)}`` Gram matrices G^l / M_l
        (Eq. 3) for ``style_loss="gram"``, ``{layer: {name: (S, ...)}}`` for the other statistics
        (:func:`jaxstyle.model.style_losses.statistics`); for the correspondence losses one pool of
        every artwork's patches (``mrf``: ``{layer: {"patches", "unit": (P, D)}}``), sampled cells and
        colours (``remd``: ``{"cells": {layer: (m, N_l)}, "rgb": (m, 3)}``) or grid cells
        (``neighbours``: ``{"cells": {layer: (m, N_l)}}``).

        Divided by M_l they no longer depend on the artwork's size: they are the mean form's
        targets, and Eq. 4's target for any region of the generated image is this times that
        region's M_l (see :meth:`targets_from_grams`).
        ``style_image``: one ``(h, w, 3)`` image or a sequence of S of them (sizes may differ).
        """
        styles = [style_image] if not isinstance(style_image, (list, tuple)) else list(style_image)
        feats = [vgg19_features(params, s, self.style_layers, self.pooling, padding=self.padding,
                                padding_layers=self.padding_layers) for s in styles]
        if self.style_loss == "mrf":  # every artwork's patches, one set per layer
            return {l: corr.mrf_target([f[l] for f in feats], self.mrf_patch, self.mrf_stride)
                    for l in self.style_layers}
        if self.style_loss == "neighbours":  # every artwork's hypercolumns on the grid, one pool
            cells = [corr.grid_cells(f, self.style_layers) for f in feats]
            return {"cells": jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *cells)}
        if self.style_loss == "remd":  # each artwork's hypercolumns at positions drawn from its index
            picks = []
            for k, (s, f) in enumerate(zip(styles, feats)):
                top = f[corr.finest(self.style_layers)]
                pos = corr.sample_positions(jax.random.PRNGKey(k), top.shape[:2], self.samples)
                picks.append({"cells": corr.layer_cells(f, self.style_layers, pos),
                              "rgb": corr.pixels_at(s, f, self.style_layers, pos)})
            return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *picks)
        if self.style_loss != "gram":
            per_style = [{l: statistics(self.style_loss, f[l]) for l in self.style_layers} for f in feats]
            return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *per_style)
        return {l: jnp.stack([gram_matrix(f[l]) / (f[l].shape[-3] * f[l].shape[-2]) for f in feats])
                for l in self.style_layers}

    def targets_from_grams(self, params, content_image: jax.Array, grams: Mapping[str, jax.Array],
                           blend: Sequence[float] | None = None, masks: jax.Array | None = None) -> Targets:
        """Targets for ``content_image`` (a whole photograph or one tile of it) from per-position Grams.

        ``"mean"``: A^l / M^l = sum_k w_k G_k^l / M_k^l, the blend of per-position Gram matrices.
        ``"paper"``: A^l = M_l * sum_k w_k G_k^l / M_k^l, with M_l the positions of
        ``content_image``'s feature map, so Eq. 4 compares like with like at any size; with masks,
        region k's target uses that region's area in ``content_image`` instead of M_l.
        """
        photo_layers = self.content_layers + (self.style_layers if self.style_loss == "neighbours" else ())
        c = vgg19_features(params, content_image, tuple(dict.fromkeys(photo_layers)), self.pooling,
                           padding=self.padding, padding_layers=self.padding_layers)
        region_masks = None
        if self.style_loss == "neighbours":  # the photograph's grid, each position the artwork's nearest
            query = corr.grid_cells(c, self.style_layers)
            style = {"cells": corr.nearest_neighbours(query, grams["cells"])}
            c = {l: c[l] for l in self.content_layers}
        elif self.style_loss in POOLED:  # one set of patches or samples for all artworks (equal blend)
            style = dict(grams)
        elif self.style_loss != "gram":  # per-position statistics, blended, then the loss's own target
            n = len(blend) if blend is not None else jax.tree_util.tree_leaves(grams)[0].shape[0]
            w = jnp.asarray(blend if blend is not None else [1.0 / n] * n, jnp.float32)
            style = {l: style_target(self.style_loss,
                                     jax.tree_util.tree_map(lambda a: jnp.tensordot(w, a, axes=1), grams[l]))
                     for l in self.style_layers}
        elif masks is None:
            n = next(iter(grams.values())).shape[0] if grams else 1
            w = jnp.asarray(blend if blend is not None else [1.0] * n, jnp.float32)
            style = {l: jnp.tensordot(w, grams[l], axes=1) for l in self.style_layers}
            if self.losses == "paper":
                style = {l: c_positions(content_image.shape, l) * a for l, a in style.items()}
        else:
            region_masks = {l: downsample_masks(masks, l) for l in self.style_layers}
            style = {l: grams[l] for l in self.style_layers}
            if self.losses == "paper":
                style = {l: jnp.sum(region_masks[l], axis=(-2, -1))[:, None, None] * a for l, a in style.items()}
        return Targets(content=dict(c), style=style, content_image=content_image, masks=region_masks)

    def targets(self, params, content_image: jax.Array, style_image: jax.Array | Sequence[jax.Array],
                blend: Sequence[float] | None = None, masks: jax.Array | None = None) -> Targets:
        """P^l of the photograph and A^l of the artwork(s), computed once.

        Args:
          content_image: ``(H, W, 3)``.
          style_image: one ``(h, w, 3)`` image or a sequence of them. The paper resizes the
            artwork to the photograph's size; at another size (a style scale) its Gram matrix is
            taken per position (the mean form) or rescaled by M_generated / M_style (Eq. 4), so
            that like is compared with like.
          blend: weights of several style images (summing to 1): A^l = sum_k w_k A_k^l.
          masks: ``(K, H, W)`` in [0, 1], one per style image: guided Gram matrices (Gatys et al.
            2017) match style k only inside mask k; where no mask covers, no style is matched.
        """
        return self.targets_from_grams(params, content_image, self.style_grams(params, style_image),
                                       blend, masks)

    def parts(self, image: jax.Array, params, targets: Targets, weights: LossWeights) -> dict[str, jax.Array]:
        """``{"total", "content", "style", <term>...}`` for one image ``(H, W, 3)``.

        "content" is sum_l w_l L_content^l (Eq. 1), "style" is L_style (Eq. 5), both before alpha
        and beta and in the objective's normalisation; "total" is Eq. 7 plus each extra term times
        its weight.
        """
        if targets.hold is not None:
            # Held pixels: same value, zero gradient. L-BFGS's directions are combinations of
            # gradients and earlier steps, all zero there, so the solver never moves them.
            image = jnp.where(targets.hold[..., None] > 0, jax.lax.stop_gradient(image), image)
        feats = vgg19_features(params, image, self.layers, self.pooling, self.remat, self.padding,
                               self.padding_layers)
        mean = self.losses == "mean"
        layer_content = mean_content_loss if mean else content_loss
        layer_style = mean_style_layer_loss if mean else style_layer_loss
        key = jax.random.PRNGKey(0 if weights.seed is None else weights.seed) if self.samples_positions else None
        if self.content_loss == "self_similarity":
            pos = corr.sample_positions(jax.random.fold_in(key, 1),
                                        feats[corr.finest(self.content_layers)].shape[:2], self.samples)
            l_content = DEFAULT_CONTENT_WEIGHTS["self_similarity"] * corr.self_similarity_loss(
                corr.hypercolumns(corr.layer_cells(feats, self.content_layers, pos), weights.content),
                corr.hypercolumns(corr.layer_cells(targets.content, self.content_layers, pos), weights.content))
        else:
            l_content = sum(weights.content[l] * layer_content(feats[l], targets.content[l])
                            for l in self.content_layers)
        if self.style_loss == "remd":  # one term over every layer's hypercolumn, w_l inside it
            pos = corr.sample_positions(key, feats[corr.finest(self.style_layers)].shape[:2], self.samples)
            tgt = targets.style
            l_style = corr.remd_loss(
                corr.hypercolumns(corr.layer_cells(feats, self.style_layers, pos), weights.style),
                corr.pixels_at(image, feats, self.style_layers, pos),
                corr.hypercolumns({l: tgt["cells"][l] for l in self.style_layers}, weights.style), tgt["rgb"])
        elif self.style_loss == "neighbours":  # likewise
            l_style = corr.neighbours_loss(corr.grid_cells(feats, self.style_layers), targets.style["cells"],
                                           weights.style)
        else:  # Eq. 5: a weighted sum of per-layer losses
            if self.style_loss == "mrf":
                e = {l: corr.mrf_layer_loss(feats[l], targets.style[l], self.mrf_patch, self.mrf_stride)
                     for l in self.style_layers}
            elif self.style_loss != "gram":
                e = {l: LAYER_LOSSES[self.style_loss](feats[l], targets.style[l]) for l in self.style_layers}
            elif targets.masks is None:
                e = {l: layer_style(gram_matrix(feats[l]), targets.style[l], feats[l].shape[-3] * feats[l].shape[-2])
                     for l in self.style_layers}
            else:
                e = {l: guided_style_layer_loss(feats[l], targets.style[l], targets.masks[l], self.losses)
                     for l in self.style_layers}
            l_style = style_loss(e, weights.style)
        l_style = DEFAULT_WEIGHTS[self.style_loss] * l_style
        out = {"content": jnp.asarray(l_content, image.dtype), "style": jnp.asarray(l_style, image.dtype)}
        total = total_loss(out["content"], out["style"], weights.alpha, weights.beta)
        for name in self.terms:
            out[name] = call_term(name, self.term_fns[name], image, feats, targets)
            total = total + weights.terms[name] * out[name]
        out["total"] = total
        return out

    def __call__(self, image: jax.Array, params, targets: Targets, weights: LossWeights):
        """``(total, parts)``: the scalar to minimise and the parts as auxiliary output."""
        parts = self.parts(image, params, targets, weights)
        return parts["total"], parts
