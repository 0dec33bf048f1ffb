"""The one user-error type: a mistake the user can fix, reported as one line, no traceback.

Every error meant for the user derives from `UserError`; `predictflow` and `stage.run` catch
only it. `StageError` and `RegistryError` are its two named kinds, kept here so that any module
can raise them without importing the layer that catches them. Anything else (a KeyError, a
TypeError) is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A user mistake or a refused request; the message says what and what to do."""

    exit_code: int = 1


class StageError(UserError):
    """A stage or command refuses to go on; the message says why and what to do."""


class RegistryError(UserError):
    """A model URI or version does not resolve; the message is one line for the user."""
