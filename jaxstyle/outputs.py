"""What a run leaves in its output folder: images, a contact sheet, report.json and, when interrupted,
a checkpoint; and the checks that come before any work (the folder, earlier results, a lock).

One naming function (:func:`image_name`) serves the planned-outputs check and every writer. Images
are written as ``image_format`` says: PNG (8 or 16 bits), JPEG or WebP (with ``image_quality``) or
TIFF (8 or 16 bits); 16-bit RGB goes through pypng and tifffile, since Pillow cannot write it.
Every file is written to a temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import png
import tifffile
from PIL import Image

from .checkpoint import FILENAME as CHECKPOINT
from .checkpoint import Checkpoint
from .config import Config
from .curves import write_loss_curves
from .errors import JaxstyleError, OutputError
from .fileio import atomic_write
from .images import contact_sheet, to_uint8
from .pipeline import RunResult, run
from .progress import Watchers
from .terms import term_file_hashes, used_terms
from .variants import Variant, expand_variants, variant_labels

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
    """Write ``(H, W, 3)`` floats in [0, 1] (clipped) or a Pillow image, atomically."""
    if bits == 16:
        arr = np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
        return atomic_write(path, lambda tmp: _write16(arr, tmp, image_format))
    pil = image if isinstance(image, Image.Image) else Image.fromarray(to_uint8(image))
    kwargs = {"quality": quality} if image_format in ("jpg", "webp") else {}
    pil_format = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}[image_format]
    return atomic_write(path, lambda tmp: pil.convert("RGB").save(tmp, format=pil_format, **kwargs))


def _write16(arr: np.ndarray, tmp: str, image_format: str) -> None:
    if image_format == "tiff":
        tifffile.imwrite(tmp, arr, photometric="rgb")
    else:
        h, w, _ = arr.shape
        with open(tmp, "wb") as f:
            png.Writer(w, h, greyscale=False, bitdepth=16).write(f, arr.reshape(h, w * 3))


def planned_outputs(cfg: Config, variants: list[Variant]) -> list[Path]:
    out = Path(cfg.output)
    files = [out / image_name(i, v, image_format=cfg.image_format) for i, v in enumerate(variants)]
    files += [out / "report.json", out / CURVES]
    if len(variants) > 1:
        files.append(out / sheet_name(cfg.image_format))
    return files


def prepare_output(cfg: Config) -> None:
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
        existing = [f for f in planned_outputs(cfg, expand_variants(cfg)) if f.exists()]
        if existing:
            raise OutputError(f"{existing[0]} already exists; choose another output or set overwrite: true")


def write_json(data: Any, path: Path) -> Path:
    """Write JSON atomically (see :func:`jaxstyle.fileio.atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def write_outputs(cfg: Config, result: RunResult) -> Path:
    """The images, the contact sheet (more than one variant), the loss curves and report.json
    (written last)."""
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
    return write_json(result.report, out / "report.json")


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
    follows the run (see :func:`jaxstyle.pipeline.run`); ``on_start`` is called once the output
    folder is checked and held. Under ``jax.distributed`` (several processes) every process runs
    its share and process 0 alone writes the outputs.
    """
    out = Path(cfg.output)
    if jax.process_index() != 0:
        return run(cfg, log=lambda line: None, should_stop=should_stop, watch=Watchers())
    record = {**cfg.to_dict(), "term_files": term_file_hashes(used_terms(cfg.terms, cfg.sweep))}
    checkpoint = Checkpoint.load(out / CHECKPOINT, record) if resume else None
    created = not out.exists()
    if not resume:
        prepare_output(cfg)
    try:
        return _run_locked(cfg, out, record, checkpoint, log, should_stop, watch, on_start)
    except JaxstyleError:
        # A mistake found once the run began (a user term that fails when traced): leave no
        # trace of the folder this run made.
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _run_locked(cfg: Config, out: Path, record: dict, checkpoint: Checkpoint | None, log: Callable[[str], None],
                should_stop: Callable[[], bool] | None, watch: Watchers | None,
                on_start: Callable[[], None] | None) -> RunResult:
    with output_lock(out):
        if on_start is not None:
            on_start()
        variants = expand_variants(cfg)

        def save_intermediate(stage: str, images: np.ndarray, start: int = 0) -> None:
            for i, (v, img) in enumerate(zip(variants[start:], images), start):
                write_image(img, out / image_name(i, v, stage, cfg.image_format), cfg.image_format,
                            cfg.image_quality, cfg.image_bits)

        result = run(cfg, log=log, save_intermediate=save_intermediate, should_stop=should_stop,
                     resume=checkpoint, watch=watch)
        path = write_outputs(cfg, result)
        if result.checkpoint is not None:
            result.checkpoint.save(out / CHECKPOINT, record)
            log(f"interrupted at {result.checkpoint.where}: wrote the images so far, {path} "
                f"and {out / CHECKPOINT}; continue with --resume")
        else:
            (out / CHECKPOINT).unlink(missing_ok=True)
            log(f"wrote {len(result.variants)} image(s) and {path}")
        return result
