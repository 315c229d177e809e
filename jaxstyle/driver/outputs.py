"""What a run leaves in its output folder: images, a contact sheet, report.json and, when interrupted,
a checkpoint; and the checks that come before any work (the folder, earlier results, a lock).

One naming function (:func:`image_name`) serves the planned-outputs check and every writer. Images
are written as ``image_format`` says: PNG (8 or 16 bits), JPEG or WebP (with ``image_quality``) or
TIFF (8 or 16 bits); 16-bit RGB goes through pypng and tifffile, since Pillow cannot write it.
Every image carries the sRGB ICC profile (:func:`jaxstyle.media.icc.srgb_icc`), so colour-managed
viewers and print workflows read its values as what they are. Every file is written to a temporary
name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import png
import tifffile
from PIL import Image

from ..engine.checkpoint import FILENAME as CHECKPOINT
from ..engine.checkpoint import Checkpoint
from .clip import ClipResult, load_clip, run_clip
from ..engine.config import Config
from .curves import write_loss_curves
from ..core.errors import JaxstyleError, OutputError
from ..core.fileio import atomic_write
from ..media.icc import srgb_icc
from ..media.images import contact_sheet, to_uint8
from ..engine.pipeline import RunResult, run
from ..engine.progress import Watchers
from ..model.terms import term_file_hashes, used_terms
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
    files += [out / "report.json", out / CURVES]
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
            raise OutputError(f"{existing[0]} already exists; choose another output or set overwrite: true")


def write_json(data: Any, path: Path) -> Path:
    """Write JSON atomically (see :func:`jaxstyle.core.fileio.atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


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
    result.report["files"] = manifest(result.report, also)
    return write_json(result.report, out / "report.json")


def write_clip_outputs(cfg: Config, result: ClipResult, also: list[str] = ()) -> Path:
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
    names += [report[k] for k in ("sheet", "curves") if report.get(k)]
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


def image_result(result: ClipResult) -> RunResult:
    """A one-frame clip's result as an image run's."""
    report = dict(result.report)
    return RunResult(result.frames[:, 0], result.variants, report, result.history, result.checkpoint)


@contextlib.contextmanager
def output_lock(out: Path):
    """Hold ``out/.jaxstyle.lock`` for the run, so two runs never write to one folder at once."""
    lock = out / ".jaxstyle.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, OSError):  # unreadable, or that process is gone: a stale lock
                lock.unlink(missing_ok=True)
                continue
            raise OutputError(f"another run (pid {pid}) is writing to {out}; wait for it or choose "
                              "another output") from None
        except OSError as exc:
            raise OutputError(f"cannot write to {out}: {exc.strerror or exc}") from None
    else:
        raise OutputError(f"cannot take the lock {lock}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def run_and_save(cfg: Config, log: Callable[[str], None] = print,
                 should_stop: Callable[[], bool] | None = None, resume: bool = False,
                 watch: Watchers | None = None, on_start: Callable[[], None] | None = None) -> RunResult:
    """Check the output, run, write everything: what the command line does.

    An interrupted run writes its images so far, ``report.json`` (``"interrupted": true``),
    ``losses.png`` and ``checkpoint.npz``; ``resume=True`` continues from that checkpoint. ``watch``
    follows the run (see :func:`jaxstyle.engine.pipeline.run`); ``on_start`` is called once the output
    folder is checked and held. Under ``jax.distributed`` (several processes) every process runs
    its share and process 0 alone writes the outputs.
    """
    out = Path(cfg.output)
    if jax.process_index() != 0:
        return run(cfg, log=lambda line: None, should_stop=should_stop, watch=Watchers())
    record = {**cfg.to_dict(), "term_files": term_file_hashes(used_terms(cfg.terms, cfg.sweep))}
    checkpoint = Checkpoint.load(out / CHECKPOINT, record) if resume else None
    clip = load_clip(cfg) if cfg.is_clip else None  # a bad clip is refused before anything is written
    created = not out.exists()
    if not resume:
        prepare_output(cfg, clip is not None and len(clip.frames) > 1)
    try:
        return _run_locked(cfg, out, record, checkpoint, log, should_stop, watch, on_start, clip)
    except JaxstyleError:
        # A mistake found once the run began (a user term that fails when traced): leave no
        # trace of the folder this run made.
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _run_locked(cfg: Config, out: Path, record: dict, checkpoint: Checkpoint | None, log: Callable[[str], None],
                should_stop: Callable[[], bool] | None, watch: Watchers | None,
                on_start: Callable[[], None] | None, clip: Clip | None = None) -> RunResult | ClipResult:
    with output_lock(out):
        if on_start is not None:
            on_start()
        variants = expand_variants(cfg)
        if clip is not None:
            return _clip_locked(cfg, out, record, checkpoint, log, should_stop, watch, clip)

        # Read before any file is replaced: this run's own files so far, and those it replaces.
        written, earlier = recorded_files(out, resume=checkpoint is not None)

        def save_intermediate(stage: str, images: np.ndarray, start: int = 0) -> None:
            for i, (v, img) in enumerate(zip(variants[start:], images), start):
                name = image_name(i, v, stage, cfg.image_format)
                write_image(img, out / name, cfg.image_format, cfg.image_quality, cfg.image_bits)
                written.append(name)

        result = run(cfg, log=log, save_intermediate=save_intermediate, should_stop=should_stop,
                     resume=checkpoint, watch=watch)
        owed(result.report, result.checkpoint, earlier, written)
        path = write_outputs(cfg, result, written)
        settle(result.checkpoint, out, record, log, f"wrote the images so far, {path}",
               f"wrote {len(result.variants)} image(s) and {path}", earlier, result.report["files"])
        return result


def owed(report: dict, checkpoint: Checkpoint | None, earlier: list[str], written: list[str]) -> None:
    """An interrupted run's report keeps the overwritten run's files it has not yet removed
    (``replaces``), so the finished run removes them; a finished run owes nothing."""
    if checkpoint is not None and earlier:
        report["replaces"] = [n for n in earlier if n not in written]


def settle(checkpoint: Checkpoint | None, out: Path, record: dict, log: Callable[[str], None], so_far: str,
           done: str, earlier: list[str] = (), current: list[str] = ()) -> None:
    """After the outputs: an interrupted run's checkpoint saved, or a finished run's stale one
    removed with the files of the run it replaced that it did not write again; and one line saying
    which."""
    if checkpoint is not None:
        checkpoint.save(out / CHECKPOINT, record)
        log(f"interrupted at {checkpoint.where}: {so_far} and {out / CHECKPOINT}; continue with --resume")
    else:
        (out / CHECKPOINT).unlink(missing_ok=True)
        remove_stale(out, earlier, current)
        log(done)


def _clip_locked(cfg: Config, out: Path, record: dict, checkpoint: Checkpoint | None, log: Callable[[str], None],
                 should_stop: Callable[[], bool] | None, watch: Watchers | None, clip: Clip) -> RunResult | ClipResult:
    """A clip's run and its outputs; a clip of one frame is an image run and writes an image's."""
    _, earlier = recorded_files(out, resume=checkpoint is not None)
    result = run_clip(cfg, clip, log=log, should_stop=should_stop, resume=checkpoint, watch=watch)
    single = len(clip.frames) == 1
    owed(result.report, result.checkpoint, earlier, [])
    shown = image_result(result) if single else result
    path = write_outputs(cfg, shown) if single else write_clip_outputs(cfg, result)
    settle(result.checkpoint, out, record, log, f"wrote the frames so far, {path}",
           f"wrote {len(result.variants)} image(s) and {path}" if single else
           f"wrote {len(result.variants)} clip(s) of {result.frames.shape[1]} frame(s) and {path}",
           earlier, shown.report["files"])
    return result
