"""The images a run works on: the photograph, artworks and masks at a stage's size, the start
images, and the colour recombination and denoising after optimisation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..media import color
from .config import Config
from ..core.errors import ImageError
from ..media.icc import profile_lines
from ..media.images import border_trim, fit_shape, load_image, resize, sized
from .balance import FLAT_SIDE, flat_share
from .variants import Variant
from ..model.vgg import min_image_side


@dataclass
class Inputs:
    """The images a run optimises against, as the network sees them.

    content: ``(H, W, 3)`` the photograph at ``size`` (gray luminance with
    ``preserve_colors: luminance``); styles: the artworks at the photograph's size times
    ``style_scale`` (colour-matched or luminance-matched when asked); photo: the photograph in
    colour, for recombining colours afterwards; masks: ``(K, H, W)`` region masks or None; trims:
    per artwork the pixels cut from its ``(top, bottom, left, right)`` edges (``style_trim``), or
    None where ``auto`` found a trim that would leave too little and cut nothing.
    """

    content: np.ndarray
    styles: list[np.ndarray]
    photo: np.ndarray
    masks: np.ndarray | None = None
    trims: list = dataclasses.field(default_factory=list)


def trimmed_style(path: str, cfg: Config) -> tuple[np.ndarray, tuple | None]:
    """An artwork at its own size with its border cut (``style_trim: auto``), and the cut."""
    full = load_image(path, max_pixels=cfg.max_pixels)
    cut = style_cut(full, cfg)
    top, bottom, left, right = cut or (0, 0, 0, 0)
    return full[top:full.shape[0] - bottom, left:full.shape[1] - right], cut


def load_style(path: str, shape: tuple[int, int], cfg: Config) -> tuple[np.ndarray, tuple | None]:
    """An artwork at ``shape`` with its border cut (``style_trim: auto``), and the cut. An artwork
    with nothing to cut is read exactly as without trimming."""
    art, cut = trimmed_style(path, cfg)
    return sized(art, path, shape=shape, max_pixels=cfg.max_pixels), cut


def style_cut(full: np.ndarray, cfg: Config) -> tuple[int, int, int, int] | None:
    """What ``style_trim`` cuts from an artwork read at its own size: :func:`border_trim`'s cut with
    ``auto``, nothing with ``none``."""
    return border_trim(full) if cfg.style_trim == "auto" else (0, 0, 0, 0)


def artwork_measures(cfg: Config) -> tuple[list[float], list[int]]:
    """Each artwork as the run uses it (its border cut), read once: its share of flat pixels
    (:func:`jaxstyle.engine.balance.flat_share`) at a long side of
    :data:`~jaxstyle.engine.balance.FLAT_SIDE` px (its own where smaller), whatever the size of the
    run, and its own long side."""
    shares, sides = [], []
    for path in cfg.styles:
        art, _ = trimmed_style(path, cfg)
        shares.append(flat_share(resize(art, fit_shape(art.shape[:2], min(FLAT_SIDE, max(art.shape[:2]))))))
        sides.append(max(art.shape[:2]))
    return shares, sides


def flat_shares(cfg: Config) -> list[float]:
    """Each artwork's flat share (:func:`artwork_measures`)."""
    return artwork_measures(cfg)[0]


def style_trims(cfg: Config) -> list:
    """Each artwork's cut as :func:`load_style` makes it (``(top, bottom, left, right)``, or None)."""
    return [style_cut(load_image(p, max_pixels=cfg.max_pixels), cfg) for p in cfg.styles]


def trim_lines(paths, trims) -> list[str]:
    """The log lines that say what ``style_trim`` cut (or why it cut nothing)."""
    out = []
    for path, cut in zip(paths, trims):
        if cut is None:
            out.append(f"warning: style_trim: cutting {path}'s border would leave too little of it; nothing was cut")
        elif any(cut):
            out.append(f"style_trim: cut {path}'s border: top {cut[0]}, bottom {cut[1]}, left {cut[2]}, "
                       f"right {cut[3]} px")
    return out


def input_lines(cfg: Config, trims) -> list[str]:
    """The log lines about a run's input images: each converted from its colour profile (or a
    warning where its profile could not be used) and what ``style_trim`` cut."""
    paths = [cfg.content, *cfg.styles, *(cfg.masks or [])]
    if cfg.init not in ("noise", "content", "style"):
        paths.append(cfg.init)
    return profile_lines(paths) + trim_lines(cfg.styles, trims)


def trim_report(trims) -> list:
    """report.json's ``style_trim``: per artwork the pixels cut per side, or None."""
    return [None if cut is None else dict(zip(("top", "bottom", "left", "right"), map(int, cut))) for cut in trims]


def prepare_images(cfg: Config, layers: tuple[str, ...], shape: tuple[int, int] | None = None,
                   frames: np.ndarray | None = None) -> Inputs:
    """Load, size and colour-prepare the content, style and mask images of ``cfg``.

    ``shape``: the photograph's ``(height, width)`` (a coarse-to-fine stage); default: ``cfg.size``
    (its long side, or its exact ``[height, width]``). ``frames``: a clip's batch, ``(B, H, W, 3)``,
    one photograph per batch slot, used (resized to ``shape``) instead of ``cfg.content``; the
    content and photo are then ``(B, h, w, 3)``.
    """
    if frames is not None:
        shape = tuple(frames.shape[1:3]) if shape is None else shape
        photo = np.stack([resize(f, shape) for f in frames])
    else:
        if shape is None and isinstance(cfg.size, list):
            shape = (cfg.size[0], cfg.size[1])
        photo = load_image(cfg.content, size=cfg.size if shape is None else None, shape=shape,
                           max_pixels=cfg.max_pixels)
    h, w = photo.shape[-3:-1]
    need = min_image_side(layers)
    if min(h, w) < need:
        deepest = max(layers, key=lambda l: min_image_side([l]))
        what = "the clip's frames are" if frames is not None else "content image is"
        raise ImageError(f"{what} {w}x{h} px at size {max(h, w)}: "
                         f"too small for layer {deepest}, which needs at least {need} px on each side")
    shape = (max(1, round(h * cfg.style_scale)), max(1, round(w * cfg.style_scale)))
    if min(shape) < need:
        raise ImageError(f"style_scale {cfg.style_scale} makes the style images {shape[1]}x{shape[0]} px, "
                         f"too small for the layers used (at least {need} px on each side)")
    loaded = [load_style(p, shape, cfg) for p in cfg.styles]
    styles, trims = [a for a, _ in loaded], [t for _, t in loaded]
    content = photo
    if cfg.preserve_colors == "histogram":  # a clip's frames, stacked, count as one photograph
        styles = [np.clip(color.match_color_histogram(s, photo.reshape(-1, w, 3)), 0, 1).astype(np.float32)
                  for s in styles]
    elif cfg.preserve_colors == "palette":  # the photograph (a clip's frames together) in the artworks' colours
        pool = np.concatenate([s.reshape(-1, 3) for s in styles])[:, None, :]
        content = np.clip(color.match_color_histogram(photo.reshape(-1, w, 3), pool), 0, 1).reshape(
            photo.shape).astype(np.float32)
    elif cfg.preserve_colors == "luminance":
        y = color.rgb_to_yiq(photo)[..., 0]
        content = color.gray_rgb(y)
        styles = [color.gray_rgb(np.clip(color.match_luminance(color.rgb_to_yiq(s)[..., 0], y), 0, 1))
                  for s in styles]
    masks = None
    if cfg.masks:
        masks = np.stack([load_image(m, shape=(h, w), max_pixels=cfg.max_pixels).mean(-1) for m in cfg.masks])
    return Inputs(content, styles, photo, masks, trims)


def finish_images(cfg: Config, images: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """Colour recombination and denoising after optimisation; ``(V, H, W, 3)`` clipped to [0, 1]."""
    images = np.asarray(images, np.float64)
    if cfg.preserve_colors in ("luminance", "chroma"):
        # Luminance of the result, I and Q (chroma) of the photograph (a clip: each image's own frame).
        photos = photo if photo.ndim == 4 else [photo] * len(images)
        images = np.stack([color.combine_luminance(color.rgb_to_yiq(im)[..., 0], p) for im, p in zip(images, photos)])
    if cfg.denoise:
        images = np.stack([median_filter(im, cfg.denoise) for im in images])
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def median_filter(image: np.ndarray, size: int) -> np.ndarray:
    """Per-channel ``size`` x ``size`` median (edges replicated): removes pixel-level noise."""
    r = size // 2
    padded = np.pad(image, ((r, r), (r, r), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    shifts = [padded[dy:dy + h, dx:dx + w] for dy in range(size) for dx in range(size)]
    return np.median(np.stack(shifts), axis=0)


def noise_image(seed: int, shape: tuple[int, ...], distribution: str = "normal",
                amplitude: float = 0.02) -> np.ndarray:
    """White noise around mid-grey, each pixel and channel independent, from ``jax.random.key(seed)``.

    ``normal``: 0.5 + amplitude * N(0, 1); ``uniform``: uniform on [0.5 - amplitude, 0.5 + amplitude]
    (amplitude 0.5 is the paper's white noise on [0, 1]). Not clipped: the optimisation is not
    bounded either.
    """
    key = jax.random.key(seed)
    if distribution == "uniform":
        x = jax.random.uniform(key, shape, jnp.float32, 0.5 - amplitude, 0.5 + amplitude)
    else:
        x = 0.5 + amplitude * jax.random.normal(key, shape, jnp.float32)
    return np.asarray(x)


def initial_images(init: str, seeds: list[int], content: np.ndarray, style: np.ndarray,
                   max_pixels: int, noise: str = "normal", amplitude: float = 0.02) -> np.ndarray:
    """``(V, H, W, 3)`` starting images.

    ``noise``: white noise around mid-grey, one draw per seed (:func:`noise_image` with ``noise``
    and ``amplitude``); ``content`` / ``style``: that image (seeds then give identical starts);
    anything else: an image file resized to the content's size.
    """
    shape = content.shape
    if init == "noise":
        return np.stack([noise_image(s, shape, noise, amplitude) for s in seeds])
    if init == "content":
        start = content
    elif init == "style":
        start = resize(style, shape[:2])
    else:
        start = load_image(init, shape=shape[:2], max_pixels=max_pixels)
    return np.broadcast_to(start, (len(seeds),) + shape).copy()


def start_images(cfg: Config, variants: list[Variant], inputs: "Inputs") -> np.ndarray:
    """``(V, H, W, 3)`` starting images of ``variants`` at ``inputs``' size (see :func:`initial_images`);
    gray with ``preserve_colors: luminance``, whose optimisation runs on gray images."""
    if inputs.content.ndim == 4:  # a clip: each slot from its own frame (the same noise for every frame)
        x0 = np.stack([initial_images(cfg.init, [v.seed], c, inputs.styles[0], cfg.max_pixels, cfg.noise,
                                      cfg.noise_amplitude)[0] for v, c in zip(variants, inputs.content)])
    else:
        x0 = initial_images(cfg.init, [v.seed for v in variants], inputs.content, inputs.styles[0], cfg.max_pixels,
                            cfg.noise, cfg.noise_amplitude)
    if cfg.preserve_colors == "luminance":
        x0 = np.stack([color.gray_rgb(color.rgb_to_yiq(x)[..., 0]) for x in x0])
    return x0
