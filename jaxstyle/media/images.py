"""Image input and output: any common file in, RGB float32 in [0, 1] out; atomic PNG writes.

Every mode Pillow reads is converted rather than refused: grayscale and 1-bit are replicated to
RGB, 16-bit and 32-bit integer images keep their full precision, palette and alpha images are
composited over white, CMYK goes through Pillow's conversion, and the EXIF orientation is applied
so a phone photo is upright. An embedded colour profile other than sRGB (Adobe RGB, Display P3, a
CMYK print profile) is converted to sRGB first (:mod:`jaxstyle.media.icc`). Resizing works on float
channels (no 8-bit rounding in between). Written images carry the sRGB profile.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..core.errors import ImageError
from ..core.fileio import atomic_write
from .icc import srgb_icc, to_srgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
#: Default refusal threshold, checked from the header before any pixel is decoded.
DEFAULT_MAX_PIXELS = 64_000_000


def _to_float_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=-1).astype(np.float32)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = arr / 255.0 if arr.max(initial=0) > 1.0 else arr
        return np.repeat(np.clip(arr, 0, 1)[..., None], 3, axis=-1).astype(np.float32)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_image(
    path: str | Path,
    size: int | None = None,
    shape: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` float32 RGB in [0, 1].

    Args:
      path: any format Pillow reads; animated files use their first frame.
      size: if given, resize so the longest side is ``size`` pixels (aspect ratio kept).
      shape: if given, resize to exactly ``(height, width)`` (takes precedence over ``size``).
      max_pixels: refuse images with more pixels than this, read from the header before decoding.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageError(f"{path}: {w}x{h} pixels exceeds the limit of {max_pixels} "
                                     "(raise max_pixels to allow it)")
                img.load()
                img = ImageOps.exif_transpose(img)
                arr = _to_float_rgb(to_srgb(img))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused as too large: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"cannot read image {path}: no pixels")
    return sized(arr, path, size, shape, max_pixels)


def sized(arr: np.ndarray, path: str | Path, size: int | None = None, shape: tuple[int, int] | None = None,
          max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``arr`` (read from ``path``) resized as :func:`load_image`'s ``size`` and ``shape`` say, a
    target over ``max_pixels`` refused in one line."""
    target = tuple(shape) if shape is not None else fit_shape(arr.shape[:2], size) if size is not None \
        else arr.shape[:2]
    if target[0] * target[1] > max_pixels:
        raise ImageError(f"{path}: resizing to {target[1]}x{target[0]} px exceeds the limit of "
                         f"{max_pixels} pixels (raise max_pixels to allow it)")
    return resize(arr, target)


def fit_shape(shape: Sequence[int], size: int) -> tuple[int, int]:
    """``(height, width)`` with the longest side ``size`` and the aspect ratio of ``shape``."""
    h, w = int(shape[0]), int(shape[1])
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize ``(H, W, 3)`` float RGB to ``(height, width)`` with Lanczos, per float channel."""
    h, w = int(shape[0]), int(shape[1])
    if image.shape[:2] == (h, w):
        return np.asarray(image, np.float32)
    chans = [np.asarray(Image.fromarray(np.asarray(image[..., c], np.float32), mode="F")
                        .resize((w, h), Image.Resampling.LANCZOS)) for c in range(image.shape[-1])]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


#: A frame's or margin's lines: luminance varies along the line by less than this (standard
#: deviation, 8-bit levels).
FLAT_STD = 12.0
#: Inside a frame, lines whose mean luminance differs from the artwork's further in by more than
#: this many levels (a light canvas edge, a mount's bevel, the frame's own shading) ...
EDGE_LEVELS = 24.0
#: ... are cut too, within this share of the side after the frame.
EDGE_SHARE = 0.06
#: A trim that would leave less than this share of either side is not made.
KEEP_SHARE = 0.5


def _side_trim(lum: np.ndarray) -> int:
    """Lines to cut from the start of ``lum`` ``(lines, length)``: the near-uniform band at the
    edge (a frame, a margin) and, only behind such a band, the lines within :data:`EDGE_SHARE` of
    the side whose mean differs from the median line mean of the next band in by more than
    :data:`EDGE_LEVELS` (up to the last of them)."""
    n = len(lum)
    std, mean = lum.std(axis=1), lum.mean(axis=1)
    k = 0
    while k < n and std[k] < FLAT_STD:
        k += 1
    cap = max(1, round(EDGE_SHARE * n))
    if 0 < k and k + 2 * cap <= n:
        inside = np.median(mean[k + cap:k + 2 * cap])
        outliers = np.nonzero(np.abs(mean[k:k + cap] - inside) > EDGE_LEVELS)[0]
        if outliers.size:
            k += int(outliers[-1]) + 1
    return k


def border_trim(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixels to cut from an artwork's ``(top, bottom, left, right)`` edges: a frame, a mount or a
    scanner margin (near-uniform bands) and the band just inside it (:func:`_side_trim`). None
    when the cut would leave less than :data:`KEEP_SHARE` of the height or width (nothing is cut
    then). ``image``: ``(H, W, 3)`` floats in [0, 1]."""
    lum = (np.asarray(image, np.float64) @ np.array([0.299, 0.587, 0.114])) * 255.0
    cuts = (_side_trim(lum), _side_trim(lum[::-1]), _side_trim(lum.T), _side_trim(lum.T[::-1]))
    h, w = lum.shape
    if h - cuts[0] - cuts[1] < KEEP_SHARE * h or w - cuts[2] - cuts[3] < KEEP_SHARE * w:
        return None
    return cuts


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB (any range) -> uint8, clipped to [0, 1] first."""
    return np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(image: np.ndarray | Image.Image, path: str | Path) -> Path:
    """Write a PNG atomically (see :func:`jaxstyle.core.fileio.atomic_write`), tagged sRGB."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(to_uint8(image))
    return atomic_write(path, lambda tmp: pil.save(tmp, format="PNG", icc_profile=srgb_icc()))


def contact_sheet(
    images: Sequence[np.ndarray], labels: Sequence[str], columns: int | None = None,
    tile: int | None = None, title: str | None = None,
) -> Image.Image:
    """A grid of images, each captioned below with its label (e.g. seed, alpha/beta, layers).

    ``tile`` (longest side of each tile in pixels) defaults to the images' own size.
    """
    if len(images) != len(labels):
        raise ValueError("one label per image")
    n = len(images)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    tiles = [Image.fromarray(to_uint8(im)) for im in images]
    if tile:
        tiles = [t.resize(fit_shape((t.height, t.width), tile)[::-1], Image.Resampling.LANCZOS)
                 for t in tiles]
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption, pad = 14, 4
    # Tiles are widened to fit their captions, and the title wraps to the sheet's width.
    tw = max([tw] + [int(measure.textlength(label, font=font)) + 2 for label in labels])
    width = columns * (tw + pad) + pad
    lines = _wrap(title, width - 2 * pad, measure, font) if title else []
    top = len(lines) * caption + pad if lines else 0
    sheet = Image.new("RGB", (width, top + rows * (th + caption + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for k, line in enumerate(lines):
        draw.text((pad, pad + k * caption), line, fill="black", font=font)
    for i, (t, label) in enumerate(zip(tiles, labels)):
        x = pad + (i % columns) * (tw + pad)
        y = top + pad + (i // columns) * (th + caption + pad)
        sheet.paste(t, (x, y))
        draw.text((x, y + th + 1), label, fill="black", font=font)
    return sheet


def _wrap(text: str, width: int, draw: ImageDraw.ImageDraw, font) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line] if line else lines


#: Largest side, in pixels, of a sheet written to docs/ (files there stay under 500 KB).
DOCS_SIDE = 1600
#: Files written to docs/ stay below this many bytes.
DOCS_BYTES = 500_000


def write_docs_jpeg(sheet: Image.Image, path: Path) -> Path:
    """The sheet as a JPEG (quality 90), at most :data:`DOCS_SIDE` px on its long side and under
    :data:`DOCS_BYTES`: a sheet of fine texture is reduced in steps of 10% until it fits."""
    scale = min(1.0, DOCS_SIDE / max(sheet.size))
    while True:
        small = sheet if scale == 1.0 else sheet.resize(
            (round(sheet.width * scale), round(sheet.height * scale)), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        small.convert("RGB").save(buf, format="JPEG", quality=90)
        if buf.tell() < DOCS_BYTES:
            break
        scale *= 0.9
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
