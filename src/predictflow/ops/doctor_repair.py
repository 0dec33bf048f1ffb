"""`predictflow doctor --fix`'s repairs of a SQLite store, each after a verified backup: move a
corrupt database aside, rewrite artifact locations left pointing at a folder the project moved
from. Nothing is ever deleted."""

from __future__ import annotations

import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from predictflow.base.errors import UserError
from predictflow.lineage import evidence, tracking

SIDE_FILES = ("-journal", "-wal", "-shm")  # a hot journal belongs with its database


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def verified_backup(path: Path, suffix: str) -> Path:
    """A consistent copy through SQLite's backup API, refused unless it passes integrity_check."""
    backup = path.with_name(f"{path.name}.{suffix}-{_stamp()}")
    with (
        closing(sqlite3.connect(path, timeout=tracking.busy_timeout())) as source,
        closing(sqlite3.connect(backup)) as copy,
    ):
        source.backup(copy)
        verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise StoreRepairError(f"backup {backup} failed integrity_check ({verdict})")
    return backup


def move_aside(path: Path) -> Path:
    """Move a corrupt database (and its journal) aside, each copy verified byte for byte first.

    A corrupt file cannot pass integrity_check, so the backup is verified by its md5; the
    original is removed only once its copy matches.
    """
    stamp = _stamp()
    pairs = [
        (path.with_name(path.name + side), path.with_name(f"{path.name}{side}.corrupt-{stamp}"))
        for side in ("", *SIDE_FILES)
    ]
    pairs = [(src, dst) for src, dst in pairs if src.exists()]
    for src, dst in pairs:
        shutil.copy2(src, dst)
        if evidence.file_md5(dst) != evidence.file_md5(src):
            dst.unlink()
            raise StoreRepairError(f"copy of {src} does not match it; nothing moved")
    for src, _ in pairs:
        src.unlink()
    return pairs[0][1]


class StoreRepairError(UserError):
    """A repair refused because its backup could not be verified; the store is unchanged."""


LOCATIONS = (  # (table, column) of every absolute artifact URI a SQLite store keeps
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def foreign_stores(db: sqlite3.Connection, store: Path) -> dict[str, int]:
    """`file:` URI prefixes of another `mlflow_data/` this store points into, with row counts."""
    found: dict[str, int] = {}
    for table, column in LOCATIONS:
        for (value,) in db.execute(f"SELECT {column} FROM {table} WHERE {column} LIKE 'file:%'"):
            if not tracking.outside_store(value, store):
                continue
            head, sep, _ = value.partition(f"/{tracking.STORE_DIR}/")
            prefix = head + sep if sep else value
            found[prefix] = found.get(prefix, 0) + 1
    return found


def relocate(db: sqlite3.Connection, old: str, new: str) -> None:
    for table, column in LOCATIONS:
        db.execute(
            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
            f"WHERE substr({column}, 1, ?) = ?",
            (new, len(old) + 1, len(old), old),
        )
