"""Who may do what on the team server, and who is asking.

Roles map onto MLflow's own basic-auth permissions on the experiment and the registered model:

  reader        READ on both: sees runs and models
  experimenter  EDIT on both: logs runs, registers versions, moves `staging`
  releaser      EDIT on the experiment, MANAGE on the model: also moves `production`

MLflow lets anyone with EDIT on a model move any of its aliases, so it cannot say "only a releaser
moves production": `promote` asks the server for the caller's effective permission on the model
and refuses production below MANAGE. The caller cannot forge that answer: the server computes it
from the authenticated login and its own user database, which only an admin (or a MANAGE holder of
that model) can write. The same goes for the audit's `who`: it is the login the server accepted
(`/users/current`), not a name the client typed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from predictflow.base.errors import StageError
from predictflow.lineage.names import (
    EXPERIMENT,
    EXPERIMENT_KIND,
    LEDGER,
    MODEL_NAME,
    MONITORING_EXPERIMENT,
)

if TYPE_CHECKING:
    from mlflow.exceptions import MlflowException

# role -> (permission on the experiment, permission on the registered model)
ROLES: dict[str, tuple[str, str]] = {
    "reader": ("READ", "READ"),
    "experimenter": ("EDIT", "EDIT"),
    "releaser": ("EDIT", "MANAGE"),
}
# What else each role gets, on resources the admin creates at set-up so no user owns one (MLflow
# gives MANAGE to whoever creates a resource): the drift/monitoring experiment, and the release
# ledger (`releases`), which only releasers write.
MONITORING_PERMISSIONS = {"reader": "READ", "experimenter": "EDIT", "releaser": "EDIT"}
LEDGER_PERMISSIONS = {"reader": "READ", "experimenter": "READ", "releaser": "EDIT"}
RELEASE_PERMISSION = "MANAGE"
WRITE_PERMISSIONS = ("EDIT", "MANAGE")  # MLflow's permissions with can_update
CURRENT_USER = "/api/2.0/mlflow/users/current"
CREDENTIALS_HINT = (
    "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
    "to a login an admin created with `predictflow access add`"
)
REFUSALS = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}
TIMEOUT = 15  # seconds: the contract's bound for an unreachable server


class AccessError(StageError):
    """The server refused the caller (401/403), or a role request is invalid."""


@dataclass(frozen=True)
class Caller:
    """Who is asking: a login the server verified, or a git identity nobody checked."""

    name: str
    verified: bool
    is_admin: bool = False

    def acting_as(self, what: str) -> Caller:
        """The same person, named as running `what` (`dvc repro (ann@example.com)`)."""
        return replace(self, name=f"{what} ({self.name})")


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def server_of(uri: str) -> str:
    """scheme://host:port only: never echo a path, a query or credentials in a URI."""
    parts = urlsplit(uri)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def login() -> str | None:
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or None


def refusal(err: MlflowException, uri: str) -> AccessError | None:
    """One line for a 401/403 from the server (naming it and what it refused), else None."""
    status = REFUSALS.get(str(err.error_code))
    if status is None:
        return None
    endpoint = re.search(r"endpoint (\S+)", str(err))
    what = f" on {endpoint.group(1)}" if endpoint else ""
    if status == 401:
        who = f"the credentials of user {login()!r}" if login() else "a request without credentials"
        return AccessError(f"{server_of(uri)} refused {who} (HTTP 401{what}): {CREDENTIALS_HINT}")
    return AccessError(
        f"{server_of(uri)} refused user {login()!r} (HTTP 403{what}): their role does not allow "
        "it; an admin can change it with `predictflow access grant USER --role ROLE`"
    )


@contextmanager
def refusals(uri: str) -> Iterator[None]:
    """Turn the server's 401/403 into one AccessError line; every other error passes through.

    MLflow is imported only once an error is raised: code that never loaded it cannot have
    raised its exception, and a stage that does not use the store is spared the 3 s import.
    """
    try:
        yield
    except Exception as err:
        exceptions = sys.modules.get("mlflow.exceptions")
        if exceptions is None or not isinstance(err, exceptions.MlflowException):
            raise
        mapped = refusal(err, uri)
        if mapped is None:
            raise
        raise mapped from None


def _git_identity() -> str:
    """git's user.email when configured, else the login name: typed by the user, unverified."""
    import getpass

    try:
        email = subprocess.run(
            ["git", "config", "user.email"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except FileNotFoundError:
        email = ""
    return email or getpass.getuser()


def _get(uri: str, path: str, **params: str) -> dict | None:
    """GET an auth API route with the caller's credentials; None when the server has no auth."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    with refusals(uri):
        response = http_request(
            get_default_host_creds(uri),
            path,
            "GET",
            params=params or None,
            max_retries=0,
            timeout=TIMEOUT,
        )
        if response.status_code == 404:
            return None
        return verify_rest_response(response, path).json()


def caller(uri: str) -> Caller:
    """The authenticated login on a server with authentication, else the git identity."""
    if is_server(uri):
        answer = _get(uri, CURRENT_USER)
        if answer is not None:
            user = answer["user"]
            return Caller(user["username"], verified=True, is_admin=bool(user["is_admin"]))
    return Caller(_git_identity(), verified=False)


def check_credentials(uri: str) -> None:
    """Fail fast with one line when a server refuses the credentials (none, or wrong)."""
    if is_server(uri):
        caller(uri)


def permission(uri: str, user: str, kind: str, resource: str) -> str:
    """`user`'s effective permission on an experiment or registered model, as the server
    resolves it (grants, defaults), e.g. READ, EDIT, MANAGE, NO_PERMISSIONS."""
    answer = _get(
        uri,
        "/api/3.0/mlflow/users/permissions/get",
        username=user,
        resource_type=kind,
        resource_id=resource,
    )
    return (answer or {}).get("permission", "NO_PERMISSIONS")


def model_permission(uri: str, user: str) -> str:
    """The caller's effective permission on the registered model, as the server resolves it."""
    return permission(uri, user, "registered_model", MODEL_NAME)


def require_writes(uri: str, experiment_id: str, models: Iterable[str]) -> None:
    """On a server, the caller may log runs in the experiment and tag each model: asked before
    a command records anything, so a refusal leaves nothing half-done (a run without its tag)."""
    if not is_server(uri):
        return
    who = caller(uri)
    if not who.verified or who.is_admin:
        return
    wanted = [("experiment", experiment_id), *(("registered_model", m) for m in sorted(models))]
    for kind, resource in wanted:
        held = permission(uri, who.name, kind, resource)
        if held not in WRITE_PERMISSIONS:
            raise AccessError(
                f"{server_of(uri)} refused user {who.name!r} (HTTP 403 by role): writing to "
                f"{kind.replace('_', ' ')} {resource!r} needs EDIT and the server gives them "
                f"{held}; nothing was recorded; an admin can run "
                f"`predictflow access grant {who.name} --role experimenter`"
            )


def role_of(uri: str, user: str) -> str:
    """The role name matching the server's permission on the model (roles differ there)."""
    permission = model_permission(uri, user)
    names = {on_model: role for role, (_, on_model) in ROLES.items()}
    return names.get(permission, f"none ({permission})")


def require_releaser(uri: str) -> Caller:
    """Only a releaser (MANAGE on the model) or an admin moves production on a server."""
    who = caller(uri)
    if not who.verified or who.is_admin:
        return who
    permission = model_permission(uri, who.name)
    if permission != RELEASE_PERMISSION:
        raise AccessError(
            f"{server_of(uri)} refused user {who.name!r} (HTTP 403 by role): only a releaser "
            f"moves production, and the server gives them {permission} on {MODEL_NAME!r}; "
            f"an admin can run `predictflow access grant {who.name} --role releaser`"
        )
    return who


def _admin_client(uri: str):
    """MLflow's client for the basic-auth API; the credentials are the caller's (an admin's)."""
    import warnings

    with warnings.catch_warnings():  # importing mlflow.server warns about starlette on stderr
        warnings.simplefilter("ignore")
        from mlflow.server.auth.client import AuthServiceClient

    return AuthServiceClient(uri)


def ensure_resources(uri: str) -> dict[str, str]:
    """Create the experiments (training, monitoring), the model and the release ledger as the
    admin, so no user owns them (MLflow gives MANAGE to whoever creates a resource: a reader
    whose `drift` created `churn-monitoring` would own it); return the experiment ids by name."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ids = {}
    with refusals(uri):
        for name in (EXPERIMENT, MONITORING_EXPERIMENT):
            experiment = client.get_experiment_by_name(name)
            ids[name] = (
                experiment.experiment_id
                if experiment
                else client.create_experiment(name, tags=EXPERIMENT_KIND)
            )
        for model in (MODEL_NAME, LEDGER):
            try:
                client.get_registered_model(model)
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                client.create_registered_model(model)
    return ids


def _set_permission(client, user: str, kind: str, resource: str, permission: str) -> None:
    """Grant, replacing an earlier grant: MLflow's grant refuses to overwrite one."""
    from mlflow.exceptions import MlflowException

    try:
        client.grant_user_permission(user, kind, resource, permission)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        client.revoke_user_permission(user, kind, resource)  # the brief gap grants less, not more
        client.grant_user_permission(user, kind, resource, permission)


def check_user_name(user: str) -> None:
    """A login that basic auth can carry: not blank, no surrounding spaces, and no colon (the
    header splits user from password at the first one, so that user could never log in)."""
    if not user.strip() or user != user.strip() or ":" in user:
        raise AccessError(
            f"user name {user!r}: give a login name that is not blank, has no leading or "
            "trailing spaces and no colon, e.g. `predictflow access add ann --role reader`"
        )


def check_password(user: str, password: str) -> None:
    """An empty password would make a login anyone can use who knows the name."""
    if not password.strip():
        raise AccessError(
            f"the password for user {user!r} is empty: type one at the prompt, or give it as "
            "the first line of stdin with --password-stdin; nothing was created"
        )


def require_user(client, uri: str, user: str) -> None:
    """Grants name an existing login: MLflow would answer an unknown one with a bare error."""
    from mlflow.exceptions import MlflowException

    try:
        with refusals(uri):
            client.get_user(user)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise AccessError(
            f"no user {user!r} on {server_of(uri)}: create it with "
            f"`predictflow access add {user} --role ROLE`; nothing was granted"
        ) from None


def grant(uri: str, user: str, role: str) -> dict[str, str]:
    """Give `user` exactly `role`'s permissions (replacing earlier ones); return what was set."""
    if role not in ROLES:
        raise AccessError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")

    client = _admin_client(uri)
    require_user(client, uri, user)  # before anything is created or granted
    ids = ensure_resources(uri)
    on_experiment, on_model = ROLES[role]
    on_monitoring, on_ledger = MONITORING_PERMISSIONS[role], LEDGER_PERMISSIONS[role]
    with refusals(uri):
        _set_permission(client, user, "experiment", ids[EXPERIMENT], on_experiment)
        _set_permission(client, user, "experiment", ids[MONITORING_EXPERIMENT], on_monitoring)
        _set_permission(client, user, "registered_model", MODEL_NAME, on_model)
        _set_permission(client, user, "registered_model", LEDGER, on_ledger)
    return {
        "user": user,
        "role": role,
        EXPERIMENT: on_experiment,
        MONITORING_EXPERIMENT: on_monitoring,
        MODEL_NAME: on_model,
        LEDGER: on_ledger,
    }


def add_user(uri: str, user: str, password: str, role: str) -> dict[str, str]:
    """Create a login (the password goes to the server only, which stores a hash) with a role."""
    from mlflow.exceptions import MlflowException

    if role not in ROLES:
        raise AccessError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    check_user_name(user)
    check_password(user, password)
    try:
        with refusals(uri):
            _admin_client(uri).create_user(user, password)
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            raise AccessError(
                f"user {user!r} already exists on {server_of(uri)}: change the role with "
                f"`predictflow access grant {user} --role {role}`"
            ) from None
        if err.error_code == "INVALID_PARAMETER_VALUE":  # e.g. the server's password policy
            raise AccessError(f"{server_of(uri)} refused user {user!r}: {err.message}") from None
        raise
    return grant(uri, user, role)


def whoami(uri: str, me: Caller) -> dict[str, object]:
    """The login the server accepted from the caller's credentials, and its role."""
    role = "admin" if me.is_admin else role_of(uri, me.name)
    return {"server": server_of(uri), "user": me.name, "verified": me.verified, "role": role}
