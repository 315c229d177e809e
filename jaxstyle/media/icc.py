"""Colour management: inputs converted to sRGB through their embedded ICC profile, outputs tagged sRGB.

The network was trained on sRGB photographs and every output is written as sRGB values, so an input
that carries another profile (Adobe RGB, Display P3, a print shop's CMYK) is converted to sRGB when it
is read, by Little CMS through Pillow's ``ImageCms`` (perceptual intent, which for matrix profiles such
as Adobe RGB is the relative colorimetric conversion). Images tagged sRGB, and untagged ones, are read
as they are. A profile that cannot be read or applied leaves the image as sRGB, with one warning
line from :func:`profile_lines`, never an error.
"""

from __future__ import annotations

import io
import struct
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from PIL import Image, ImageCms

#: Modes Little CMS converts in place (other modes are converted to RGB first).
_CMS_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB", "L": "RGB"}
# A fixed creation date makes the embedded profile, and so every output file, the same bytes on
# every run (Little CMS stamps the time of the call; the profile carries no ID checksum).
_PROFILE_DATE = struct.pack(">6H", 2026, 1, 1, 0, 0, 0)


@lru_cache(maxsize=1)
def srgb_icc() -> bytes:
    """The sRGB ICC profile every output carries (Little CMS's built-in sRGB, a fixed date)."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[24:36] = _PROFILE_DATE
    return bytes(data)


def _embedded_profile(img: Image.Image) -> tuple[str, ImageCms.ImageCmsProfile | None, str]:
    """What an opened image's colour tag asks for: ``("none" | "srgb" | "convert" | "unreadable",
    profile, description)``. sRGB is recognised by PNG's sRGB chunk or a profile whose description
    names sRGB; anything else with a readable profile is converted."""
    data = img.info.get("icc_profile")
    if not data:
        return ("srgb", None, "sRGB") if "srgb" in img.info else ("none", None, "")
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
        description = (ImageCms.getProfileDescription(profile) or "").strip()
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError) as exc:
        return "unreadable", None, str(exc).strip() or type(exc).__name__
    if "srgb" in description.lower().replace(" ", ""):
        return "srgb", profile, description
    return "convert", profile, description or "unnamed profile"


def _conversion(img: Image.Image) -> tuple[ImageCms.ImageCmsTransform | None, str, str | None]:
    """How an opened image reaches sRGB: ``(transform, mode, message)``. ``transform`` is None where
    nothing is converted; ``message`` then says why a profile is not applied (the image is read as
    sRGB) or is None, and otherwise names the profile converted from."""
    kind, profile, description = _embedded_profile(img)
    if kind == "unreadable":
        return None, img.mode, f"its colour profile cannot be read ({description})"
    if kind != "convert":
        return None, img.mode, None
    if img.mode in _CMS_MODES:
        mode = img.mode
    elif img.mode in ("LA", "La", "PA", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        mode = "RGBA"
    elif img.mode == "P":
        mode = "RGB"
    else:
        return None, img.mode, f"its colour profile ({description}) cannot be applied to a {img.mode} image"
    try:
        return _transform(profile, mode), mode, description
    except (OSError, ValueError, ImageCms.PyCMSError) as exc:
        why = str(exc).strip() or type(exc).__name__
        return None, img.mode, f"its colour profile ({description}) cannot be applied ({why})"


def to_srgb(img: Image.Image) -> Image.Image:
    """``img`` with its pixels converted to sRGB through its embedded profile where it has one that
    is not sRGB and can be applied; otherwise ``img`` itself (used as sRGB; :func:`profile_lines`
    says why)."""
    transform, mode, _ = _conversion(img)
    if transform is None:
        return img
    out = ImageCms.applyTransform(img if img.mode == mode else img.convert(mode), transform)
    out.info = {k: v for k, v in img.info.items() if k != "icc_profile"}
    return out


def _transform(profile: ImageCms.ImageCmsProfile, mode: str) -> ImageCms.ImageCmsTransform:
    """Little CMS's transform from ``profile`` (images of ``mode``) to sRGB. A lookup-table profile
    (CMYK, most print profiles) is evaluated exactly, not through the table Little CMS would
    precompute for speed: on a made CMYK profile that table put dark tones up to 16 levels off (at
    most 0.7 evaluated exactly; 2.0 s instead of 0.4 s for 6 megapixels). Matrix profiles (Adobe RGB,
    Display P3) keep the fast path, which is exact for them."""
    flags = ImageCms.Flags.NONE if getattr(profile.profile, "is_matrix_shaper", False) else ImageCms.Flags.NOOPTIMIZE
    return ImageCms.buildTransform(profile, ImageCms.ImageCmsProfile(io.BytesIO(srgb_icc())), mode, _CMS_MODES[mode],
                                   renderingIntent=ImageCms.Intent.PERCEPTUAL, flags=flags)


def profile_lines(paths: Iterable[str | Path]) -> list[str]:
    """The log lines for a run's input images: which were converted from which profile, and a
    warning for each whose profile could not be used (read as sRGB)."""
    out = []
    for path in dict.fromkeys(str(p) for p in paths):
        try:
            with Image.open(path) as img:
                transform, _, message = _conversion(img)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
            continue  # not an image Pillow opens (a clip): the reader reports its own errors
        if transform is not None:
            out.append(f"colour: {path} converted from its profile '{message}' to sRGB")
        elif message:
            out.append(f"warning: {path}: {message}; it is used as sRGB")
    return out
