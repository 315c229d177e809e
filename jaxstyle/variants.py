"""Variants: every combination of a sweep's values, each with every seed, and their loss weights.

A batch holds one variant per (setting, seed). Their loss weights are arrays with a leading variant
axis, so a whole alpha/beta x layer grid runs as one compiled, vmapped program.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from .config import Config
from .losses import LossWeights, Objective
from .program import variant_mesh


@dataclass(frozen=True)
class Variant:
    """One image of a batch: its seed and its loss weights."""

    seed: int
    alpha: float
    beta: float
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    terms: dict[str, float]

    def label(self, swept: tuple[str, ...]) -> str:
        parts = [f"seed {self.seed}"]
        if "alpha" in swept or "beta" in swept:
            parts.append(f"a/b {self.alpha / self.beta:.0e}" if self.beta else f"a {self.alpha:g}")
        if "style_layers" in swept:
            parts.append("+".join(l.replace("conv", "") for l, w in self.style_layers.items() if w) or "no style")
        if "content_layers" in swept:
            parts.append("+".join(l for l, w in self.content_layers.items() if w) or "no content")
        if "terms" in swept:
            parts.append(" ".join(f"{k} {v:g}" for k, v in self.terms.items()))
        return ", ".join(parts)


def expand_variants(cfg: Config) -> list[Variant]:
    """Every combination of the sweep's values, each with every seed (seeds vary fastest)."""
    keys = list(cfg.sweep)
    combos = itertools.product(*(cfg.sweep[k] for k in keys)) if keys else [()]
    out = []
    for combo in combos:
        setting = dict(zip(keys, combo))
        for seed in cfg.seeds:
            out.append(Variant(
                seed=seed, alpha=setting.get("alpha", cfg.alpha), beta=setting.get("beta", cfg.beta),
                content_layers=dict(setting.get("content_layers", cfg.content_layers)),
                style_layers=dict(setting.get("style_layers", cfg.style_layers)),
                terms=dict(setting.get("terms", cfg.terms))))
    return out


def objective_for(variants: list[Variant], cfg: Config) -> Objective:
    """The one objective all variants share: every layer and term any of them weights."""
    content = tuple(dict.fromkeys(l for v in variants for l in v.content_layers))
    style = tuple(dict.fromkeys(l for v in variants for l in v.style_layers))
    terms = tuple(dict.fromkeys(t for v in variants for t in v.terms))
    return Objective(content, style, cfg.pooling, terms, remat=cfg.remat, losses=cfg.losses)


def batch_weights(variants: list[Variant], objective: Objective, dtype=jnp.float32) -> LossWeights:
    """Loss weights with a leading variant axis; a layer a variant does not use gets weight 0."""
    arr = lambda xs: jnp.asarray(np.asarray(xs, np.float64), dtype)
    return LossWeights(
        alpha=arr([v.alpha for v in variants]), beta=arr([v.beta for v in variants]),
        content={l: arr([v.content_layers.get(l, 0.0) for v in variants]) for l in objective.content_layers},
        style={l: arr([v.style_layers.get(l, 0.0) for v in variants]) for l in objective.style_layers},
        terms={t: arr([v.terms.get(t, 0.0) for v in variants]) for t in objective.terms},
    )


def split_over_devices(variants: list[Variant]) -> tuple[Any, int, list[Variant]]:
    """``(mesh, devices, padded)``: the mesh the batch is split over (None on one device), its size,
    and the variants padded with copies of the last to a multiple of it (the copies are dropped
    before anything is written)."""
    mesh = variant_mesh()
    n_dev = 1 if mesh is None else mesh.size
    return mesh, n_dev, variants + [variants[-1]] * (-len(variants) % n_dev)
