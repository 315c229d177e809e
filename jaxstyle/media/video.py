"""Clips in and out: a video file or a folder of numbered frames in, H.264 MP4 out.

Decoding and encoding go through PyAV, whose wheels bundle FFmpeg's libraries (no ``ffmpeg``
program is needed or downloaded): it reads what FFmpeg reads (mp4, avi, mov, webm, mkv, animated
GIF) and writes H.264 in yuv420p, which browsers play. It is an optional dependency (the
``video`` extra); a clip given without it ends in one line saying what to install.

A :class:`Selection` picks frames: ``start``/``end`` in seconds or ``first``/``frames`` in frame
numbers, then every ``every``-th frame; the clip's frame rate becomes the source's divided by
``every``. Frames are resized as they are decoded, so a long high-resolution source never sits
in memory at full size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..core.errors import ConfigError, ImageError
from ..core.fileio import atomic_write
from .images import IMAGE_SUFFIXES, fit_shape, load_image, resize, to_uint8

#: File endings read as clips (besides a folder of frames and an animated GIF).
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v", ".mpg", ".mpeg"}
INSTALL_HINT = "reading and writing video needs PyAV: pip install -e \".[video]\" (or pip install av)"


@dataclass(frozen=True)
class Selection:
    """Which frames of a source a clip keeps. Seconds (``start``, ``end``) and frame numbers
    (``first``, ``frames``) are alternatives; ``every`` keeps every n-th of those; ``fps`` is the
    frame rate of a folder of frames (a video file carries its own)."""

    start: float | None = None
    end: float | None = None
    first: int | None = None
    frames: int | None = None
    every: int = 1
    fps: float = 24.0


@dataclass
class Clip:
    """Frames ``(F, H, W, 3)`` float32 RGB in [0, 1] at the run's size; ``numbers``: each frame's
    number in the source; ``fps``: the clip's frame rate (the source's over ``every``);
    ``audio``: whether the source had sound (which is not carried over)."""

    frames: np.ndarray
    numbers: list[int]
    fps: float
    source: str
    audio: bool = False
    source_fps: float = 24.0


def is_clip(path: str | Path) -> bool:
    """Whether ``path`` names a clip: a folder (of numbered frames), a video file by its ending, or
    an animated GIF."""
    p = Path(path)
    if p.is_dir():
        return True
    suffix = p.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return True
    if suffix == ".gif" and p.is_file():
        try:
            with Image.open(p) as img:
                return getattr(img, "n_frames", 1) > 1
        except (OSError, ValueError):
            return False
    return False


def _av():
    try:
        import av
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return av


def wanted(index: int, fps: float, sel: Selection) -> bool | None:
    """Whether source frame ``index`` (at ``fps``) is kept before ``every`` applies; None once it is
    past the selection (decoding can stop)."""
    if sel.first is not None or sel.frames is not None:
        first = sel.first or 0
        if sel.frames is not None and index >= first + sel.frames:
            return None
        return index >= first
    t = index / fps
    if sel.end is not None and t >= sel.end - 1e-9:
        return None
    return sel.start is None or t >= sel.start - 1e-9


def select(indices: Iterator[tuple[int, object]], fps: float, sel: Selection) -> Iterator[tuple[int, object]]:
    """The ``(number, frame)`` pairs of ``indices`` that ``sel`` keeps, in order."""
    kept = 0
    for i, frame in indices:
        keep = wanted(i, fps, sel)
        if keep is None:
            return
        if keep:
            if kept % sel.every == 0:
                yield i, frame
            kept += 1


def describe(sel: Selection) -> str:
    if sel.first is not None or sel.frames is not None:
        first = sel.first or 0
        return f"frames {first} to {first + sel.frames - 1}" if sel.frames else f"frames from {first}"
    return f"{sel.start or 0:g} s to {sel.end:g} s" if sel.end is not None else f"from {sel.start or 0:g} s"


def read_clip(path: str | Path, sel: Selection, size: int | list[int], max_pixels: int) -> Clip:
    """Decode the frames ``sel`` keeps, each resized to ``size`` (long side, or ``[height, width]``).

    Every problem (not a video, an unreadable codec, no frames, a selection outside the clip, a
    folder whose frames differ in size or skip numbers) is an :class:`ImageError` of one line.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"clip not found: {path}")
    if path.is_dir():
        frames, numbers, fps, audio, source_fps = _read_folder(path, sel, size, max_pixels)
    else:
        frames, numbers, fps, audio, source_fps = _read_video(path, sel, size, max_pixels)
    if not frames:
        raise ImageError(f"{path}: no frames in the selection ({describe(sel)})")
    return Clip(np.stack(frames), numbers, fps, str(path), audio, source_fps)


def _target(shape: tuple[int, int], size: int | list[int]) -> tuple[int, int]:
    return (int(size[0]), int(size[1])) if isinstance(size, list) else fit_shape(shape, size)


def _read_video(path: Path, sel: Selection, size, max_pixels: int):
    av = _av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ImageError(f"cannot read {path} as a video: {_reason(exc)}") from None
    with container:
        if not container.streams.video:
            raise ImageError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        source_fps = float(rate) if rate else 24.0
        if stream.width * stream.height > max_pixels:
            raise ImageError(f"{path}: {stream.width}x{stream.height} pixels exceeds the limit of {max_pixels} "
                             "(raise max_pixels to allow it)")
        audio = bool(container.streams.audio)
        frames, numbers, total = [], [], 0
        try:
            decoded = ((i, f) for i, f in enumerate(container.decode(stream)))
            for i, f in select(decoded, source_fps, sel):
                arr = f.to_ndarray(format="rgb24").astype(np.float32) / 255.0
                frames.append(resize(arr, _target(arr.shape[:2], size)))
                numbers.append(i)
            total = stream.frames
        except av.FFmpegError as exc:
            raise ImageError(f"cannot decode {path}: {_reason(exc)}") from None
    if not frames:
        _no_frames(path, sel, total or _count_frames(path))
    return frames, numbers, source_fps / sel.every, audio, source_fps


def count_selected(path: str | Path, sel: Selection) -> int | None:
    """How many frames ``sel`` keeps of the clip at ``path``, from its folder's listing or its
    container's header (nothing is decoded); None where the header does not say."""
    path = Path(path)
    av = None if path.is_dir() else _av()
    failures = (ImageError, OSError, ValueError, IndexError) + ((av.FFmpegError,) if av else ())
    try:
        if av is None:
            total, fps = len(frame_files(path)), sel.fps
        else:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                fps = float(rate) if rate else 24.0
                total = stream.frames or (int(float(stream.duration * stream.time_base) * fps)
                                          if stream.duration and stream.time_base else 0)
    except failures:  # IndexError: no video stream
        return None
    if not total:
        return None
    return sum(1 for _ in select(((i, None) for i in range(total)), fps, sel))


def _count_frames(path: Path) -> int:
    av = _av()
    try:
        with av.open(str(path)) as c:
            return sum(1 for _ in c.decode(c.streams.video[0]))
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return 0


def _no_frames(path: Path, sel: Selection, total: int) -> None:
    if total == 0:
        raise ImageError(f"{path}: the clip has no frames")
    raise ImageError(f"{path}: {describe(sel)} is outside the clip ({total} frames)")


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


#: The frame number in a file name: its last group of digits.
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_files(folder: Path) -> list[tuple[int, Path]]:
    """``(number, path)`` of the images in ``folder``, by number; numbers must follow one another."""
    found = []
    for p in folder.iterdir():
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            m = _NUMBER.search(p.stem)
            if m is None:
                raise ImageError(f"{folder}: frame {p.name} has no number in its name")
            found.append((int(m.group(1)), p))
    if not found:
        raise ImageError(f"{folder}: no frames (PNG or JPEG files with numbered names)")
    found.sort()
    numbers = [n for n, _ in found]
    if len(set(numbers)) != len(numbers):
        dup = next(n for n in numbers if numbers.count(n) > 1)
        raise ImageError(f"{folder}: two frames are numbered {dup}")
    gap = next((a for a, b in zip(numbers, numbers[1:]) if b != a + 1), None)
    if gap is not None:
        raise ImageError(f"{folder}: frame numbers have a gap after {gap} (next is "
                         f"{numbers[numbers.index(gap) + 1]})")
    return found


def _read_folder(folder: Path, sel: Selection, size, max_pixels: int):
    files = frame_files(folder)
    first_number = files[0][0]
    first_size = None
    for _, p in files:  # every frame's size from its header, before any is decoded
        try:
            with Image.open(p) as img:
                w, h = img.size
                if w * h > max_pixels:  # the cap images have, from the header (a bomb is never decoded)
                    raise ImageError(f"{p}: {w}x{h} pixels exceeds the limit of {max_pixels} "
                                     "(raise max_pixels to allow it)")
                if first_size is None:
                    first_size = img.size
                elif img.size != first_size:
                    raise ImageError(f"{folder}: frame {p.name} is {w}x{h} px, the first "
                                     f"is {first_size[0]}x{first_size[1]} px; every frame must have one size")
        except Image.DecompressionBombError as exc:  # past Pillow's own cap, refused before our check
            raise ImageError(f"{p}: refused as too large: {exc}") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"cannot read frame {p}: {exc}") from None
    frames, numbers = [], []
    indexed = ((n - first_number, p) for n, p in files)
    for i, p in select(indexed, sel.fps, sel):
        arr = load_image(p, max_pixels=max_pixels)
        frames.append(resize(arr, _target(arr.shape[:2], size)))
        numbers.append(i + first_number)
    if not frames:
        _no_frames(folder, sel, len(files))
    return frames, numbers, sel.fps / sel.every, False, sel.fps


def even_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """H.264 in yuv420p needs even sides: odd ones gain one pixel."""
    return shape[0] + shape[0] % 2, shape[1] + shape[1] % 2


def write_mp4(frames: np.ndarray, path: str | Path, fps: float, crf: int = 18) -> Path:
    """Write ``(F, H, W, 3)`` floats in [0, 1] as H.264 (yuv420p) MP4, atomically. Odd sides are
    padded by one pixel, repeating the last row or column (:func:`even_shape`)."""
    av = _av()
    data = to_uint8(frames)
    h, w = even_shape(data.shape[1:3])
    if (h, w) != data.shape[1:3]:
        data = np.pad(data, ((0, 0), (0, h - data.shape[1]), (0, w - data.shape[2]), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)

    def write(tmp: str) -> None:
        with av.open(tmp, mode="w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in data:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())
    return atomic_write(path, write)


def read_frames_uint8(path: str | Path) -> tuple[np.ndarray, float]:
    """Every frame of a video as ``(F, H, W, 3)`` uint8 and its frame rate (for checks)."""
    av = _av()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return np.stack(frames), float(s.average_rate)


def clip_summary(clip: Clip) -> str:
    h, w = clip.frames.shape[1:3]
    seconds = len(clip.frames) / clip.fps if clip.fps else math.nan
    return f"{len(clip.frames)} frame(s) at {w}x{h} px, {clip.fps:g} fps ({seconds:.2f} s)"
