"""The one user-error type: a mistake the user can fix, reported as one line, no traceback.

Every error meant for the user derives from `UserError`; `predictflow` and `stage.run` catch
only it. Anything else (a KeyError, a TypeError) is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A user mistake or a refused request; the message says what and what to do."""

    exit_code: int = 1
