"""User-facing errors.

Every problem a user can cause (a bad path, a bad config key, a corrupt weights file) is raised
as a :class:`JaxstyleError` with a one-line message; the command-line scripts print that line
and exit with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class JaxstyleError(Exception):
    """A problem with the user's input, reported as one line (exit status 2 in the scripts)."""


class WeightsError(JaxstyleError):
    """A missing, corrupt, unsafe or mis-shaped weights file."""


class ConfigError(JaxstyleError):
    """An invalid configuration value, key or combination."""


class ImageError(JaxstyleError):
    """An image that cannot be read, is too small, or too large."""


class OutputError(JaxstyleError):
    """An output location that cannot be written or would overwrite earlier results."""
