"""What a run tells: report.json."""

from __future__ import annotations

import importlib.metadata as md
import platform
from typing import Any

import jax
import numpy as np

from .. import __version__
from ..engine.config import Config
from ..model.terms import term_file_hashes, used_terms
from ..engine.variants import Variant


def json_float(value) -> float | None:
    """A float for JSON, which has no Infinity or NaN: a non-finite loss is written as null."""
    return float(value) if np.isfinite(value) else None


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
             "style_loss": v.style_loss}
    if nonfinite_at >= 0:
        entry["nonfinite_at"] = nonfinite_at
    return entry


def build_report(cfg: Config, variants: list[Variant], *, interrupted: bool, initial: dict, final: dict,
                 iterations: np.ndarray, evaluations: np.ndarray, nonfinite: np.ndarray, compile_s: float,
                 run_s: float, devices: int, shape, strategy: str, memory_bytes: int, stages: list) -> dict:
    """report.json: the resolved config, each variant's losses and counts, the stages, timing, the
    device and package versions, the memory estimate."""
    return {
        "config": cfg.to_dict(),
        "term_files": term_file_hashes(used_terms(cfg.terms, cfg.sweep)),
        "losses": cfg.losses,
        "interrupted": interrupted,
        "variants": [variant_entry(v, losses_at(initial, i), losses_at(final, i), int(iterations[i]),
                                   int(evaluations[i]), int(nonfinite[i])) for i, v in enumerate(variants)],
        "iterations": int(iterations.max(initial=0)),
        "evaluations": int(evaluations.sum()),
        "stages": stages,
        "timing": {"compile_s": round(compile_s, 4), "run_s": round(run_s, 4)},
        "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
        "devices": devices,
        "versions": versions(),
        "image_size": [int(shape[0]), int(shape[1])],
        "strategy": strategy,
        "memory_estimate_mb": round(memory_bytes / 2**20, 1),
    }
