"""The one interface every registry reader answers (`Reader`), and the plain values it answers with.

The readers behind it: `store_sql` (the project's SQLite store, stdlib `sqlite3`), `store_rest` (a
team server, MLflow's REST API) and `store_client` (`MlflowClient`, every other store);
`registry_read.open_reader` picks one by tracking URI. All answer with the same plain values, so
the facts shown do not depend on the path taken (tests compare them field by field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

STAGES = ("None", "Staging", "Production", "Archived")
LATEST_ALIAS = "latest"  # MLflow's reserved alias: the newest version


class NotFound(Exception):
    """The store has no such object; `error_code` is MLflow's name for why."""

    def __init__(self, error_code: str) -> None:
        super().__init__(error_code)
        self.error_code = error_code


@dataclass(frozen=True)
class Version:
    """What the registry records for one model version."""

    name: str
    version: str
    run_id: str
    current_stage: str
    tags: dict[str, str]
    aliases: list[str]


@dataclass(frozen=True)
class RunFacts:
    """What a read-only command shows of a run (metrics: each key's latest value)."""

    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class Reader(Protocol):
    def newest(self, name: str) -> str | None:
        """The highest live version number, None when the model has none (or does not exist)."""

    def version(self, name: str, number: str) -> Version: ...

    def by_alias(self, name: str, alias: str) -> Version: ...

    def in_stage(self, name: str, stage: str) -> Version | None:
        """The newest version in a (canonical) legacy stage."""

    def run(self, run_id: str) -> RunFacts | None:
        """None when the run is gone (e.g. `mlflow gc`)."""

    def artifact_text(self, run_id: str, path: str) -> str | None:
        """A run artifact's text, None when it cannot be read."""


def canonical_stage(stage: str) -> str:
    """MLflow's spelling of a legacy stage (`production` -> `Production`)."""
    for known in STAGES:
        if known.lower() == stage.lower():
            return known
    raise NotFound("INVALID_PARAMETER_VALUE")


def local_artifact(artifact_uri: str, path: str) -> str | None:
    """An artifact under a local (`file:` or plain path) artifact root; None if unreadable."""
    parts = urlsplit(artifact_uri)
    if parts.scheme not in ("", "file"):
        return None
    root = Path(url2pathname(parts.path)) if parts.scheme else Path(artifact_uri)
    try:
        return (root / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
