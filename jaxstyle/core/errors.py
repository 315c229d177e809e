"""User-facing errors.

Every problem a user can cause (a bad path, a bad config key, a corrupt weights file) is raised
as a :class:`JaxstyleError` with a one-line message; the command-line scripts print that line
and exit with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


# Every character str.splitlines() breaks at.
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
#: The longest a quoted value (:func:`quote`) and a whole message may be: a value a user or a page
#: sent is echoed, and an expanded YAML value can be megabytes.
QUOTE_CHARS, MESSAGE_CHARS = 80, 600


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` in at most ``limit`` characters (``...`` marks a cut)."""
    try:
        text = repr(value)
    except RecursionError:  # a structure nested deeper than repr goes
        text = f"<a deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JaxstyleError(Exception):
    """A problem with the user's input, reported as one line (exit status 2 in the scripts).

    Messages echo what the user gave (a YAML value, a file name), which can hold line breaks;
    those are shown escaped (``\\n``), so the message stays one line whatever the input, and a
    message is cut at :data:`MESSAGE_CHARS` characters (values are quoted with :func:`quote`).
    """

    def __init__(self, message: object = "", *args: object):
        text = "".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in str(message))
        if len(text) > MESSAGE_CHARS:
            text = text[: MESSAGE_CHARS - 3] + "..."
        super().__init__(text, *args)


class WeightsError(JaxstyleError):
    """A missing, corrupt, unsafe or mis-shaped weights file."""


class ConfigError(JaxstyleError):
    """An invalid configuration value, key or combination."""


class ImageError(JaxstyleError):
    """An image that cannot be read, is too small, or too large."""


class OutputError(JaxstyleError):
    """An output location that cannot be written or would overwrite earlier results."""


#: The exit statuses of the command (README's table), read by the studio's worker too.
EXIT_USAGE = 2
#: A run stopped by SIGINT/SIGTERM after saving its progress (resumable).
EXIT_INTERRUPTED = 3
#: Stopped at once by a second interrupt, saving nothing (128 + SIGINT, as shells report it).
EXIT_STOPPED = 130
#: What starts the one line of an exit status 2 on standard error.
ERROR_PREFIX = "error: "
