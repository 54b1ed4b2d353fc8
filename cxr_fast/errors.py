"""The one family of user-facing errors.

Everything a user can fix (a wrong path, a missing file, a refused resume, an edited sidecar)
raises a :class:`CxrFastError`; the CLI turns exactly these (and click's own usage errors) into
one line and exit code 2. Any other exception is a bug and keeps its traceback.

The subclasses that also derive from ``ValueError`` / ``FileNotFoundError`` keep library
callers that catch the built-in types working.
"""

from __future__ import annotations


class CxrFastError(Exception):
    """A mistake or a condition the user can fix: the message is one line saying what to do."""


class UserInputError(CxrFastError, ValueError):
    """An option, file or folder the user gave that cannot be used as it is."""


class NotFoundError(CxrFastError, FileNotFoundError):
    """A file or folder the user named that does not exist (or lacks what it should hold)."""


class OutputError(CxrFastError, OSError):
    """An output location that cannot be written (under a file, read-only, no permission)."""


class ResumeMismatchError(UserInputError):
    """``--resume`` on a partial output or run that was made with something else."""


class Interrupted(CxrFastError):
    """Ctrl-C (SIGINT) during a command: the message says what was kept and how to continue.
    The CLI prints it on one line and exits 130, like any interrupted program."""
