"""The project's SQLite store read with stdlib `sqlite3` (`SqliteReader`): no MLflow import.

Opened read-only (it can neither be locked for writing nor created), and only when its schema is
the pinned MLflow's (`SCHEMA_REVISION`, the alembic head a test holds equal to the installed
migrations); otherwise `registry_read.open_reader` falls back to `MlflowClient`. The only module
that knows MLflow's tables.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from predictflow.base.errors import StoreError
from predictflow.lineage.reader import (
    LATEST_ALIAS,
    NotFound,
    RunFacts,
    Version,
    canonical_stage,
    local_artifact,
)

# alembic revision of the MLflow schema these queries were written for (mlflow 3.17.2's head).
SCHEMA_REVISION = "dc11669786a5"
DEFAULT_WORKSPACE = "default"  # the only workspace while MLFLOW_ENABLE_WORKSPACES is off
DELETED_STAGE = "Deleted_Internal"  # MLflow keeps a deleted version's row under this stage


class SqliteReader:
    """MLflow's tables, read with plain SQL over one read-only connection."""

    def __init__(self, db: sqlite3.Connection | None, path: Path) -> None:
        self.db = db  # None: the store does not exist yet, so nothing is registered
        self.uri = f"sqlite:///{path}"

    @classmethod
    def open(cls, path: Path, timeout: float) -> SqliteReader | None:
        """A reader on `path`, or None when its schema is not `SCHEMA_REVISION` (use MLflow).

        The store's one connection: it waits out another process's lock (`tracking.check_free`,
        at most `timeout` s, then the busy line) before anything is read.
        """
        from predictflow.lineage.tracking import check_free

        if not path.is_file():
            return cls(None, path)
        db = sqlite3.connect(
            f"file:{quote(str(path))}?mode=ro", uri=True, timeout=timeout, isolation_level=None
        )
        try:
            check_free(db, path, write=False)
        except StoreError:
            db.close()
            raise
        try:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is None or row[0] != SCHEMA_REVISION:
            db.close()
            return None
        return cls(db, path)

    def _rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """Rows of one query; a store that turns unreadable midway is one line, as in `open`."""

        if self.db is None:
            return []
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"tracking store {self.uri} cannot be read: {err}; run `predictflow doctor`"
            ) from None

    def _model_exists(self, name: str) -> bool:
        return bool(
            self._rows(
                "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?",
                DEFAULT_WORKSPACE,
                name,
            )
        )

    def _live_versions(self, name: str) -> list[tuple[int, str]]:
        return self._rows(
            "SELECT version, current_stage FROM model_versions WHERE workspace = ? AND name = ?"
            " AND current_stage != ? ORDER BY version",
            DEFAULT_WORKSPACE,
            name,
            DELETED_STAGE,
        )

    def newest(self, name: str) -> str | None:
        versions = self._live_versions(name)
        return str(versions[-1][0]) if versions else None

    def version(self, name: str, number: str) -> Version:
        rows = self._rows(
            "SELECT version, run_id, current_stage FROM model_versions"
            " WHERE workspace = ? AND name = ? AND version = ? AND current_stage != ?",
            DEFAULT_WORKSPACE,
            name,
            int(number),
            DELETED_STAGE,
        )
        if not rows:
            raise NotFound("RESOURCE_DOES_NOT_EXIST")
        version, run_id, stage = rows[0]
        tags = self._rows(
            "SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ?"
            " AND version = ?",
            DEFAULT_WORKSPACE,
            name,
            version,
        )
        aliases = self._rows(
            "SELECT alias FROM registered_model_aliases WHERE workspace = ? AND name = ?"
            " AND version = ?",
            DEFAULT_WORKSPACE,
            name,
            version,
        )
        return Version(
            name, str(version), run_id, stage, dict(tags), [alias for (alias,) in aliases]
        )

    def by_alias(self, name: str, alias: str) -> Version:
        if alias.lower() == LATEST_ALIAS:
            newest = self.newest(name)
            if newest is None:
                raise NotFound("RESOURCE_DOES_NOT_EXIST")
            return self.version(name, newest)
        if not self._model_exists(name):
            raise NotFound("RESOURCE_DOES_NOT_EXIST")
        rows = self._rows(
            "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ?"
            " AND alias = ?",
            DEFAULT_WORKSPACE,
            name,
            alias,
        )
        if not rows:
            raise NotFound("INVALID_PARAMETER_VALUE")
        return self.version(name, str(rows[0][0]))

    def in_stage(self, name: str, stage: str) -> Version | None:
        if not self._model_exists(name):
            raise NotFound("RESOURCE_DOES_NOT_EXIST")
        wanted = canonical_stage(stage)
        numbers = [v for v, s in self._live_versions(name) if s == wanted]
        return self.version(name, str(numbers[-1])) if numbers else None

    def run(self, run_id: str) -> RunFacts | None:
        rows = self._rows(
            "SELECT run_uuid, name, experiment_id, status, artifact_uri FROM runs"
            " WHERE run_uuid = ?",
            run_id,
        )
        if not rows:
            return None
        uuid, name, experiment_id, status, artifact_uri = rows[0]
        params = self._rows("SELECT key, value FROM params WHERE run_uuid = ?", uuid)
        metrics = self._rows(
            "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", uuid
        )
        return RunFacts(
            uuid,
            name,
            str(experiment_id),
            status,
            artifact_uri,
            dict(params),
            {k: float("nan") if nan else float(v) for k, v, nan in metrics},
        )

    def artifact_text(self, run_id: str, path: str) -> str | None:
        run = self.run(run_id)
        return local_artifact(run.artifact_uri, path) if run is not None else None
