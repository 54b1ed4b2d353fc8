"""The one way library code says something to a person: a :data:`Log`, one line per call.

A stage that talks while it runs takes ``log: Log`` (stdout by default, as the command line
prints it); what a stage concludes is in its result, for the caller to show. Code deep in a
stage with no caller to hand it a ``log`` (a loader, folder discovery, ``--backend auto``'s
fallback) warns through :func:`to_stderr`, where progress lines go too, so a command's results
on stdout stay clean. Nothing else in ``cxr_fast/`` prints or uses :mod:`logging`, except to
tame third-party loggers (waitress's queue warning, ONNX tooling, Optuna).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Log = Callable[[str], None]
"""Something that shows one line of text to a person."""


def to_stdout(line: str) -> None:
    """Print ``line`` on stdout (a stage's default ``log``)."""
    print(line, flush=True)


def to_stderr(line: str) -> None:
    """Print ``line`` on stderr: warnings and progress, apart from a command's results."""
    print(line, file=sys.stderr, flush=True)


def silent(line: str) -> None:
    """Show nothing (a tune trial, which reports one line per trial instead; ranks other than 0)."""
