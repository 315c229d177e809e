"""The comparison table of a sweep over style losses or loss terms: one yardstick for every variant.

Each style loss and term optimises its own objective, so their own loss values do not compare.
The table measures every final image the same way: the mean-normalised Gram style loss
(:func:`jaxstyle.model.losses.mean_style_layer_loss`, Eq. 4 per position) and content loss (Eq. 1 as a
mean) with the config's layers and weights, the speckle index (:mod:`jaxstyle.media.metrics`), and,
so that the Gram loss's own yardstick is not the only judge, the patch (``mrf``), relaxed optimal
transport (``remd``), neural-neighbour and self-similarity losses of every image.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import Config
from ..engine.inputs import Inputs, prepare_images
from ..model.losses import LossWeights, Objective
from ..model.style_losses import DEFAULT_CONTENT_WEIGHTS, DEFAULT_WEIGHTS
from ..media.metrics import speckle_index
from ..core.fileio import json_float
from ..engine.variants import Variant, variant_labels


def yardstick(cfg: Config, params, images: np.ndarray, photos: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{"content", "style"}``, ``(V,)`` each: Eq. 1 and Eq. 4 (both mean-normalised, Gram style)
    of ``(V, H, W, 3)`` images against the config's photograph and artwork(s), with its layers and
    weights. ``photos``: ``(V, H, W, 3)``, each image's own photograph (a clip's frames). The
    network is VGG's own (zero padding) whatever the run's ``padding``, so yardsticks compare."""
    objective = Objective(tuple(cfg.content_layers), tuple(cfg.style_layers), cfg.pooling, losses="mean")
    return measure(cfg, params, images, objective, cfg.style_layers, photos)


def own_measures(cfg: Config, params, images: np.ndarray, photos: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each correspondence loss's own measure of every image, ``(V,)`` each, so that the Gram
    yardstick is not the only judge: ``mrf`` (at ``mrf_layers``), ``remd`` and ``neighbours`` (the
    style layers) and the self-similarity content loss (``similarity_layers``), each without its
    default weight, with the config's patch, stride and samples (positions drawn from seed 0 for every
    image, so the measures compare). The images are prepared once for all four."""
    base = dict(pooling=cfg.pooling, losses="mean", mrf_patch=cfg.mrf_patch, mrf_stride=cfg.mrf_stride,
                samples=cfg.samples)
    content, style = tuple(cfg.content_layers), tuple(cfg.style_layers)
    objectives = {"mrf": Objective(content, tuple(cfg.mrf_layers), style_loss="mrf", **base),
                  "remd": Objective(content, style, style_loss="remd", **base),
                  "neighbours": Objective(content, style, style_loss="neighbours", **base),
                  "self_similarity": Objective(tuple(cfg.similarity_layers), (), content_loss="self_similarity",
                                               **base)}
    layers = tuple(dict.fromkeys(l for o in objectives.values() for l in o.layers))
    inputs = prepare_images(cfg, layers, shape=images.shape[1:3], frames=photos)
    out = {k: measure(cfg, params, images, objectives[k], cfg.mrf_layers if k == "mrf" else cfg.style_layers,
                      photos, inputs=inputs)["style"] / DEFAULT_WEIGHTS[k] for k in ("mrf", "remd", "neighbours")}
    similarity = measure(cfg, params, images, objectives["self_similarity"], {}, photos, cfg.similarity_layers,
                         inputs)["content"]
    out["self_similarity"] = similarity / DEFAULT_CONTENT_WEIGHTS["self_similarity"]
    return out


def measure(cfg: Config, params, images: np.ndarray, objective: Objective, style_layers: dict,
            photos: np.ndarray | None = None, content_layers: dict | None = None,
            inputs: Inputs | None = None) -> dict[str, np.ndarray]:
    """``objective``'s ``{"content", "style"}`` parts of each of the ``(V, H, W, 3)`` images against
    the config's photograph (or ``photos``, each image's own) and artwork(s), with alpha = beta = 1,
    ``content_layers``' weights (the config's where None) and ``style_layers``' weights, seed 0:
    ``(V,)`` each. ``inputs``: the images already prepared at the images' size, else prepared here."""
    content_layers = cfg.content_layers if content_layers is None else content_layers
    if inputs is None:
        inputs = prepare_images(cfg, objective.layers, shape=images.shape[1:3], frames=photos)
    styles = [jnp.asarray(s) for s in inputs.styles]
    contents = inputs.content if photos is not None else [inputs.content] * len(images)
    one = jnp.float32(1.0)
    weights = LossWeights(one, one, {l: jnp.float32(w) for l, w in content_layers.items()},
                          {l: jnp.float32(w) for l, w in style_layers.items()}, {},
                          jnp.uint32(0) if objective.samples_positions else None)
    parts, grams = jax.jit(objective.parts), jax.jit(objective.style_grams)(params, styles)
    targets = jax.jit(objective.targets_from_grams)
    values = [jax.device_get(parts(jnp.asarray(im, jnp.float32), params,
                                   targets(params, jnp.asarray(c), grams, cfg.blend), weights))
              for im, c in zip(images, contents)]
    return {k: np.array([v[k] for v in values], np.float64) for k in ("content", "style")}


def comparison(cfg: Config, params, images: np.ndarray, variants: list[Variant], report: dict,
               photos: np.ndarray | None = None) -> list[dict[str, Any]]:
    """report.json's ``comparison``: per variant its label, style loss, content loss (``content_term``),
    terms, the wall seconds of the program that made it, the yardstick losses, each correspondence
    loss's own measure (:func:`own_measures`, where the sweep is over style or content losses) and the
    speckle index. ``photos``: each image's
    own photograph ``(V, H, W, 3)`` (a clip's last frame), else the config's."""
    measured = yardstick(cfg, params, images, photos)
    # The losses' own measures judge a comparison of losses; a sweep of terms alone keeps to the yardstick.
    own = own_measures(cfg, params, images, photos) if {"style_loss", "content_loss"} & set(cfg.sweep) else {}
    seconds = [p["run_s"] for p in report.get("programs", []) for _ in range(p["variants"])] or \
        [report["timing"]["run_s"]] * len(variants)
    labels = variant_labels(variants, cfg.sweep)
    return [{"variant": i, "label": labels[i], "style_loss": v.style_loss, "content_term": v.content_loss,
             "terms": v.terms, "program_s": round(float(seconds[i]), 2),
             "gram_style_loss": json_float(measured["style"][i]), "content_loss": json_float(measured["content"][i]),
             **{f"{k}_loss": json_float(own[k][i]) for k in own},
             "speckle": round(speckle_index(images[i]), 2)}
            for i, v in enumerate(variants)]
