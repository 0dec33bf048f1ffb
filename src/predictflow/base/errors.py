"""The one user-error type: a mistake the user can fix, reported as one line, no traceback.

Every error meant for the user derives from `UserError`; `predictflow` and `stage.run` catch
only it. `StageError` (with `StoreError`, a store unusable now) and `RegistryError` are its named
kinds, kept here so that any module can raise them without importing the layer that catches
them. Anything else (a KeyError, a TypeError) is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A user mistake or a refused request; the message says what and what to do."""

    exit_code: int = 1


class StageError(UserError):
    """A stage or command refuses to go on; the message says why and what to do."""


class StoreError(StageError):
    """The store cannot be used now: unreachable, locked by another process, or moved."""


class RegistryError(UserError):
    """A model URI or version does not resolve; the message is one line for the user."""


# The machine's state, not a bug: a full disk or quota, a read-only file system.
MACHINE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
# The same, as SQLite reports it for a database file on such a disk.
SQLITE_MACHINE_ERRORS = {
    sqlite3.SQLITE_FULL: "SQLITE_FULL",
    sqlite3.SQLITE_READONLY: "SQLITE_READONLY",
}


def machine_cause(err: BaseException | None) -> str | None:
    """`ENOSPC: No space left on device: 'path'` (or EDQUOT, EROFS, SQLite's full or read-only
    database) when that is what lies behind `err`, through the libraries' wrapping exceptions
    (MLflow wraps SQLAlchemy, which wraps sqlite3); None for anything else. The file system's
    own error is named before SQLite's: it names the path, and it usually came first."""
    found: list[str] = []
    todo, seen = [err], set()
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in MACHINE_ERRORS:
            path = err.filename2 or err.filename  # a copy names its source first
            return f"{errno.errorcode[err.errno]}: {err.strerror}" + (f": {path!r}" if path else "")
        code = getattr(err, "sqlite_errorcode", None)
        if code in SQLITE_MACHINE_ERRORS:
            found.append(f"{SQLITE_MACHINE_ERRORS[code]}: {err}")
        todo += [err.__cause__, err.__context__]
    return found[0] if found else None


def machine_state(cause: str) -> str:
    """ "full" or "read-only", for a `machine_cause`."""
    return "read-only" if cause.startswith(("EROFS", "SQLITE_READONLY")) else "full"


class _DropMachineErrors(logging.Filter):
    """Drop a library's traceback log of a full or read-only store: the one line says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and machine_cause(record.exc_info[1]))


# MLflow logs every failed SQL statement with its traceback (hundreds of lines on a full disk).
STORE_ERROR_LOGGER = "mlflow.store.db.utils"


@contextmanager
def machine_errors_unlogged() -> Iterator[None]:
    """While a command or stage runs, leave a full or read-only store to its one error line."""
    logger, dropper = logging.getLogger(STORE_ERROR_LOGGER), _DropMachineErrors()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)
