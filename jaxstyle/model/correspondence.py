"""Losses built on correspondences between feature vectors rather than on global statistics: where
a mark sits in the artwork, and its shape, survive in them as they do not in a Gram matrix.

* ``style_loss: mrf`` (Li and Wand, CVPR 2016, "Combining Markov Random Fields and Convolutional
  Neural Networks for Image Synthesis", Eq. 2): every ``patch`` x ``patch`` patch of the output's
  features at the layers of ``mrf_layers`` (taken every ``mrf_stride`` positions) is matched to the
  artwork patch of highest normalised cross-correlation, and the loss is the squared distance to that
  match. Here a mean over the matched patches' entries (so, like ``losses: mean``, the same at any
  size), each entry weighed by one over the number of patches that cover its position (at stride 2
  the uneven cover drew a lattice of dots; :func:`coverage_weights`); the match is held constant,
  as in the authors' code. Their code's defaults are kept: 3 x 3
  patches at relu3_1 and relu4_1, stride 2 on both images, no rotated or scaled copies of the
  artwork's patches (the paper's augmentation).
* ``style_loss: remd`` (Kolkin, Salavon and Shakhnarovich, CVPR 2019, "Style Transfer by Relaxed
  Optimal Transport and Self-Similarity", Eq. 3 to 7): hypercolumns (the style layers' responses at
  one position, each layer times its weight, concatenated) at ``samples`` positions of the output
  and of the artwork; the relaxed earth mover's distance of their cosine costs (the larger of the
  two one-sided means of nearest costs), plus the moment term (mean absolute differences of the
  hypercolumns' means and covariances) and the palette term (the relaxed EMD of the pixels' RGB
  values at the same positions, Euclidean cost).
* ``style_loss: neighbours`` (Kolkin et al. 2022, "Neural Neighbor Style Transfer"): every
  cell of the photograph's hypercolumns on a grid of 4-pixel cells (finer layers averaged over the
  cell) is replaced by its nearest artwork
  hypercolumn (cosine after both are centred on the artwork's mean), once per stage and tile, and the
  output's hypercolumns are pulled towards the replaced ones by ``1 - cos``. Unlike NNST, the search
  always starts from the photograph (NNST blends in the current output at finer scales), and the
  match is on the unweighted hypercolumn.
* ``content_loss: self_similarity`` (the same paper, Eq. 8): the output's and the photograph's
  self-similarity matrices, cosine distances between hypercolumns of ``similarity_layers`` at
  ``samples`` positions, each column divided by its sum, compared by their mean absolute difference
  times the number of positions: the layout is kept, the appearance left free.

Our L-BFGS needs the same objective at every step, so the positions are not redrawn each step as
STROTSS's own code does: the output's are drawn once per stage (and tile shape) from the variant's
seed, the artwork's once from its index in the list of artworks.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .vgg import layer_stride

#: The artwork patch with the highest normalised cross-correlation is found among vectors divided by
#: their norm; a patch of all-zero responses (a flat area after the ReLU) is divided by this instead.
EPS = 1e-8


def patches(features: jax.Array, size: int, stride: int) -> jax.Array:
    """Every ``size`` x ``size`` patch of ``(h, w, N)`` features whose corner lies on a ``stride`` grid
    and that fits inside, flattened: ``(Q, size * size * N)``. Too small a map gives ``Q = 0``."""
    h, w, n = features.shape
    qh, qw = max((h - size) // stride + 1, 0), max((w - size) // stride + 1, 0)
    parts = [features[dy:dy + (qh - 1) * stride + 1:stride, dx:dx + (qw - 1) * stride + 1:stride]
             for dy in range(size) for dx in range(size)] if qh and qw else []
    if not parts:
        return jnp.zeros((0, size * size * n), features.dtype)
    return jnp.stack(parts, axis=2).reshape(qh * qw, size * size * n)


def unit_rows(x: jax.Array) -> jax.Array:
    """``(K, D)`` rows divided by their Euclidean norm (at least :data:`EPS`)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), EPS)


def mrf_target(features: Sequence[jax.Array], size: int, stride: int) -> dict[str, jax.Array]:
    """The artworks' patches at one layer, pooled: ``{"patches": (P, D), "unit": (P, D)}`` from each
    artwork's ``(h, w, N)`` features (several artworks: all their patches, one set)."""
    p = jnp.concatenate([patches(f, size, stride) for f in features])
    return {"patches": p, "unit": unit_rows(p)}


def coverage_weights(size: int, stride: int) -> np.ndarray:
    """``(size, size)``: each patch entry's weight, one over the number of ``stride``-grid patches
    that cover its position inside a map, scaled to mean 1.

    With patches wider than their stride the positions are unevenly covered (3 x 3 at stride 2: a
    position on the grid lies in four patches, one between them in one), and unweighted, the
    four-times-matched positions pull against each other while the once-matched follow their one
    match: a lattice of dots at the stride's period where the photograph is flat. Weighed, every
    position counts once. Uniform coverage (stride 1, or a stride at least the patch) gives all
    ones, exactly, so the loss is then the unweighted mean."""
    # Along one axis, an entry at offset d of a patch whose corner is on the grid lies in the
    # patches whose corners are the grid points in [position - size + 1, position].
    cover = np.array([d // stride + (size - 1 - d) // stride + 1 for d in range(size)], np.float64)
    if np.all(cover == cover[0]):
        return np.ones((size, size))
    w = np.outer(1.0 / cover, 1.0 / cover)
    return w / w.mean()


def mrf_layer_loss(features: jax.Array, tgt: Mapping[str, jax.Array], size: int, stride: int) -> jax.Array:
    """Li and Wand's Eq. 2, mean-normalised and evenly covered:
    ``1/(Q D) sum_i sum_e w_e (Psi_i(x) - Psi_NN(i)(s))_e^2`` over the output's Q patches of D
    entries, NN(i) the artwork patch of highest normalised cross-correlation (held constant), w_e
    :func:`coverage_weights` (all 1 at stride 1: Eq. 2 itself). ``features``: ``(h, w, N)``; 0 where
    the map has no whole patch."""
    out = patches(features, size, stride)
    if out.shape[0] == 0 or tgt["unit"].shape[0] == 0:
        return jnp.zeros((), features.dtype)
    nearest = jnp.argmax(jax.lax.stop_gradient(unit_rows(out)) @ tgt["unit"].T, axis=1)
    d2 = jnp.square(out - jnp.take(tgt["patches"], nearest, axis=0)).reshape(out.shape[0], size, size, -1)
    # Even cover gives exact ones (coverage_weights), so there the product is Eq. 2's mean bit for bit.
    return jnp.mean(d2 * jnp.asarray(coverage_weights(size, stride), features.dtype)[None, :, :, None])


def finest(layers: Sequence[str]) -> str:
    """The layer of smallest stride (the finest grid) among ``layers``."""
    return min(layers, key=layer_stride)


def sample_positions(key: jax.Array, grid: tuple[int, int], n: int) -> jax.Array:
    """``min(n, h * w)`` distinct flat positions of an ``(h, w)`` grid, drawn with ``key``: ``(n',)``."""
    count = grid[0] * grid[1]
    if n >= count:
        return jnp.arange(count)
    return jax.random.permutation(key, count)[:n]


def layer_cells(features: Mapping[str, jax.Array], layers: Sequence[str], positions: jax.Array) -> dict[str, jax.Array]:
    """Each of ``layers``' responses at ``positions`` of the finest layer's grid: ``{l: (n, N_l)}``. A
    position of the finest grid reads the cell of a coarser layer that covers it (the last row or
    column where floor pooling cut the map shorter)."""
    top = finest(layers)
    fine_w, s0 = features[top].shape[1], layer_stride(top)
    y, x = positions // fine_w, positions % fine_w
    out = {}
    for l in layers:
        f, ratio = features[l], layer_stride(l) // s0
        out[l] = f[jnp.minimum(y // ratio, f.shape[0] - 1), jnp.minimum(x // ratio, f.shape[1] - 1)]
    return out


def hypercolumns(cells: Mapping[str, jax.Array], weights: Mapping[str, jax.Array]) -> jax.Array:
    """The hypercolumns of :func:`layer_cells`' ``{l: (n, N_l)}``: each layer times its weight,
    concatenated in the order of ``cells``, ``(n, sum N_l)``."""
    return jnp.concatenate([weights[l] * c for l, c in cells.items()], axis=-1)


#: The palette term reads each sampled position's colour as the mean of this many pixels a side
#: around it: with the positions fixed for a stage (not redrawn every step, as STROTSS's are), a
#: single pixel's colour would be pulled alone and leave isolated dots.
PALETTE_WINDOW = 3


def pixels_at(image: jax.Array, features: Mapping[str, jax.Array], layers: Sequence[str],
              positions: jax.Array) -> jax.Array:
    """The ``(H, W, 3)`` image's mean RGB over :data:`PALETTE_WINDOW` pixels a side around the
    top-left pixel of each finest-grid position (the window clipped at the edges): ``(n, 3)``."""
    top = finest(layers)
    fine_w, s0 = features[top].shape[1], layer_stride(top)
    k, r = PALETTE_WINDOW, PALETTE_WINDOW // 2  # odd: SAME pads r on each side
    sums = jax.lax.reduce_window(image, 0.0, jax.lax.add, (k, k, 1), (1, 1, 1), "SAME")
    y, x = (positions // fine_w) * s0, (positions % fine_w) * s0
    # The window's pixels inside the image, counted at the positions alone: a window sum over an
    # image of ones is a constant that XLA folds at compile time, seconds at 512 px.
    count = lambda c, n: jnp.minimum(c + r, n - 1) - jnp.maximum(c - r, 0) + 1  # noqa: E731
    return sums[y, x] / (count(y, image.shape[0]) * count(x, image.shape[1]))[:, None].astype(image.dtype)


def cosine_cost(a: jax.Array, b: jax.Array) -> jax.Array:
    """``1 - cos(a_i, b_j)`` for ``(n, D)`` and ``(m, D)``: ``(n, m)``."""
    return 1.0 - unit_rows(a) @ unit_rows(b).T


def euclidean_cost(a: jax.Array, b: jax.Array) -> jax.Array:
    """``||a_i - b_j||`` for ``(n, D)`` and ``(m, D)``: ``(n, m)`` (its gradient defined at 0)."""
    sq = jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)
    return jnp.sqrt(jnp.maximum(sq, EPS))


def relaxed_emd(cost: jax.Array) -> jax.Array:
    """STROTSS's relaxed earth mover's distance of an ``(n, m)`` cost matrix: the larger of the mean
    over rows of each row's smallest cost and the mean over columns of each column's."""
    return jnp.maximum(jnp.mean(jnp.min(cost, axis=1)), jnp.mean(jnp.min(cost, axis=0)))


def moment_loss(x: jax.Array, y: jax.Array) -> jax.Array:
    """STROTSS's moment term for ``(n, D)`` and ``(m, D)`` samples: the mean absolute difference of
    their means plus that of their covariances."""
    mx, my = jnp.mean(x, axis=0), jnp.mean(y, axis=0)
    cx = (x - mx).T @ (x - mx) / x.shape[0]
    cy = (y - my).T @ (y - my) / y.shape[0]
    return jnp.mean(jnp.abs(mx - my)) + jnp.mean(jnp.abs(cx - cy))


def remd_loss(hyper: jax.Array, rgb: jax.Array, tgt_hyper: jax.Array, tgt_rgb: jax.Array) -> jax.Array:
    """STROTSS's style term without its weights: relaxed EMD of the hypercolumns' cosine costs, the
    moment term, and the relaxed EMD of the RGB values (the palette). ``hyper``: ``(n, D)``,
    ``rgb``: ``(n, 3)``; the artwork's ``(m, D)`` and ``(m, 3)``."""
    return (relaxed_emd(cosine_cost(hyper, tgt_hyper)) + moment_loss(hyper, tgt_hyper)
            + relaxed_emd(euclidean_cost(rgb, tgt_rgb)))


def self_similarity(hyper: jax.Array) -> jax.Array:
    """The ``(n, n)`` matrix of cosine distances between ``(n, D)`` hypercolumns, each column divided
    by its sum (a column of zero distances stays zero)."""
    d = cosine_cost(hyper, hyper)
    return d / jnp.maximum(jnp.sum(d, axis=0, keepdims=True), EPS)


def self_similarity_loss(hyper: jax.Array, photo_hyper: jax.Array) -> jax.Array:
    """STROTSS's content loss: ``1/n sum_ij |D_ij(x) - D_ij(photo)|`` of the two column-normalised
    self-similarity matrices of ``(n, D)`` hypercolumns at the same positions."""
    return jnp.sum(jnp.abs(self_similarity(hyper) - self_similarity(photo_hyper))) / hyper.shape[0]


def patch_count(side: tuple[int, int], layer: str, size: int, stride: int) -> int:
    """How many ``size`` x ``size`` patches at ``stride`` an ``(H, W)`` image has at ``layer``."""
    s = layer_stride(layer)
    h, w = side[0] // s, side[1] // s
    return max((h - size) // stride + 1, 0) * max((w - size) // stride + 1, 0)


#: ``neighbours``: the photograph's and the artwork's hypercolumns are taken on cells this many
#: pixels a side (conv3_1's grid): 3072 cells at 256 x 192 px, 12288 at 512 x 384.
NEIGHBOUR_GRID = 4
#: ``neighbours``: queries matched at a time, so the search holds one block x artwork matrix.
NEIGHBOUR_BLOCK = 1024


def cell_count(side: tuple[int, int], layers: Sequence[str], step: int = NEIGHBOUR_GRID) -> int:
    """How many cells :func:`grid_cells` gives an ``(H, W)`` image's responses at ``layers``."""
    s = layer_stride(finest(layers))
    r = max(step, s) // s
    return -(-(side[0] // s) // r) * -(-(side[1] // s) // r)


def grid_cells(features: Mapping[str, jax.Array], layers: Sequence[str], step: int = NEIGHBOUR_GRID) -> dict[str, jax.Array]:
    """Each of ``layers``' responses on a grid of cells ``step`` pixels a side (the finest layer's own
    cells where those are coarser), row-major, the last row and column covering what is left: ``{l: (n, N_l)}``.
    A layer finer than the grid is averaged over the cell, so every one of its positions counts (read
    at the cell's corner only, the finer layers were pulled at one pixel in 16 and drew a lattice of
    dots); a map that floor pooling cut short repeats its last row or column. A coarser layer gives the
    cell that covers the grid cell, as :func:`layer_cells` reads it."""
    top = finest(layers)
    h, w = features[top].shape[:2]
    cell = max(step, layer_stride(top))
    r = cell // layer_stride(top)
    rows, cols = -(-h // r), -(-w // r)
    out = {}
    for l in layers:
        f, s = features[l], layer_stride(l)
        if s <= cell:
            k = cell // s
            # rows * k covers the map: floor pooling only ever cuts a finer map shorter
            f = jnp.pad(f, ((0, rows * k - f.shape[0]), (0, cols * k - f.shape[1]), (0, 0)), mode="edge")
            out[l] = f.reshape(rows, k, cols, k, -1).mean(axis=(1, 3)).reshape(rows * cols, -1)
        else:
            ratio = s // cell
            y = jnp.minimum(jnp.arange(rows) // ratio, f.shape[0] - 1)
            x = jnp.minimum(jnp.arange(cols) // ratio, f.shape[1] - 1)
            out[l] = f[y[:, None], x[None, :]].reshape(rows * cols, -1)
    return out


def nearest_neighbours(query: Mapping[str, jax.Array], art: Mapping[str, jax.Array],
                       block: int = NEIGHBOUR_BLOCK) -> dict[str, jax.Array]:
    """Each query position's nearest artwork position: ``{l: (n, N_l)}`` cells of the artwork's
    ``{l: (m, N_l)}`` chosen by the cosine of the hypercolumns (every layer, weight 1) after both are
    centred on the artwork's mean hypercolumn. The search runs ``block`` queries at a time."""
    ones = {l: 1.0 for l in art}
    a = hypercolumns(art, ones)
    mean = jnp.mean(a, axis=0)
    a_unit = unit_rows(a - mean)
    q = unit_rows(hypercolumns(query, ones) - mean)
    n = q.shape[0]
    padded = jnp.pad(q, ((0, -n % block), (0, 0))).reshape(-1, block, q.shape[1])
    index = jax.lax.map(lambda b: jnp.argmax(b @ a_unit.T, axis=1), padded).reshape(-1)[:n]
    return {l: jnp.take(c, index, axis=0) for l, c in art.items()}


def neighbours_loss(cells: Mapping[str, jax.Array], targets: Mapping[str, jax.Array],
                    weights: Mapping[str, jax.Array]) -> jax.Array:
    """NNST's loss: the mean over positions of ``1 - cos`` between the output's and the target's
    hypercolumns (each layer times its weight), ``(n, N_l)`` cells each."""
    x, t = hypercolumns(cells, weights), hypercolumns({l: targets[l] for l in cells}, weights)
    return jnp.mean(1.0 - jnp.sum(unit_rows(x) * unit_rows(t), axis=-1))

