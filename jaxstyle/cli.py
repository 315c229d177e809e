"""Shared command-line plumbing: user errors become one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from typing import Callable

from .errors import JaxstyleError

EXIT_USAGE = 2
#: A run stopped by SIGINT/SIGTERM after saving its progress (resumable).
EXIT_INTERRUPTED = 3


def run_main(main: Callable[[], int | None]) -> None:
    """Run a script's ``main``; a :class:`JaxstyleError` prints ``error: <message>`` and exits 2."""
    try:
        code = main()
    except JaxstyleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(code or 0)
