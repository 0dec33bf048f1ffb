"""The Model Registry side: register once per model md5, move aliases, mirror legacy stages.

Aliases (`staging`, `production`) are the truth; the deprecated stage field is mirrored so
`models:/churn-predictor/Production` keeps loading for older consumers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from predictflow.base.errors import RegistryError
from predictflow.base.faults import checkpoint
from predictflow.lineage.names import MODEL_NAME
from predictflow.lineage.tracking import store_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from predictflow.lineage.access import Caller

log = logging.getLogger(__name__)

ALIAS_STAGES = {"staging": "Staging", "production": "Production"}
# Version tags `register` writes: the held-out split the quality metric was measured on.
HELD_OUT_ROWS, HELD_OUT_MIN_CLASS = "held_out_rows", "held_out_min_class_rows"


def version_with_md5(client: MlflowClient, model_md5: str) -> ModelVersion | None:
    """The registered version whose model has this md5, if any (oldest first wins)."""
    versions = client.search_model_versions(
        f"name = '{MODEL_NAME}' and tags.model_md5 = '{model_md5}'"
    )
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register(
    client: MlflowClient, root: Path, run: Run, model_md5: str, tags: dict[str, str]
) -> tuple[ModelVersion, bool]:
    """Register the run's model unless this md5 already has a version; return (version, created).

    The check and the creation happen under one lock, so two concurrent `register` stages for
    the same model make exactly one version.
    """
    import mlflow

    with store_lock(root, "register"):
        existing = version_with_md5(client, model_md5)
        if existing is not None:
            return existing, False
        outputs = run.outputs.model_outputs if run.outputs else []
        if not outputs:
            raise RuntimeError(f"run {run.info.run_id} logged no model")
        # register_model prints "Successfully registered ..." / "Created version ..." itself;
        # the stage's own line says the same, so they go to the debug log (`-v`) instead.
        with contextlib.redirect_stderr(io.StringIO()) as chatter:
            created = mlflow.register_model(
                f"models:/{outputs[-1].model_id}",
                MODEL_NAME,
                tags={**tags, "run_id": run.info.run_id},
            )
        for line in chatter.getvalue().splitlines():
            log.debug("%s", line)
        return created, True


LOCK_PREFIX = f"{MODEL_NAME}-lock-"  # + the alias: a registered model that exists while held
LOCK_WAIT = 30.0  # seconds a move waits for another move of the same alias


@contextlib.contextmanager
def move_lock(client: MlflowClient, root: Path, alias: str, who: Caller) -> Iterator[None]:
    """Hold the right to move `alias`, across every client of the store.

    Locally a file lock beside the store. On a team server the server's database holds it: a
    registered model named `churn-predictor-lock-<alias>` is created to take the lock and
    deleted to free it, and the registry's unique name means exactly one creator succeeds (its
    creator alone may delete it: MLflow gives a resource's creator MANAGE). A move that cannot
    take it within LOCK_WAIT is refused, naming who holds it.
    """
    import time

    from mlflow.exceptions import MlflowException

    from predictflow.lineage.tracking import uses_local_store

    if uses_local_store(root):
        with store_lock(root, "promote"):
            yield
        return
    name = f"{LOCK_PREFIX}{alias}"
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            client.create_registered_model(
                name,
                tags={"holder": who.name, "since": _now()},
                description=f"held while {who.name} moves {alias}; deleted when done",
            )
            break
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            if time.monotonic() > deadline:
                raise RegistryError(_held_by(client, name, alias)) from None
            time.sleep(0.5)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(name)


def _held_by(client: MlflowClient, name: str, alias: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        tags = {}
    return (
        f"another move of {alias} holds the server's lock ({name}, by "
        f"{tags.get('holder', 'unknown')} since {tags.get('since', 'unknown')}) for more than "
        f"{LOCK_WAIT:g} s; run the promotion again, and if no promotion is running, an admin "
        f"deletes the registered model {name}"
    )


def client_for(root: Path) -> MlflowClient:
    """A client on the project's store (or `MLFLOW_TRACKING_URI`) that creates nothing."""
    import mlflow

    from predictflow.lineage.tracking import tracking_uri

    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def open_client() -> MlflowClient:
    """A client for a command: the store reached within a bounded wait (one line, not minutes
    of retries) and a team server's refusal of the credentials reported before any work."""
    from predictflow.lineage import access, tracking

    root = tracking.store_root()
    uri = tracking.reach(tracking.tracking_uri(root))
    access.check_credentials(uri)
    return client_for(root)


def resolve(client: MlflowClient, ref: str | None) -> ModelVersion:
    """A version from `models:/name@alias`, `models:/name/3`, `models:/name/Production`, `3`,
    or None for the newest registered version."""
    from mlflow.exceptions import MlflowException

    from predictflow.base.refs import parse_ref

    name, selector = parse_ref(ref, MODEL_NAME)
    try:
        if name is None:  # models:/m-<id>: the version registered from that logged model
            found = [
                v for v in client.search_model_versions(f"name = '{MODEL_NAME}'") if v.source == ref
            ]
            if not found:
                raise RegistryError(f"{ref!r}: no registered version of {MODEL_NAME!r} holds it")
            return client.get_model_version(MODEL_NAME, str(min(int(v.version) for v in found)))
        if selector is None:
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise RegistryError(f"no registered version of {name!r} yet; run `make repro`")
            return client.get_model_version(name, str(max(int(v.version) for v in versions)))
        if selector.startswith("@"):
            return client.get_model_version_by_alias(name, selector[1:])
        if selector.isdigit():
            return client.get_model_version(name, selector)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            latest = client.get_latest_versions(name, [selector])
        if not latest:
            raise RegistryError(f"no version of {name!r} is in stage {selector!r}")
        return client.get_model_version(name, str(latest[0].version))
    except MlflowException as err:
        what = ref or name
        raise RegistryError(
            f"model {what!r} not found in the registry ({err.error_code})"
        ) from None


def holder(client: MlflowClient, alias: str) -> ModelVersion | None:
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException:
        return None


PROMOTION_TAG = "promotion."
PENDING, DONE, ABORTED = "pending", "done", "aborted"


def promotion_history(version: ModelVersion) -> list[dict[str, str]]:
    """Audit events recorded on a version, oldest first."""
    import json

    keys = sorted(k for k in version.tags if k.startswith(PROMOTION_TAG))
    return [json.loads(version.tags[k]) for k in keys]


def record_event(client: MlflowClient, version: str, event: dict[str, str]) -> str:
    """Append one audit event (who, when, from, to, reason) as a numbered version tag; its key.

    The count is read afresh, so an event written by an earlier step of the same move is seen.
    """
    import json

    tags = client.get_model_version(MODEL_NAME, version).tags
    key = f"{PROMOTION_TAG}{len([k for k in tags if k.startswith(PROMOTION_TAG)]) + 1:04d}"
    client.set_model_version_tag(MODEL_NAME, version, key, json.dumps(event))
    return key


def _set_status(client: MlflowClient, version: str, key: str, status: str) -> dict[str, str]:
    import json

    event = {
        **json.loads(client.get_model_version(MODEL_NAME, version).tags[key]),
        "status": status,
    }
    client.set_model_version_tag(MODEL_NAME, version, key, json.dumps(event))
    return event


def mirrored_stage(aliases: list[str], current_stage: str | None) -> str:
    """The legacy stage a version must show: production wins over staging; a version that held
    an alias once (its stage is not `None`) and holds none now is `Archived`."""
    if "production" in aliases:
        return "Production"
    if "staging" in aliases:
        return "Staging"
    return "Archived" if current_stage not in (None, "None") else "None"


def mirror_stage(client: MlflowClient, version: str) -> None:
    """Make one version's legacy stage agree with its aliases (no-op once stages are gone)."""
    if not hasattr(client, "transition_model_version_stage"):
        return
    current = client.get_model_version(MODEL_NAME, version)
    wanted = mirrored_stage(list(current.aliases), current.current_stage)
    if current.current_stage == wanted:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(
            MODEL_NAME, version, wanted, archive_existing_versions=False
        )


@dataclass(frozen=True)
class AuditedMove:
    """One alias move as the audit trail knows it: where the event is and what it says."""

    version: str
    key: str
    event: dict[str, str]

    @property
    def status(self) -> str:
        return self.event.get("status", DONE)  # events from before the pending step were done


def latest_move(client: MlflowClient, alias: str, holder_version: str | None) -> AuditedMove | None:
    """The newest audit event that moved `alias`: done, or pending on the version now holding it
    (a pending event elsewhere is a move that never happened; aborted ones are skipped)."""
    moves = [m for m in _moves(client, alias) if m.status == DONE or m.version == holder_version]
    return max(moves, key=_order, default=None)


def _moves(client: MlflowClient, alias: str) -> list[AuditedMove]:
    return [
        AuditedMove(str(v.version), key, event)
        for v in client.search_model_versions(f"name = '{MODEL_NAME}'")
        for key, event in _events(v)
        if event.get("to") == alias and event.get("status", DONE) != ABORTED
    ]


def _order(move: AuditedMove) -> tuple[object, ...]:
    """Moves of one alias in the order they happened: by the sequence number each move took
    under the alias's lock (clients' clocks disagree: one 2 h behind made a correct promotion
    look older than the one it replaced); events from before there was one, by their time."""
    from datetime import datetime

    seq = move.event.get("seq")
    when = datetime.fromisoformat(move.event.get("when", "1970-01-01T00:00:00+00:00"))
    return (seq is not None, int(seq) if seq is not None else 0, when, move.key)


SEQ_TAG = "audit.seq."  # + alias: a registered-model tag, the last sequence number of its moves


def _next_seq(client: MlflowClient, alias: str) -> str:
    """The next move number of `alias`; called only under `move_lock(alias)`, so no two moves
    of it take the same one."""
    tags = client.get_registered_model(MODEL_NAME).tags
    seq = str(int(tags.get(f"{SEQ_TAG}{alias}", "0")) + 1)
    client.set_registered_model_tag(MODEL_NAME, f"{SEQ_TAG}{alias}", seq)
    return seq


def _events(version: ModelVersion) -> list[tuple[str, dict[str, str]]]:
    import json

    return [
        (k, json.loads(v)) for k, v in sorted(version.tags.items()) if k.startswith(PROMOTION_TAG)
    ]


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="microseconds")  # orders moves within a second


def move_alias(
    client: MlflowClient, alias: str, version: str, who: Caller, reason: str
) -> dict[str, str] | None:
    """Point `alias` at `version` so that the alias and its audit record never disagree.

    The event is written first as `pending`, then the alias moves, then both versions' legacy
    stages are mirrored and the event is marked `done`. A crash in between leaves a pending
    event that `doctor` reports and the next move of the same alias completes. If the version
    already holds the alias, only a missing or pending record is repaired. Returns the event
    written or completed, or None when the trail was already right.
    """
    current = client.get_model_version(MODEL_NAME, version)
    held = sorted(a for a in current.aliases if a in ALIAS_STAGES)
    if alias in held:
        return reconcile(client, alias, current, who, reason)
    for key, event in _events(current):  # an earlier attempt that died before the alias moved
        if event.get("to") == alias and event.get("status") == PENDING:
            _set_status(client, version, key, ABORTED)
    previous = holder(client, alias)
    event = {
        "who": who.name,
        "who_verified": "true" if who.verified else "false",
        "when": _now(),
        "from": ",".join(held) or "none",
        "to": alias,
        "holds": ",".join(sorted({*held, alias})),
        "reason": reason,
        "status": PENDING,
        "seq": _next_seq(client, alias),
    }
    key = record_event(client, version, event)
    checkpoint("promote:audit-pending")
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    checkpoint("promote:alias-moved")
    mirror_stage(client, version)
    if previous is not None and str(previous.version) != version:
        mirror_stage(client, str(previous.version))
    return _set_status(client, version, key, DONE)


def reconcile(
    client: MlflowClient, alias: str, current: ModelVersion, who: Caller, reason: str
) -> dict[str, str] | None:
    """`current` holds `alias`: complete its pending event, or write the missing one, and mirror
    its stage. None when the newest move of `alias` is already a done event on this version."""
    version = str(current.version)
    for other in _all_versions(client):  # a crash may have left the previous holder's stage
        mirror_stage(client, str(other.version))
    latest = latest_move(client, alias, version)
    if latest is not None and latest.version == version:
        if latest.status == DONE:
            return None
        return _set_status(client, version, latest.key, DONE)
    held = sorted(a for a in current.aliases if a in ALIAS_STAGES)
    event = {
        "who": who.name,
        "who_verified": "true" if who.verified else "false",
        "when": _now(),
        "from": "unknown",
        "to": alias,
        "holds": ",".join(held),
        "reason": f"recorded after the fact: {alias} held this version without an audit "
        f"record ({reason})",
        "status": DONE,
        "seq": _next_seq(client, alias),
    }
    record_event(client, version, event)
    return event


def audit_gaps(client: MlflowClient) -> list[str]:
    """Where the aliases, their audit trail and the legacy stages disagree, one line each."""
    gaps = []
    for alias in ALIAS_STAGES:
        current = holder(client, alias)
        version = str(current.version) if current is not None else None
        latest = latest_move(client, alias, version)
        unfinished = [
            m
            for m in _moves(client, alias)
            if m.status == PENDING
            and m.version != version
            and (latest is None or _order(m) > _order(latest))
        ]
        gaps += [
            f"{alias}: version {m.version} has a pending audit record for a move that did not "
            "happen (a promotion died before moving the alias)"
            for m in unfinished
        ]
        if current is None:
            continue
        if latest is None or latest.version != version:
            gaps.append(f"{alias} -> version {version} has no audit record for that move")
        elif latest.status == PENDING:
            gaps.append(
                f"{alias} -> version {version}: its audit record is still pending "
                "(the promotion died before confirming it)"
            )
    for each in _all_versions(client):
        wanted = mirrored_stage(list(each.aliases), each.current_stage)
        if each.current_stage != wanted:
            gaps.append(
                f"version {each.version} holds {', '.join(sorted(each.aliases)) or 'no alias'} "
                f"but its legacy stage is {each.current_stage} (should be {wanted})"
            )
    return gaps


def _all_versions(client: MlflowClient) -> list[ModelVersion]:
    """Every version with its aliases (search results leave the aliases out)."""
    return [
        client.get_model_version(MODEL_NAME, str(v.version))
        for v in client.search_model_versions(f"name = '{MODEL_NAME}'")
    ]
