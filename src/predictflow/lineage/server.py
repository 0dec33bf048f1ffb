"""The team server a command administers: its URI reached and the caller it verified.

Above `access` (users, roles, grants) and `tracking` (where the store is), so neither needs the
other for it.
"""

from __future__ import annotations

from predictflow.lineage import tracking
from predictflow.lineage.access import AccessError, Caller, caller, is_server, server_of


def team_server() -> tuple[str, Caller]:
    """The team server's URI and the caller it verified; a user error when the store is local
    or the server does not authenticate."""
    uri = tracking.tracking_uri(tracking.store_root())
    if not is_server(uri):
        raise AccessError(
            f"{uri} is a local store: users and roles live on a team server; set "
            "MLFLOW_TRACKING_URI to it (and an admin's MLFLOW_TRACKING_USERNAME / PASSWORD)"
        )
    tracking.probe_server(uri)  # one line naming the server, not a traceback quoting its URI
    me = caller(uri)
    if not me.verified:
        raise AccessError(
            f"{server_of(uri)} runs without authentication, so it has no users or roles: "
            "restart it with `make server` (auth is on unless PREDICTFLOW_INSECURE_NO_AUTH=1)"
        )
    return uri, me
