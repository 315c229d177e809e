"""JAX's persistent compilation cache for the command line (``compile_cache``, ``--no-compile-cache``).

Each new process compiles its programs again (seconds per program shape), and every studio job is a
new process. JAX can keep compiled programs on disk and read them back when the same program, on
the same JAX and device, is compiled again. A cache entry is code that the process will run, so the
folder is created private to the user (mode 0700) and one that others could write to is not used.

The cache is JAX's, set for the whole process, so only the command line (which owns its process)
turns it on; a library caller chooses for itself (``jax.config``).
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Callable, Mapping

import jax

#: Where under the user's cache directory the compiled programs are kept.
SUBDIR = ("jaxstyle", "compiled")
#: The start of the warning JAX gives when it cannot read back an entry it wrote.
UNREADABLE = "Error reading persistent compilation cache entry"


def cache_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/jaxstyle/compiled``, or ``~/.cache/jaxstyle/compiled`` where that is unset
    or not absolute (as the XDG base directory specification says)."""
    base = env.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path(env.get("HOME") or Path.home()) / ".cache"
    return root.joinpath(*SUBDIR)


def private_dir(path: Path) -> str | None:
    """Create ``path`` (mode 0700) if needed; the reason it cannot serve as a cache, or None.

    A folder another user owns, or one that its group or others may write to, could hold entries
    someone else put there: it is not used (and not changed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder"
    if info.st_uid != os.getuid():
        return f"{path} belongs to another user"
    if info.st_mode & 0o022:
        return f"{path} may be written by others (chmod 700 it to use it)"
    return None


class CacheUse:
    """Counts, while entered, the programs JAX read from its cache, wrote to it and could not read
    back (an entry it refused, as some hosts' JAX does)."""

    EVENTS = {"/jax/compilation_cache/cache_hits": "read", "/jax/compilation_cache/cache_misses": "written"}

    def __init__(self) -> None:
        self.counts = {"read": 0, "written": 0, "unreadable": 0}
        self._warnings: warnings.catch_warnings | None = None

    def _event(self, event: str, **kwargs) -> None:
        if event in self.EVENTS:
            self.counts[self.EVENTS[event]] += 1

    def _warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        if str(message).startswith(UNREADABLE):
            self.counts["unreadable"] += 1
        else:
            self._show(message, category, filename, lineno, file, line)

    def __enter__(self) -> "CacheUse":
        jax.monitoring.register_event_listener(self._event)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        self._show = warnings.showwarning
        warnings.showwarning = self._warning
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_listener(self._event)
        self._warnings.__exit__(*exc)

    def line(self, path: Path) -> str:
        """One line for the log: what the cache did this run."""
        c = self.counts
        if c["unreadable"]:
            return (f"compile cache: JAX could not read back {c['unreadable']} of its own entries in {path} on this "
                    "host, so it compiled them again (--no-compile-cache turns the cache off)")
        return f"compile cache: {c['read']} program(s) read from {path}, {c['written']} written"


def enable(path: Path, log: Callable[[str], None]) -> Path | None:
    """Point JAX's persistent cache at ``path`` if it is a private folder (created if needed), and
    return the folder in use; otherwise say why in one line, compile as before and return None.
    A folder JAX was already given (``JAX_COMPILATION_CACHE_DIR``) is the user's choice, kept."""
    given = jax.config.jax_compilation_cache_dir
    if given:
        return Path(given)
    reason = private_dir(path)
    if reason is not None:
        log(f"warning: compile cache off: {reason}")
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    return path
