"""The automatic weighting (``weighting: auto``): one factor on the style term per stage, so that one
alpha/beta keeps the photograph for a sparse artwork as for a dense painting, at any size.

Mean normalisation removes the number of positions from Eq. 1 and Eq. 4, not the pair: the style
loss grows with the fourth power of the features and the content loss with the square, so a fixed
alpha/beta is another balance for an artwork of large flat areas (a poster, a drawing on white, a
photograph) than for a dense painting, and another at another size. The factor measures the two
ends of the trade at the stage's size, from what does not depend on the run's trajectory: the
photograph's style loss ``S_photo`` (where the result would be with no style at all) and the
artwork's content loss ``C_art`` (where it would be with no content), with the variant's layer
weights and style loss:

    factor = ANCHOR * C_art / S_photo

so Eq. 7 weighs ``alpha * L_content / C_art`` against ``beta * ANCHOR * L_style / S_photo``: each
term in units of its own end. :data:`ANCHOR` makes the factor 1 for the main job's pair at 256 px
(leuvenA.jpg in the style of The Starry Night), where alpha/beta of 0.01, 0.1 and 1 were
calibrated, so they keep their meaning, and the other terms (``lattice``, ``temporal``, ``tv``) stay
calibrated against the content term, which the factor leaves alone.
"""

from __future__ import annotations

import json
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..model.losses import LossWeights, Targets

#: ``S_photo / C_art`` of the main job's pair at 256 px with the defaults (mean losses, the paper's
#: layers, the Gram loss, reflect padding at the first layer, the artwork's border trimmed),
#: measured on the CPU in float32 (tests/test_balance.py measures it again).
ANCHOR = 0.9929218
#: Below this, an end is not a trade: the photograph already has the artwork's style, or the
#: artwork the photograph's content; the factor is then 1.
DEGENERATE = 1e-9


def group_key(content_layers: dict, style_layers: dict, style_loss: str) -> str:
    """What a factor depends on besides the images: the layer weights and the style loss."""
    return json.dumps([content_layers, style_layers, style_loss], sort_keys=True)


def factor(c_art: float, s_photo: float) -> float:
    """``ANCHOR * C_art / S_photo``; 1 where either end is (almost) zero."""
    if not (np.isfinite(c_art) and np.isfinite(s_photo)) or c_art <= DEGENERATE or s_photo <= DEGENERATE:
        return 1.0
    return float(ANCHOR * c_art / s_photo)


def unit_weights(weights: LossWeights, i: int) -> LossWeights:
    """Variant ``i``'s layer weights with alpha = beta = 1 and no extra term."""
    pick = lambda tree: jax.tree_util.tree_map(lambda a: a[i], tree)  # noqa: E731
    one = jnp.float32(1.0)
    return LossWeights(one, one, pick(weights.content), pick(weights.style),
                       {k: jnp.float32(0.0) for k in weights.terms})


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
                    blend: Sequence[float]) -> dict[str, float]:
    """The factor of every group of weights (``keys[i]``: slot ``i``'s :func:`group_key`) that some
    slot with ``weighting: auto`` uses, measured once per group."""
    out: dict[str, float] = {}
    for i, (key, on) in enumerate(zip(keys, auto)):
        if on and key not in out:
            out[key] = factor(*endpoints(loss_fn, params, targets, unit_weights(weights, i), photo, arts, blend))
    return out
