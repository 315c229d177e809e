"""What a run leaves in its output folder: images, a contact sheet, the loss curves and report.json
with the manifest of every file written; and the checks that come before any work (the folder,
earlier results). The driver (:mod:`jaxstyle.driver.job`) decides when; this module only writes.

One naming function (:func:`image_name`) serves the planned-outputs check and every writer. Images
are written as ``image_format`` says: PNG (8 or 16 bits), JPEG or WebP (with ``image_quality``) or
TIFF (8 or 16 bits); 16-bit RGB goes through pypng and tifffile, since Pillow cannot write it.
Every image carries the sRGB ICC profile (:func:`jaxstyle.media.icc.srgb_icc`), so colour-managed
viewers and print workflows read its values as what they are. Every file is written to a temporary
name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import png
import tifffile
from PIL import Image

from ..engine.config import Config
from .curves import write_loss_curves
from ..core.errors import OutputError
from ..core.fileio import atomic_write
from ..media.icc import srgb_icc
from ..media.images import contact_sheet, to_uint8
from ..engine.pipeline import RunResult
from ..engine.variants import Variant, expand_variants, variant_labels
from ..media.video import Clip, write_mp4

SUFFIX = {"png": "png", "jpg": "jpg", "webp": "webp", "tiff": "tif"}


def image_name(index: int, variant: Variant, stage: str | None = None, image_format: str = "png") -> str:
    """``000_seed0.png`` (final) or ``000_seed0_iter00050.png`` / ``000_seed0_stage1.png``
    (intermediate), with the suffix of ``image_format``."""
    suffix = f"_{stage}" if stage else ""
    return f"{index:03d}_seed{variant.seed}{suffix}.{SUFFIX[image_format]}"


def sheet_name(image_format: str = "png") -> str:
    return f"sheet.{SUFFIX[image_format]}"


#: The loss curves' file, next to report.json.
CURVES = "losses.png"
#: A finished image run's batch as optimised (float32, before clipping and colour recombination):
#: what ``jaxstyle --continue`` starts from.
RAW = "result.npz"


def write_image(image: np.ndarray | Image.Image, path: str | Path, image_format: str = "png",
                quality: int = 95, bits: int = 8) -> Path:
    """Write ``(H, W, 3)`` floats in [0, 1] (clipped) or a Pillow image, atomically, tagged sRGB."""
    if bits == 16:
        arr = np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
        return atomic_write(path, lambda tmp: _write16(arr, tmp, image_format))
    pil = image if isinstance(image, Image.Image) else Image.fromarray(to_uint8(image))
    kwargs = {"quality": quality} if image_format in ("jpg", "webp") else {}
    kwargs["icc_profile"] = srgb_icc()
    pil_format = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}[image_format]
    return atomic_write(path, lambda tmp: pil.convert("RGB").save(tmp, format=pil_format, **kwargs))


def _write16(arr: np.ndarray, tmp: str, image_format: str) -> None:
    if image_format == "tiff":
        tifffile.imwrite(tmp, arr, photometric="rgb", iccprofile=srgb_icc())
        return
    h, w, _ = arr.shape
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=False, bitdepth=16).write(buf, arr.reshape(h, w * 3))
    # pypng writes no iCCP chunk: it goes right after IHDR (before the image data, as PNG requires),
    # named, compression method 0 (zlib).
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    iccp = (b"iCCP", b"sRGB\0\0" + zlib.compress(srgb_icc()))
    with open(tmp, "wb") as f:
        png.write_chunks(f, [chunks[0], iccp, *chunks[1:]])


def clip_name(index: int, variant: Variant) -> str:
    """A clip variant's name: its video is ``<name>.mp4``, its frames ``frames/<name>/000000.png`` ..."""
    return f"{index:03d}_seed{variant.seed}"


def planned_outputs(cfg: Config, variants: list[Variant], clip: bool = False) -> list[Path]:
    out = Path(cfg.output)
    if clip:
        files = [out / f"{clip_name(i, v)}.{ext}" for i, v in enumerate(variants) for ext in ("mp4",)]
        files += [out / "frames" / clip_name(i, v) for i, v in enumerate(variants)]
        return files + [out / "report.json", out / CURVES, out / sheet_name(cfg.image_format)]
    files = [out / image_name(i, v, image_format=cfg.image_format) for i, v in enumerate(variants)]
    files += [out / "report.json", out / CURVES, out / RAW]
    if len(variants) > 1:
        files.append(out / sheet_name(cfg.image_format))
    return files


def prepare_output(cfg: Config, clip: bool = False) -> None:
    """Create the output folder and refuse (before any work) to overwrite earlier results."""
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output '{out}' exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {out} is not writable")
    if not cfg.overwrite:
        existing = [f for f in planned_outputs(cfg, expand_variants(cfg), clip) if f.exists()]
        if existing:
            raise OutputError(f"{existing[0]} already exists; choose another output, or replace it with --overwrite (overwrite: true)")


def write_json(data: Any, path: Path) -> Path:
    """Write JSON atomically (see :func:`jaxstyle.core.fileio.atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def save_raw(path: str, images: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a temporary name
        np.savez(f, images=np.asarray(images, np.float32))


def write_outputs(cfg: Config, result: RunResult, also: list[str] = ()) -> Path:
    """The images, the contact sheet (more than one variant), the loss curves and report.json
    (written last, with the manifest of every file the run wrote: these and ``also``)."""
    out = Path(cfg.output)
    for i, (v, img) in enumerate(zip(result.variants, result.images)):
        name = image_name(i, v, image_format=cfg.image_format)
        write_image(img, out / name, cfg.image_format, cfg.image_quality, cfg.image_bits)
        result.report["variants"][i]["image"] = name
    labels = variant_labels(result.variants, cfg.sweep)
    if len(result.variants) > 1:
        sheet = contact_sheet(list(result.images), labels, tile=min(256, max(result.images.shape[1:3])))
        write_image(sheet, out / sheet_name(cfg.image_format), cfg.image_format, cfg.image_quality)
        result.report["sheet"] = sheet_name(cfg.image_format)
    if write_loss_curves(result.report.get("history", []), labels, out / CURVES) is not None:
        result.report["curves"] = CURVES
    if result.checkpoint is None and result.raw is not None and len(result.raw) == len(result.images):
        # The batch as optimised, in float32: what --continue starts from (an 8-bit image would lose
        # the detail the next iterations refine).
        atomic_write(out / RAW, lambda tmp: save_raw(tmp, result.raw))
        result.report["raw"] = RAW
    result.report["files"] = manifest(result.report, also)
    return write_json(result.report, out / "report.json")


def write_clip_outputs(cfg: Config, result: RunResult, also: list[str] = ()) -> Path:
    """Per variant its frames (``frames/<name>/000000.png`` ...) and, once the clip is finished, its
    video (``<name>.mp4``, H.264); a sheet of evenly spaced frames of the first variant, the loss
    curves and report.json (written last)."""
    out, clip = Path(cfg.output), result.clip
    suffix = SUFFIX[cfg.image_format]
    for i, (v, frames) in enumerate(zip(result.variants, result.frames)):
        name = clip_name(i, v)
        folder = out / "frames" / name
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):
            write_image(frame, folder / f"{t:06d}.{suffix}", cfg.image_format, cfg.image_quality, cfg.image_bits)
        entry = result.report["variants"][i]
        entry["frames_folder"] = f"frames/{name}"
        if result.checkpoint is None and len(frames):
            write_mp4(frames, out / f"{name}.mp4", clip.fps)
            entry["video"] = f"{name}.mp4"
    h, w = result.frames.shape[2:4]
    result.report["clip"]["video_padded"] = (h % 2 == 1 or w % 2 == 1) and result.checkpoint is None
    if result.report["clip"]["video_padded"]:
        result.report["clip"]["video_note"] = (f"{w}x{h} px frames were padded to even sides for H.264 "
                                               "(the last row or column repeated)")
    if result.frames.shape[1]:
        sheet = clip_sheet(result.frames[0], clip)
        write_image(sheet, out / sheet_name(cfg.image_format), cfg.image_format, cfg.image_quality)
        result.report["sheet"] = sheet_name(cfg.image_format)
    labels = variant_labels(result.variants, cfg.sweep)
    if write_loss_curves(result.report.get("history", []), labels, out / CURVES) is not None:
        result.report["curves"] = CURVES
    frames = [f"frames/{clip_name(i, v)}/{t:06d}.{suffix}" for i, v in enumerate(result.variants)
              for t in range(result.frames.shape[1])]
    result.report["files"] = manifest(result.report, [*also, *frames])
    return write_json(result.report, out / "report.json")


REPORT = "report.json"


def manifest(report: dict, also: list[str] = ()) -> list[str]:
    """Every file a run wrote, relative to its folder: ``also`` (intermediate images, frames), each
    variant's image and video, the sheet, the curves and report.json."""
    names = [*also]
    for v in report.get("variants", []):
        names += [v[k] for k in ("image", "video") if v.get(k)]
    names += [report[k] for k in ("sheet", "curves", "raw") if report.get(k)]
    return list(dict.fromkeys([*names, REPORT]))


def recorded_files(out: Path, resume: bool = False) -> tuple[list[str], list[str]]:
    """``(own, stale)``: what a run in ``out`` starts from. Resumed, its own files so far (its
    interrupted report's manifest) and the overwritten run's files it still owes to remove;
    otherwise nothing of its own, and every file the run it may overwrite recorded. Reports from
    before manifests count their images, sheet, curves, videos and frames. Nothing else in the folder
    is ever counted as a run's."""
    try:
        report = json.loads((out / REPORT).read_text())
    except (OSError, ValueError):
        report = None
    if not isinstance(report, dict):
        return [], []
    names = report.get("files")
    if not isinstance(names, list):  # a report written before manifests
        variants = [v for v in report.get("variants") or [] if isinstance(v, dict)]
        names = manifest({**{k: report.get(k) for k in ("sheet", "curves")}, "variants": variants})
        for v in variants:
            folder = v.get("frames_folder")
            if isinstance(folder, str) and _inside(out, folder) and (out / folder).is_dir():
                names += [f"{folder}/{p.name}" for p in sorted((out / folder).iterdir())]
    replaces = report.get("replaces")
    clean = lambda xs: [n for n in dict.fromkeys(xs) if isinstance(n, str) and _inside(out, n)]  # noqa: E731
    replaces = clean(replaces if isinstance(replaces, list) else [])
    return (clean(names), replaces) if resume else ([], clean([*names, *replaces]))


def _inside(out: Path, name: str) -> bool:
    """Whether ``name`` is a relative path that stays inside ``out`` (a foreign report may say anything)."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and "\0" not in name


def remove_stale(out: Path, earlier: list[str], current: list[str]) -> list[str]:
    """Remove the files of ``earlier`` (an overwritten run's manifest) that the new run did not write
    again, and the frame folders that leaves empty; files a user put there are never in a manifest,
    so they stay. Returns what was removed."""
    removed, root = [], os.path.realpath(out)
    for name in sorted(set(earlier) - set(current)):
        path = out / name
        # Never through a link: a folder of the run's that became a link could point anywhere.
        if path.is_file() and os.path.commonpath([os.path.realpath(path), root]) == root \
                and os.path.realpath(path) == os.path.join(root, os.path.normpath(name)):
            path.unlink()
            removed.append(name)
            parent = path.parent
            while parent != out and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return removed


def clip_sheet(frames: np.ndarray, clip: Clip, count: int = 8):
    """Up to ``count`` evenly spaced frames ``(F, H, W, 3)``, each labelled with its source frame
    number and time."""
    picks = sorted(set(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)))
    labels = [f"frame {clip.numbers[t]} ({t / clip.fps:.2f} s)" for t in picks]
    return contact_sheet([frames[t] for t in picks], labels, columns=min(4, len(picks)),
                         tile=min(256, max(frames.shape[1:3])))


def image_result(result: RunResult) -> RunResult:
    """A one-frame clip's result as an image run's."""
    return RunResult(result.frames[:, 0], result.variants, dict(result.report), result.history, result.checkpoint)
