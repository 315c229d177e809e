"""The plan of a run: its stages (coarse to fine) and each stage's tiles.

A direct run is the plan of one stage, one tile and one pass.

**Coarse-to-fine.** With ``scales: [256, 512]`` and ``size: 1024`` the image is optimised at a long
side of 256 px, upsampled, optimised at 512 px, upsampled and finished at 1024 px. Each stage
recomputes the photograph's content targets and the artwork's Gram targets at its own size, and
starts L-BFGS afresh: its history holds image-sized steps of the previous size, which mean nothing
after a resize.

**Tiling.** A stage larger than ``tile_size`` is optimised tile by tile, in ``tile_passes`` passes
over a grid of overlapping tiles whose offsets shift between passes, so that no tile border stays
in place. Each tile is matched against

* its own content target: P^l of the same crop of the photograph;
* the *whole* artwork's style statistics: per-position Gram matrices of the full style image at the
  stage's size, times the tile's M_l (``Objective.targets_from_grams``), so every tile is pushed
  towards the statistics of the whole painting, not of one region of it.

A tile keeps the whole image's balance of content and style (:func:`tile_style_share`):

* ``losses: paper``: its style weight is beta times its share M_t/M of the image's pixels. The full
  image's style loss (Eq. 4) normalises by M_l^2 of the whole image; a tile whose Gram matrix G_t is
  its share M_t/M of the whole's G has gradient (M/M_t) times the full loss's gradient when
  normalised by its own M_t^2, while Eq. 1's plain sum gives the tile the full loss's content
  gradient. Scaling beta by M_t/M restores the balance.
* ``losses: mean``: beta stays. Both terms are means over the tile's positions, so at a tile pixel
  the content gradient is M/M_t times the full loss's (1/(N M_t) against 1/(N M)), and so is the
  style gradient when the tile's G_t/M_t matches the whole's G/M; their ratio is the full one's.

With a single tile the tiled stage *is* the untiled one in both. The optimised tile is blended back with weights
that ramp linearly across the overlap (1 on image borders), so no pixel near a tile edge, where the
network sees zero padding, decides the result alone.

Everything runs through the same compiled programs as a direct run (one compilation per tile shape);
variants (seeds, sweeps) stay one batch through every stage and tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..media.images import fit_shape
from .memory import BASELINE_BYTES, WINOGRAD_BYTES, estimate_peak_bytes, forward_peak_bytes
from ..model.vgg import layer_index

if TYPE_CHECKING:  # a type only: the config resolves ``scales: auto`` through this module
    from .config import Config
    from ..model.losses import Objective

#: ``scales: auto``: coarser stages halve the long side while it stays at least this many pixels,
#: so the coarsest stage has a long side from 128 to 255 px ...
PYRAMID_MIN_SIDE = 128
#: ... and a smaller image, down to twice this, gets one stage at half its size, 64 to 127 px: at
#: 128 px it cleared the speckle that 500 direct iterations left and gave the content/style balance
#: of the larger sizes (docs/quality.md). Below 128 px one stage.
SMALL_PYRAMID_MIN_SIDE = 64
#: ``optimizer.iterations`` when the config gives none: the paper's 500 for a run of one stage; the
#: last stage of a multi-stage run refines what its coarser stages made.
DIRECT_ITERATIONS, LAST_STAGE_ITERATIONS = 500, 60
#: ``scale_iterations: auto``: the coarsest stage, which starts from noise, gets this many times the
#: last stage's iterations; the stages between get as many as the last.
COARSEST_FACTOR = 2


def auto_scales(size: int) -> list[int]:
    """Long sides of the automatic pyramid's coarser stages for a final long side ``size``: halved
    (rounding up) while at least :data:`PYRAMID_MIN_SIDE`; where that gives none, one half of at
    least :data:`SMALL_PYRAMID_MIN_SIDE`; coarsest first. 512 -> [128, 256], 200 -> [100]."""
    scales, side = [], size
    while (side + 1) // 2 >= PYRAMID_MIN_SIDE:
        side = (side + 1) // 2
        scales.insert(0, side)
    if not scales and (size + 1) // 2 >= SMALL_PYRAMID_MIN_SIDE:
        scales = [(size + 1) // 2]
    return scales


def auto_scale_iterations(n_coarse: int, last: int) -> list[int]:
    """Iterations of ``n_coarse`` coarser stages, coarsest first, when the last stage runs ``last``:
    :data:`COARSEST_FACTOR` times ``last`` for the coarsest, ``last`` for the others."""
    return [COARSEST_FACTOR * last if i == 0 else last for i in range(n_coarse)]


@dataclass(frozen=True)
class Stage:
    """One resolution of a run: the image's ``(H, W)``, iterations per pixel, the tile's ``(h, w)``
    (equal to ``shape`` when the stage is not tiled) and the passes over the tile grid."""

    shape: tuple[int, int]
    iterations: int
    tile: tuple[int, int]
    passes: int = 1

    @property
    def tiled(self) -> bool:
        return self.tile != self.shape

    def iterations_per_tile(self) -> int:
        """Each pass gives each tile an equal share of the stage's iterations."""
        return -(-self.iterations // self.passes)


def plan_stages(shape: Sequence[int], cfg: Config) -> list[Stage]:
    """The stages of ``cfg`` for a photograph of final ``shape`` ``(H, W)``, coarsest first."""
    shape = (int(shape[0]), int(shape[1]))
    sizes = [(fit_shape(shape, s), n) for s, n in zip(cfg.scales, cfg.scale_iterations)]
    sizes.append((shape, cfg.optimizer.iterations))
    out = []
    for (h, w), n in sizes:
        t = cfg.tile_size
        tiled = t > 0 and max(h, w) > t
        tile = (min(t, h), min(t, w)) if tiled else (h, w)
        out.append(Stage((h, w), n, tile, cfg.tile_passes if tiled else 1))
    return out


def tile_starts(length: int, tile: int, overlap: int, offset: int = 0) -> list[int]:
    """Starts of the tiles along one axis.

    The first tile starts at 0 and the last ends at ``length``; neighbours overlap by at least
    ``overlap`` pixels; ``offset`` (0 <= offset < tile - overlap) shifts the grid's interior edges.
    """
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts, k = [], 0
    while not starts or starts[-1] < length - tile:
        s = min(max(k * stride - offset, 0), length - tile)
        if not starts or s != starts[-1]:
            starts.append(s)
        k += 1
    return starts


def tile_grid(stage: Stage, overlap: int, pass_index: int) -> list[tuple[int, int]]:
    """``(y, x)`` corners of every tile of one pass, in raster order.

    Pass p shifts the grid by p / passes of a stride along both axes, so the borders of one pass
    fall inside the tiles of the others.
    """
    (h, w), (th, tw) = stage.shape, stage.tile
    ys = tile_starts(h, th, overlap, (pass_index * max(th - overlap, 1)) // stage.passes)
    xs = tile_starts(w, tw, overlap, (pass_index * max(tw - overlap, 1)) // stage.passes)
    return [(y, x) for y in ys for x in xs]


def pass_tiles(stage: Stage, overlap: int) -> list[int]:
    """How many tiles each pass of ``stage`` has (the shifted grids of later passes can have more)."""
    return [len(tile_grid(stage, overlap, p)) for p in range(stage.passes)]


def stage_work(stage: Stage, overlap: int) -> int:
    """A stage's cost in pixel-iterations: each tile's pixels times its iterations, over every tile of
    every pass. What the time estimate counts, since an evaluation's time grows with its pixels."""
    th, tw = stage.tile
    return sum(pass_tiles(stage, overlap)) * th * tw * stage.iterations_per_tile()


def blend_ramp(start: int, tile: int, length: int, overlap: int) -> np.ndarray:
    """``(tile,)`` write-back weights along one axis: a linear ramp over ``overlap`` pixels at each
    edge that lies inside the image, 1 elsewhere (and at the image's own borders)."""
    i = np.arange(tile, dtype=np.float64)
    w = np.ones(tile)
    if start > 0:
        w = np.minimum(w, (i + 1) / (overlap + 1))
    if start + tile < length:
        w = np.minimum(w, (tile - i) / (overlap + 1))
    return w


def tile_borders(stage: Stage, overlap: int) -> tuple[list[int], list[int]]:
    """Rows and columns where some tile of some pass has an edge inside the image."""
    rows, cols = set(), set()
    (h, w), (th, tw) = stage.shape, stage.tile
    for p in range(stage.passes):
        for y, x in tile_grid(stage, overlap, p):
            rows.update(b for b in (y, y + th) if 0 < b < h)
            cols.update(b for b in (x, x + tw) if 0 < b < w)
    return sorted(rows), sorted(cols)


def upsample(images: np.ndarray, shape: Sequence[int], method: str = "cubic") -> np.ndarray:
    """``(V, h, w, 3)`` -> ``(V, H, W, 3)`` with ``jax.image.resize``'s ``method``."""
    v, _, _, c = images.shape
    return np.asarray(jax.image.resize(jnp.asarray(images), (v, *shape, c), method))


def tile_style_share(stage: Stage, losses: str) -> float:
    """What a tile's beta is multiplied by so that its objective keeps the whole image's balance.

    ``"paper"``: M_t / M (module docstring). ``"mean"``: 1. Both of its terms are means over the
    tile, so each one's gradient at a tile pixel is M / M_t times the whole image's, and their
    ratio is the whole image's already.
    """
    if losses == "mean":
        return 1.0
    (h, w), (th, tw) = stage.shape, stage.tile
    return (th * tw) / (h * w)


def stage_peak_bytes(stage: Stage, batch: int, layers: Sequence[str], history_size: int,
                     winograd: bool = False, objective: Objective | None = None, style_scale: float = 1.0,
                     artworks: int = 1) -> int:
    """Predicted peak memory of one stage (with ``objective``, its correspondence losses' matrices for
    ``artworks`` artworks at the stage's size times ``style_scale``).

    Untiled: :func:`jaxstyle.engine.memory.estimate_peak_bytes` of the image. Tiled: the larger of the
    tile's optimisation and a forward pass over the whole image (targets and the full-image loss),
    plus the whole-image buffers kept on the host (the batch, blending temporaries, the photograph,
    the style and mask images).
    """
    art = (round(stage.shape[0] * style_scale), round(stage.shape[1] * style_scale))
    extra = 0 if objective is None else objective.match_bytes(stage.tile, [art] * artworks)
    program = estimate_peak_bytes(*stage.tile, batch, layers, history_size, winograd, extra)
    base = BASELINE_BYTES + (WINOGRAD_BYTES if winograd else 0)
    if not stage.tiled:
        return program
    h, w = stage.shape
    deepest = max(layers, key=layer_index)
    buffers = (3 * batch + 6) * h * w * 3 * 4
    return max(program, forward_peak_bytes(h, w, deepest) + base) + buffers
