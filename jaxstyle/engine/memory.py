"""Predict a run's peak memory before it starts, and refuse one that cannot fit.

The peak is dominated by what the backward pass keeps of the forward pass: every convolution's
output up to the deepest layer used, for every variant of the batch. The constant
``ACTIVATION_FACTOR`` (bytes kept per activation float, including XLA's temporaries) was fitted to
peak RSS measured on this project's CPU runs; see docs/performance.md.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax

from ..core.errors import ImageError
from ..model.vgg import LAYER_NAMES, LAYERS, layer_index

#: Bytes of peak memory per float32 activation of one forward pass. Fitted to peak RSS of
#: 2-iteration CPU runs (jax 0.10.2): 618, 726, 1235 and 1891 MB at 96x128, 192x256, 384x512 and
#: 576x768 px, and 1180 MB for 4 variants at 192x256; the fit is within 5% of each.
ACTIVATION_FACTOR = 9.0
#: Memory that does not depend on the image: the runtime, compiled programs, the weights.
BASELINE_BYTES = 600 * 2**20


def activation_floats(height: int, width: int, deepest: str) -> int:
    """Floats in every convolution and pooling output from conv1_1 up to ``deepest``."""
    h, w, total = height, width, 0
    for name, _, cout in LAYERS[: layer_index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
            total += h * w * (LAYERS[LAYER_NAMES.index(name) - 1][2])
        else:
            total += h * w * cout
    return total


#: Bytes of peak memory per float of the largest pair of consecutive activations, for a forward
#: pass that keeps nothing for a backward pass (targets, full-image losses of tiled runs). Fitted to
#: peak RSS of tiled CPU runs (jax 0.10.2, 1 iteration per tile): 1668, 2445 and 4563 MB at
#: 768^2, 1024^2 and 1536^2 px (tiles of 384, 512, 512 px); the tiled estimate is within 5% of each.
FORWARD_FACTOR = 13.0


def forward_peak_bytes(height: int, width: int, deepest: str) -> int:
    """Predicted extra memory of one image's forward pass up to ``deepest`` (no gradient): XLA
    frees each activation once the next is computed, so the largest input-output pair decides."""
    h, w, prev, largest = height, width, height * width * 3, 0
    for name, _, cout in LAYERS[: layer_index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
            cur = h * w * LAYERS[LAYER_NAMES.index(name) - 1][2]
        else:
            cur = h * w * cout
        largest, prev = max(largest, prev + cur), cur
    return int(FORWARD_FACTOR * largest)


#: What ``convolution: auto`` adds on a CPU (the Winograd kernels of conv3_2 .. conv5_1, 84 MB, what
#: making them leaves allocated, and the transforms' temporaries). Measured as peak RSS of 2-iteration
#: runs against ``convolution: direct`` (jax 0.10.2, 2026-11-29): +196, +255, +251 and +145 MB at
#: 96x128, 192x256, 384x512 and 576x768 px, +331 MB for 4 variants at 192x256.
WINOGRAD_BYTES = 250 * 2**20


def estimate_peak_bytes(height: int, width: int, batch: int, layers: Sequence[str],
                        history_size: int = 20, winograd: bool = False, extra: int = 0) -> int:
    """Predicted peak memory of a run: activations, L-BFGS history and images, and ``extra`` bytes
    per variant (the correspondence losses' matrices,
    :meth:`jaxstyle.model.losses.Objective.match_bytes`), plus a baseline (and
    :data:`WINOGRAD_BYTES` where ``winograd``, the run's convolutions may take that path)."""
    deepest = max(layers, key=layer_index)
    acts = activation_floats(height, width, deepest) * ACTIVATION_FACTOR
    images = (2 * history_size + 8) * height * width * 3 * 4  # s/y history, x, grads, targets
    return int(batch * (acts + images + extra) + BASELINE_BYTES + (WINOGRAD_BYTES if winograd else 0))


def available_bytes() -> int | None:
    """Memory the default device can use: the GPU's limit, or the host's available memory."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        return stats.get("bytes_limit")
    kib = _proc_kib("/proc/meminfo", "MemAvailable:")
    if kib is not None:
        return kib * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_fits(height: int, width: int, batch: int, layers: Sequence[str], history_size: int = 20,
               available: int | None = None) -> int:
    """Return the estimate, or raise :class:`ImageError` with it when it exceeds what is available."""
    return require_fits(estimate_peak_bytes(height, width, batch, layers, history_size),
                        f"{batch} variant(s) at {width}x{height} px", available)


def require_fits(need: int, what: str, available: int | None = None) -> int:
    """Return ``need`` (bytes), or raise :class:`ImageError` naming ``what`` when it exceeds what is
    available."""
    have = available if available is not None else available_bytes()
    if have is not None and need > have:
        raise ImageError(
            f"{what} need about {need / 2**30:.1f} GiB, but only {have / 2**30:.1f} GiB is available on "
            f"{jax.devices()[0].platform}; lower size or the number of variants, set tile_size (e.g. 512) "
            "for large images, or set memory_check: false")
    return need


def peak_rss_bytes() -> int:
    """This process's peak resident memory.

    Read from ``VmHWM`` in /proc/self/status where it exists: ``getrusage``'s ru_maxrss survives
    ``exec``, so a small child of a large parent would report the parent's size.
    """
    kib = _proc_kib("/proc/self/status", "VmHWM:")
    if kib is not None:
        return kib * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_kib(path: str, key: str) -> int | None:
    """The number on a ``key  N kB`` line of a /proc file, or None where there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None
