"""Atomic file writes: a temporary file in the destination folder, then a rename.

A reader (or a second run writing to the same folder) sees either the old file or the complete
new one, never half of one; the temporary file is removed if writing fails.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import JaxstyleError, OutputError


def atomic_write(path: str | Path, write: Callable[[str], None],
                 error: type[JaxstyleError] = OutputError) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``; OS errors become ``error``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_float(value) -> float | None:
    """A float for JSON, which has no Infinity or NaN: a non-finite loss is written as null."""
    return float(value) if math.isfinite(value) else None
