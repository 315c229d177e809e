"""The paper's losses, one small pure function per equation, and the objective they make.

Equation numbers are those of Gatys, Ecker and Bethge, *Image Style Transfer Using Convolutional
Neural Networks* (CVPR 2016). Features are ``(..., h, w, N_l)`` arrays (the paper's F^l with its
M_l = h * w positions laid out spatially); every function works on any leading batch shape and
reduces only over the axes its equation sums.

Loss weights are arrays inside a :class:`LossWeights` pytree rather than Python constants, so one
compiled objective can be ``vmap``-ed over alpha, beta and per-layer weights (w_l = 0 switches a
layer off without changing the program).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from .vgg import vgg19_features


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Eq. 1: L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2.

    Args:
      features: F^l, ``(..., h, w, N_l)``.
      target: P^l, the photograph's responses, same shape (or broadcastable).
    Returns:
      ``(...)``, summed over positions and filters.
    """
    return 0.5 * jnp.sum(jnp.square(features - target), axis=(-3, -2, -1))


def gram_matrix(features: jax.Array) -> jax.Array:
    """Eq. 3: G^l_ij = sum_k F^l_ik F^l_jk.

    Args:
      features: ``(..., h, w, N_l)``.
    Returns:
      ``(..., N_l, N_l)``, unnormalised (the 1/(4 N^2 M^2) factor lives in Eq. 4).
    """
    f = features.reshape(features.shape[:-3] + (-1, features.shape[-1]))
    return jnp.einsum("...mi,...mj->...ij", f, f)


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


class Targets(NamedTuple):
    """What the generated image is matched against, computed once before optimisation.

    content: ``{layer: P^l (h, w, N_l)}`` from the photograph.
    style: ``{layer: A^l (N_l, N_l)}`` from the artwork resized to the photograph's size.
    content_image: the photograph itself ``(H, W, 3)``, for terms that compare pixels.
    """

    content: dict[str, jax.Array]
    style: dict[str, jax.Array]
    content_image: jax.Array


class LossWeights(NamedTuple):
    """All loss weights as arrays (scalars for one variant, ``(V,)`` leaves for a batch).

    alpha, beta: Eq. 7's weights. content / style: per-layer weights (Eq. 5's w_l for style).
    terms: weight of each extra term by name (e.g. ``{"tv": ...}``).
    """

    alpha: jax.Array
    beta: jax.Array
    content: dict[str, jax.Array]
    style: dict[str, jax.Array]
    terms: dict[str, jax.Array]


#: An extra loss term: ``term(image (H, W, 3), features {layer: (h, w, C)}, targets) -> scalar``.
LossTerm = Callable[[jax.Array, Mapping[str, jax.Array], Targets], jax.Array]

#: Extra terms selectable by name from a config (``terms: {tv: 1e-3}``). Pass your own mapping to
#: :class:`Objective` to add one; see ``scripts/custom_term.py``.
TERMS: dict[str, LossTerm] = {
    "tv": lambda image, feats, targets: total_variation(image),
}


@dataclass(frozen=True)
class Objective:
    """The static structure of a loss: which layers, which pooling, which extra terms.

    Everything numeric (weights, targets, the network) is an argument of :meth:`__call__`, so a
    single compiled function serves every variant of a batch.
    """

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: str = "avg"
    terms: tuple[str, ...] = ()
    term_fns: Mapping[str, LossTerm] = field(default_factory=lambda: dict(TERMS))

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))

    def targets(self, params, content_image: jax.Array, style_image: jax.Array) -> Targets:
        """P^l of the photograph and A^l of the artwork (already resized to the photo's size)."""
        c = vgg19_features(params, content_image, self.content_layers, self.pooling)
        s = vgg19_features(params, style_image, self.style_layers, self.pooling)
        return Targets(content=dict(c), style={k: gram_matrix(v) for k, v in s.items()},
                       content_image=content_image)

    def parts(self, image: jax.Array, params, targets: Targets, weights: LossWeights) -> dict[str, jax.Array]:
        """``{"total", "content", "style", <term>...}`` for one image ``(H, W, 3)``.

        "content" is sum_l w_l L_content^l (Eq. 1), "style" is L_style (Eq. 5), both before alpha
        and beta; "total" is Eq. 7 plus each extra term times its weight.
        """
        feats = vgg19_features(params, image, self.layers, self.pooling)
        l_content = sum(weights.content[l] * content_loss(feats[l], targets.content[l])
                        for l in self.content_layers)
        e = {l: style_layer_loss(gram_matrix(feats[l]), targets.style[l],
                                 feats[l].shape[-3] * feats[l].shape[-2]) for l in self.style_layers}
        l_style = style_loss(e, weights.style)
        out = {"content": jnp.asarray(l_content, image.dtype), "style": jnp.asarray(l_style, image.dtype)}
        total = total_loss(out["content"], out["style"], weights.alpha, weights.beta)
        for name in self.terms:
            out[name] = self.term_fns[name](image, feats, targets)
            total = total + weights.terms[name] * out[name]
        out["total"] = total
        return out

    def __call__(self, image: jax.Array, params, targets: Targets, weights: LossWeights):
        """``(total, parts)``: the scalar to minimise and the parts as auxiliary output."""
        parts = self.parts(image, params, targets, weights)
        return parts["total"], parts
