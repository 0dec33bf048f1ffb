"""Read-only registry access for commands that only look (`lineage`), without importing MLflow.

Importing MLflow costs 2-3 s per process, more than the facts a read-only command shows. So:
- a team server (`http(s)://`) is asked through MLflow's documented REST API, with the
  credentials MLflow itself would send (`MLFLOW_TRACKING_TOKEN`, or username and password from
  the environment or `~/.mlflow/credentials`);
- the project's SQLite store is read with stdlib `sqlite3`, opened read-only (it can neither be
  locked for writing nor created), and only when its schema is the pinned MLflow's
  (`SCHEMA_REVISION`, the alembic head a test holds equal to the installed migrations);
- anything else (another schema revision, `file:`, `postgresql:`, workspaces, other auth
  plugins) goes through `MlflowClient` (`ClientReader`), as before.

`open_reader` chooses by tracking URI. All three answer the one interface `reader.Reader` with
the same plain values, so the facts shown do not depend on the path taken (tests compare them
field by field); the SQL lives in `store_sql` alone, the REST calls in `store_rest`, the client
calls in `store_client`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from predictflow.base.errors import RegistryError
from predictflow.base.refs import parse_ref
from predictflow.lineage.reader import NotFound, Reader, Version
from predictflow.lineage.store_client import ClientReader
from predictflow.lineage.store_rest import RestReader, session_for
from predictflow.lineage.store_sql import SqliteReader

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Settings under which MLflow authenticates or scopes requests in ways not reproduced here.
CLIENT_ONLY_SETTINGS = (
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_ENABLE_WORKSPACES",
)


def resolve(reader: Reader, ref: str | None, default_name: str) -> Version:
    """The version `ref` names, as `registry.resolve` finds it through `MlflowClient`."""
    name, selector = parse_ref(ref, default_name)
    if name is None:
        raise RegistryError(
            f"{ref!r} names a logged model, not a registered version; name the version "
            f"(models:/{default_name}/N): `predictflow lineage` lists them by number"
        )
    try:
        if selector is None:
            newest = reader.newest(name)
            if newest is None:
                raise RegistryError(f"no registered version of {name!r} yet; run `make repro`")
            return reader.version(name, newest)
        if selector.startswith("@"):
            return reader.by_alias(name, selector[1:])
        if selector.isdigit():
            return reader.version(name, selector)
        found = reader.in_stage(name, selector)
        if found is None:
            raise RegistryError(f"no version of {name!r} is in stage {selector!r}")
        return found
    except NotFound as err:
        raise RegistryError(
            f"model {ref or name!r} not found in the registry ({err.error_code})"
        ) from None


def as_reader(source: Reader | MlflowClient) -> Reader:
    """A reader as given, or an MlflowClient wrapped as one (callers that hold a client)."""
    readers = (SqliteReader, RestReader, ClientReader)
    return source if isinstance(source, readers) else ClientReader(source)


def open_reader() -> Reader:
    """The cheapest reader for the project's store (see the module docstring for which)."""
    from predictflow.lineage import tracking

    root = tracking.store_root()
    uri = tracking.tracking_uri(root)
    if not any(os.environ.get(name) for name in CLIENT_ONLY_SETTINGS):
        path = tracking.sqlite_path(uri)
        if uri.startswith(("http://", "https://")):
            tracking.reach(uri, write=False)
            reader = RestReader(uri, session_for())
            reader.check_credentials()
            return reader
        if path is not None:
            local = SqliteReader.open(path, tracking.busy_timeout())
            if local is not None:
                return local
    from predictflow.lineage import registry

    return ClientReader(registry.open_client())
