"""The release ledger: on a team server, the record of production that only a releaser can write.

MLflow lets anyone with EDIT on `churn-predictor` (an experimenter) set its tags, move any alias
and, through the artifact proxy, replace a version's files and re-tag its md5. So nothing an
experimenter can write proves who released what. The ledger is a registered model of its own,
`churn-predictor-releases`, created by the admin at set-up (`predictflow access`), on which only
releasers hold EDIT (experimenters and readers READ): the server checks that permission on every
write. Each `promote --to production` adds one tag `release.NNNN` there: the version, its model
md5, who (the login the server authenticated), when and why. `doctor` and every model load judge
production against the ledger, never against a tag on the version.

On a local store there are no roles (whoever can write the file can write anything), so there is
no ledger and these checks do not apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from predictflow.lineage.names import LEDGER

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from predictflow.lineage.access import Caller

RELEASE_TAG = "release."


@dataclass(frozen=True)
class Release:
    key: str
    version: str
    model_md5: str
    who: str
    when: str
    reason: str


def applies(client: MlflowClient) -> bool:
    """Whether the client talks to a team server (the ledger's home)."""
    return str(client._registry_uri).startswith(("http://", "https://"))


def releases(client: MlflowClient) -> list[Release] | None:
    """The ledger's releases, oldest first; None when the server has no ledger (set up before
    there was one: `predictflow access grant` creates it)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(LEDGER).tags
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    found = []
    for key in sorted(k for k in tags if k.startswith(RELEASE_TAG)):
        try:
            event = json.loads(tags[key])
            found.append(
                Release(
                    key,
                    str(event["version"]),
                    str(event["model_md5"]),
                    str(event.get("who", "")),
                    str(event.get("when", "")),
                    str(event.get("reason", "")),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # not a record this code wrote; it proves nothing either way
    return found


def latest(client: MlflowClient) -> Release | None:
    found = releases(client)
    return found[-1] if found else None


def record(
    client: MlflowClient, version: ModelVersion, model_md5: str, who: Caller, reason: str
) -> Release:
    """Append the release of `version` (whose bytes hashed to `model_md5`) to the ledger."""
    from datetime import UTC, datetime

    found = releases(client) or []
    key = f"{RELEASE_TAG}{len(found) + 1:04d}"
    event = {
        "version": str(version.version),
        "model_md5": model_md5,
        "who": who.name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
    }
    client.set_registered_model_tag(LEDGER, key, json.dumps(event))
    return Release(key, event["version"], model_md5, who.name, event["when"], reason)


@dataclass(frozen=True)
class Judgement:
    """Production against the ledger, read once: `problem` says why it is not what a releaser
    released (None if it is, or on a local store); `release` is the last release when it names
    the version that holds production."""

    problem: str | None
    release: Release | None


def moved_outside(number: str, last: Release) -> str:
    return (
        f"production -> version {number}, but the last release a releaser recorded is "
        f"version {last.version} ({last.who}, {last.when}): production was moved outside "
        "`predictflow promote`"
    )


def judge(client: MlflowClient, holder: ModelVersion | None) -> Judgement:
    """Whether production, as the registry shows it, is the last release (one ledger read)."""
    if not applies(client) or holder is None:
        return Judgement(None, None)
    last = latest(client)
    number = str(holder.version)
    if last is None:
        return Judgement(
            f"production -> version {number} has no release record a releaser wrote "
            f"({LEDGER}): it was moved outside `predictflow promote`, or before the ledger "
            f"existed; a releaser runs `predictflow promote {number} --to production` to "
            "record it",
            None,
        )
    if last.version != number:
        return Judgement(moved_outside(number, last), None)
    return Judgement(None, last)
