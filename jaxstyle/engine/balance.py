"""The automatic weighting (``weighting: auto``): one factor on the style term per stage, so that one
alpha/beta keeps the photograph for a sparse artwork as for a dense painting, at any size.

Mean normalisation removes the number of positions from Eq. 1 and Eq. 4, not the pair: the style
loss grows with the fourth power of the features and the content loss with the square, so a fixed
alpha/beta is another balance for an artwork of large flat areas (a poster, a drawing on white, a
photograph) than for a dense painting, and another at another size. The factor measures the two
ends of the trade at the stage's size (no larger than the artwork's own: an enlarged artwork's
ends would measure the blur of its enlargement), from what does not depend on the run's trajectory: the
photograph's style loss ``S_photo`` (where the result would be with no style at all) and the
artwork's content loss ``C_art`` (where it would be with no content), with the variant's layer
weights and style loss:

    factor = ANCHOR * C_art / S_photo

so Eq. 7 weighs ``alpha * L_content / C_art`` against ``beta * ANCHOR * L_style / S_photo``: each
term in units of its own end. :data:`ANCHOR` makes the factor 1 for the main job's pair at 256 px
(leuvenA.jpg in the style of The Starry Night), where alpha/beta of 0.01, 0.1 and 1 were
calibrated (each style loss and content loss has its own, :data:`ANCHORS`, measured the same way,
as each loss's default weight was calibrated on that pair), so they keep their meaning, and the
other terms (``lattice``, ``temporal``, ``tv``) stay calibrated against the content term, which the
factor leaves alone.

The ends alone do not tell a dense painting from a sparse artwork (a graffiti wall's ends are
further apart than a photograph of sweets on white, yet the fixed balance keeps the photograph
there), and a dense painting's balance is what alpha/beta were calibrated on. So the factor is
raised to the artwork's *sparsity* ``s`` in [0, 1], which the share of its flat pixels gives
(:func:`flat_share`, :func:`sparsity`):

    factor = (SPARSE_GAIN * ANCHOR * C_art / S_photo) ** s

A dense painting (``s = 0``) keeps alpha/beta exactly (a factor of 1, its images bit for bit those
of ``weighting: fixed``, and nothing is measured); an artwork of flat areas (``s = 1``) is weighed
by its ends. For such an artwork the weighting also adds the built-in ``range`` term
(:data:`RANGE_WEIGHT` times ``s``, :func:`auto_terms`): its saturated colours on white are
otherwise optimised past white and clipped when the image is written, and the written image is
not the one the balance was struck for. :data:`SPARSE_GAIN` is what the style term then weighs
beside a dense painting's at the same ends.
"""

from __future__ import annotations

import json
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..model.losses import LossWeights, Targets

#: ``S_photo / C_art`` of the main job's pair at 256 px with the defaults (mean losses, the paper's
#: layers, the Gram loss, reflect padding at the first layer, the artwork's border trimmed),
#: measured on the CPU in float32 (tests/test_balance.py measures it again).
ANCHOR = 0.9929218
#: The same ratio for every other style loss and content loss (their default layers and weights),
#: so that each is anchored to its own balance on the main job's pair: the ends' scales differ by
#: up to 38 times between losses (``mrf``'s style loss of the photograph is 0.05 against the Gram
#: loss's 1.8), and one anchor for all multiplied a sparse artwork's style term by that much.
ANCHORS = {
    ("gram", "features"): ANCHOR,
    ("gram", "self_similarity"): 1.408777,
    ("mean_cov", "features"): 0.2096582,
    ("mean_cov", "self_similarity"): 0.2974672,
    ("wasserstein", "features"): 0.1087385,
    ("wasserstein", "self_similarity"): 0.1542804,
    ("histogram", "features"): 0.1408821,
    ("histogram", "self_similarity"): 0.1998863,
    ("mrf", "features"): 0.02894255,
    ("mrf", "self_similarity"): 0.04106426,
    ("remd", "features"): 0.02629236,
    ("remd", "self_similarity"): 0.03730411,
    ("neighbours", "features"): 0.1388316,
    ("neighbours", "self_similarity"): 0.1969771,
}
#: Below this, an end is not a trade: the photograph already has the artwork's style, or the
#: artwork the photograph's content; the factor is then 1.
DEGENERATE = 1e-9
#: A pixel is flat where no channel differs from a 4-neighbour's by this much (5 of 255 levels).
FLAT_STEP = 0.02
#: The share of flat pixels at or below which an artwork is dense (sparsity 0: The Starry Night
#: 0.001, the graffiti wall 0.09) and at or above which it is sparse (sparsity 1: the cartoon 0.58,
#: the text, the sweets, the drawing, the shapes and the logo 0.65 to 0.87; docs/calibration.md).
FLAT_DENSE, FLAT_SPARSE = 0.3, 0.5
#: The weight of the built-in ``range`` term (Eq. 7's extra term: the mean squared distance of the
#: image's values from [0, 1]) that ``weighting: auto`` adds for a sparse artwork, times its
#: sparsity. The pixels are optimised unbounded and written clipped: with a sparse artwork's
#: saturated colours on white the optimiser pushes values past white (the sweets' result 18.5 % of
#: them at 256 px) and the clipping, not the optimiser, then decides the written image's colours
#: (pastel washes). At 100 the sweets' style fraction at 256 px was 1.4 times 1000's, at 10000
#: 1.25 times (docs/history.md, 2026-12-07).
RANGE_WEIGHT = 1000.0
#: What a sparse artwork's style term weighs beside a dense painting's at the same ends: with the
#: ``range`` term its colours are no longer lost to the clipping, so the same factor takes more
#: of the photograph away (the logo's content fraction at 512 px 0.54 with a gain of 1, over the
#: 0.5 the weighting aims for; 0.48 with 0.75, 0.42 with 0.5: docs/history.md, 2026-12-07).
SPARSE_GAIN = 0.5
#: The long side at which an artwork's flat share is measured (its own where smaller): enlarging an
#: image makes more of its pixels flat, so one side for every run and stage makes the share a
#: property of the artwork, not of the size it is used at.
FLAT_SIDE = 256


def auto_terms(terms: Mapping[str, float], weighting: str, sparse: float) -> dict[str, float]:
    """A variant's terms with ``weighting: auto``'s ``range`` (:data:`RANGE_WEIGHT` times the
    artworks' sparsity) added where the artworks are sparse and the variant gives no weight of its
    own for it (``terms: {range: 0}`` turns it off); otherwise ``terms`` as they are, so a dense
    artwork's objective is the fixed weighting's."""
    if weighting != "auto" or sparse <= 0.0 or "range" in terms:
        return dict(terms)
    return {**terms, "range": RANGE_WEIGHT * sparse}


def group_key(content_layers: dict, style_layers: dict, style_loss: str, content_loss: str = "features") -> str:
    """What a factor depends on besides the images: the layer weights and the style and content
    losses (the paper's content loss left out of the key, as before there was a choice)."""
    return json.dumps([content_layers, style_layers, style_loss, *([content_loss] if content_loss != "features"
                                                                  else [])], sort_keys=True)


def flat_share(image: np.ndarray) -> float:
    """The share of an ``(H, W, 3)`` image's pixels (values in [0, 1]) that are flat: no channel
    differs from any of its (up to four) neighbours by :data:`FLAT_STEP` or more."""
    image = np.asarray(image, np.float32)
    step = np.zeros(image.shape[:2], np.float32)
    dx, dy = np.abs(np.diff(image, axis=1)).max(-1), np.abs(np.diff(image, axis=0)).max(-1)
    for part, edge in ((step[:, :-1], dx), (step[:, 1:], dx), (step[:-1], dy), (step[1:], dy)):
        np.maximum(part, edge, out=part)
    return float(np.mean(step < FLAT_STEP))


def sparsity(shares: Sequence[float], blend: Sequence[float]) -> float:
    """The artworks' sparsity in [0, 1] from their flat shares (blended as their style targets are):
    0 at or below :data:`FLAT_DENSE`, 1 at or above :data:`FLAT_SPARSE`, a smoothstep between."""
    t = min(max((sum(b * f for b, f in zip(blend, shares)) - FLAT_DENSE) / (FLAT_SPARSE - FLAT_DENSE), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def anchor_of(style_loss: str, content_loss: str) -> float:
    """The anchor of a style loss and content loss (:data:`ANCHORS`)."""
    return ANCHORS[(style_loss, content_loss)]


def factor(c_art: float, s_photo: float, sparse: float = 1.0, anchor: float = ANCHOR) -> float:
    """``(SPARSE_GAIN * anchor * C_art / S_photo) ** sparse``; 1 where the artwork is dense
    (``sparse`` 0) or either end is (almost) zero. ``anchor``: the losses' own (:func:`anchor_of`),
    the Gram loss's by default."""
    if sparse <= 0.0 or not (np.isfinite(c_art) and np.isfinite(s_photo)) or min(c_art, s_photo) <= DEGENERATE:
        return 1.0
    return float((SPARSE_GAIN * anchor * c_art / s_photo) ** sparse)


def unit_weights(weights: LossWeights, i: int) -> LossWeights:
    """Variant ``i``'s layer weights with alpha = beta = 1, no extra term, and where the losses
    sample positions, those of seed 0: the ends must not depend on the variant's seed."""
    pick = lambda tree: jax.tree_util.tree_map(lambda a: a[i], tree)  # noqa: E731
    one = jnp.float32(1.0)
    return LossWeights(one, one, pick(weights.content), pick(weights.style),
                       {k: jnp.float32(0.0) for k in weights.terms},
                       None if weights.seed is None else jnp.zeros_like(weights.seed[i]))


def endpoints(loss_fn: Callable, params, targets: Targets, weights: LossWeights, photo: jax.Array,
              arts: Sequence[jax.Array], blend: Sequence[float]) -> tuple[float, float]:
    """``(C_art, S_photo)`` for one variant's ``weights`` (alpha = beta = 1): the artworks' content
    losses against the photograph's targets (blended as their style targets are), and the
    photograph's ``(H, W, 3)`` style loss. The artworks are resized to the photograph's shape."""
    shape = photo.shape
    c_art = sum(b * float(loss_fn(jax.image.resize(a, shape, "linear"), params, targets, weights)["content"])
                for a, b in zip(arts, blend))
    return c_art, float(loss_fn(photo, params, targets, weights)["style"])


def measure_factors(loss_fn: Callable, params, targets: Targets, weights: LossWeights, keys: Sequence[str],
                    auto: Sequence[bool], photo: jax.Array, arts: Sequence[jax.Array],
                    blend: Sequence[float], sparse: float, anchors: Sequence[float]) -> dict[str, float]:
    """The factor of every group of weights (``keys[i]``: slot ``i``'s :func:`group_key`) that some
    slot with ``weighting: auto`` uses, measured once per group against slot ``i``'s anchor
    (``anchors[i]``, its losses' :func:`anchor_of`); the ends are not
    measured for a dense artwork (``sparse`` 0), whose factor is 1."""
    out: dict[str, float] = {}
    for i, (key, on) in enumerate(zip(keys, auto)):
        if on and key not in out:
            out[key] = 1.0 if sparse <= 0.0 else factor(
                *endpoints(loss_fn, params, targets, unit_weights(weights, i), photo, arts, blend), sparse,
                anchors[i])
    return out
