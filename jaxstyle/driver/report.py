"""What a run tells: report.json."""

from __future__ import annotations

import importlib.metadata as md
import platform
from typing import Any

import jax

from .. import __version__
from ..core.fileio import json_float
from ..engine.config import Config
from ..model.terms import term_file_hashes, used_terms
from ..engine.pipeline import Summary
from ..engine.variants import Variant


def losses_at(parts: dict[str, Any], i: int) -> dict[str, float | None]:
    """Variant ``i``'s loss parts (``{"total", "content", "style", ...}``) as JSON numbers."""
    return {k: json_float(v[i]) for k, v in parts.items()}


def versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers."""
    out = {"jaxstyle": __version__, "python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "jaxopt", "optax", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def variant_entry(v: Variant, initial: dict, final: dict, iterations: int, evaluations: int,
                  nonfinite_at: int) -> dict:
    """One variant's entry in report.json."""
    entry = {"seed": v.seed, "initial_loss": initial, "final_loss": final, "iterations": iterations,
             "evaluations": evaluations, "alpha": v.alpha, "beta": v.beta,
             "content_layers": v.content_layers, "style_layers": v.style_layers, "terms": v.terms,
             "style_loss": v.style_loss, "weighting": v.weighting}
    if nonfinite_at >= 0:
        entry["nonfinite_at"] = nonfinite_at
    return entry


def build_report(cfg: Config, variants: list[Variant], s: Summary) -> dict:
    """report.json from a run's :class:`~jaxstyle.engine.pipeline.Summary`: the resolved config,
    each variant's losses and counts, the stages, timing, the device and package versions, the
    memory estimate, the loss history and the artworks' trims."""
    report = {
        "config": cfg.to_dict(),
        "term_files": term_file_hashes(used_terms(cfg.terms, cfg.sweep)),
        "losses": cfg.losses,
        "interrupted": s.interrupted,
        "variants": [variant_entry(v, losses_at(s.initial, i), losses_at(s.final, i), int(s.iterations[i]),
                                   int(s.evaluations[i]), int(s.nonfinite[i])) for i, v in enumerate(variants)],
        "iterations": int(s.iterations.max(initial=0)),
        "evaluations": int(s.evaluations.sum()),
        "stages": s.stages,
        "timing": {"compile_s": round(s.compile_s, 4), "run_s": round(s.run_s, 4)},
        "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
        "devices": s.devices,
        "versions": versions(),
        "image_size": [int(s.shape[0]), int(s.shape[1])],
        "strategy": s.strategy,
        "memory_estimate_mb": round(s.memory_bytes / 2**20, 1),
        "history": s.history,
        "style_trim": s.style_trim,
    }
    if s.resumed_from is not None:
        report["resumed_from"] = s.resumed_from
    return report
