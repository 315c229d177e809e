"""Variants: every combination of a sweep's values, each with every seed, and their loss weights.

A batch holds one variant per (setting, seed). Their loss weights are arrays with a leading variant
axis, so a whole alpha/beta x layer grid runs as one compiled, vmapped program.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from .config import Config
from ..model.losses import LossWeights, Objective
from .program import variant_mesh
from ..model.terms import is_file_term, resolve_terms


@dataclass(frozen=True)
class Variant:
    """One image of a batch: its seed and its loss weights."""

    seed: int
    alpha: float
    beta: float
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    terms: dict[str, float]
    style_loss: str = "gram"
    weighting: str = "fixed"
    content_loss: str = "features"

    def label(self, swept: tuple[str, ...]) -> str:
        parts = [f"seed {self.seed}"]
        if "alpha" in swept or "beta" in swept:
            parts.append(f"a/b {self.alpha / self.beta:.0e}" if self.beta else f"a {self.alpha:g}")
        if "style_layers" in swept:
            parts.append("+".join(l.replace("conv", "") for l, w in self.style_layers.items() if w) or "no style")
        if "content_layers" in swept:
            parts.append("+".join(l for l, w in self.content_layers.items() if w) or "no content")
        if "terms" in swept:
            parts.append(" ".join(f"{Path(k).name if is_file_term(k) else k} {v:g}" for k, v in self.terms.items()
                                  if k not in ("temporal", "lattice")) or "no terms")
        if "style_loss" in swept:
            parts.append(self.style_loss)
        if "content_loss" in swept:
            parts.append(f"{self.content_loss} content")
        if "temporal" in swept:
            parts.append(f"temporal {self.terms.get('temporal', 0.0):g}")
        if "lattice" in swept:
            parts.append(f"lattice {self.terms.get('lattice', 0.0):g}")
        if "weighting" in swept:
            parts.append(f"{self.weighting} weighting")
        return ", ".join(parts)


def variant_labels(variants: Sequence[Variant], sweep: Mapping[str, Any]) -> list[str]:
    """Each variant's label as the sheet, the loss curves, the live page and the comparison show it:
    its seed and what ``sweep`` varies."""
    return [v.label(tuple(sweep)) for v in variants]


def expand_variants(cfg: Config) -> list[Variant]:
    """Every combination of the sweep's values, each with every seed (seeds vary fastest, a sweep's
    ``style_loss`` slowest, then ``content_loss``: each style and content loss runs as a program of its
    own, on consecutive variants). A clip's variants carry its ``temporal`` weight as the term of that
    name, and every variant its ``lattice`` weight, where not 0. A variant of ``style_loss: mrf``
    matches at ``mrf_layers``, one of ``content_loss: self_similarity`` compares ``similarity_layers``."""
    keys = sorted(cfg.sweep, key=lambda k: {"style_loss": 0, "content_loss": 1}.get(k, 2))
    combos = itertools.product(*(cfg.sweep[k] for k in keys)) if keys else [()]
    out = []
    for combo in combos:
        setting = dict(zip(keys, combo))
        kind = setting.get("style_loss", cfg.style_loss)
        content_kind = setting.get("content_loss", cfg.content_loss)
        for seed in cfg.seeds:
            out.append(Variant(
                seed=seed, alpha=setting.get("alpha", cfg.alpha), beta=setting.get("beta", cfg.beta),
                content_layers=dict(cfg.similarity_layers if content_kind == "self_similarity" else
                                    setting.get("content_layers", cfg.content_layers)),
                style_layers=dict(cfg.mrf_layers if kind == "mrf" else setting.get("style_layers", cfg.style_layers)),
                terms={**setting.get("terms", cfg.terms),
                       **({"temporal": setting.get("temporal", cfg.temporal)} if cfg.is_clip else {}),
                       **({"lattice": lattice} if (lattice := setting.get("lattice", cfg.lattice)) else {})},
                style_loss=kind, weighting=setting.get("weighting", cfg.weighting), content_loss=content_kind))
    return out


def objective_for(variants: list[Variant], cfg: Config) -> Objective:
    """The one objective all variants share: every layer and term any of them weights (they share
    one style loss and one content loss: a sweep over either runs one batch per choice)."""
    content = tuple(dict.fromkeys(l for v in variants for l in v.content_layers))
    style = tuple(dict.fromkeys(l for v in variants for l in v.style_layers))
    terms = tuple(dict.fromkeys(t for v in variants for t in v.terms))
    kinds = {(v.style_loss, v.content_loss) for v in variants}
    if len(kinds) != 1:
        raise ValueError(f"one objective cannot mix style or content losses {sorted(kinds)}")
    kind, content_kind = kinds.pop()
    return Objective(content, style, cfg.pooling, terms, remat=cfg.remat, losses=cfg.losses,
                     term_fns=resolve_terms(terms), style_loss=kind, padding=cfg.padding,
                     padding_layers=cfg.padding_layers, content_loss=content_kind, mrf_patch=cfg.mrf_patch,
                     mrf_stride=cfg.mrf_stride, samples=cfg.samples)


def batch_weights(variants: list[Variant], objective: Objective, dtype=jnp.float32) -> LossWeights:
    """Loss weights with a leading variant axis; a layer a variant does not use gets weight 0; each
    variant's seed where the objective samples positions."""
    arr = lambda xs: jnp.asarray(np.asarray(xs, np.float64), dtype)
    return LossWeights(
        alpha=arr([v.alpha for v in variants]), beta=arr([v.beta for v in variants]),
        content={l: arr([v.content_layers.get(l, 0.0) for v in variants]) for l in objective.content_layers},
        style={l: arr([v.style_layers.get(l, 0.0) for v in variants]) for l in objective.style_layers},
        terms={t: arr([v.terms.get(t, 0.0) for v in variants]) for t in objective.terms},
        seed=jnp.asarray([v.seed for v in variants], jnp.uint32) if objective.samples_positions else None,
    )


def split_over_devices(variants: list[Variant]) -> tuple[Any, int, list[Variant]]:
    """``(mesh, devices, padded)``: the mesh the batch is split over (None on one device), its size,
    and the variants padded with copies of the last to a multiple of it (the copies are dropped
    before anything is written)."""
    mesh = variant_mesh()
    n_dev = 1 if mesh is None else mesh.size
    return mesh, n_dev, variants + [variants[-1]] * (-len(variants) % n_dev)
