"""Moving `staging` / `production` deliberately: gates first, then the alias, then the audit trail.

Gates are pure functions over facts gathered beforehand, so each is testable alone and a refused
promotion changes nothing. The alias moves under a lock, and only if the target alias still
points where it did when the gates were checked: of two racing promotions, one wins and the
other is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from predictflow import access, lineage, registry
from predictflow.tracking import MODEL_NAME, REQUIRED_LINEAGE, store_lock, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

TARGETS = ("staging", "production")
MODEL_PATH = "models/model.pkl"
EVALUATION_SPLIT = "data/prepared/test.parquet"


class PromotionRefused(RuntimeError):
    """A gate failed or the alias moved meanwhile; nothing was changed."""


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Challenge:
    """Champion/challenger on the current evaluation split."""

    metric: str
    challenger: float
    champion_version: str | None = None
    champion: float | None = None


def quality_gate(roc_auc: float | None, min_roc_auc: float) -> Gate:
    if roc_auc is None:
        return Gate("quality", False, "the version's run has no roc_auc metric")
    return Gate("quality", roc_auc >= min_roc_auc, f"roc_auc {roc_auc:.4f} >= {min_roc_auc:.4f}")


def production_gates(
    aliases: list[str],
    tags: dict[str, str],
    sealed: str | None,
    challenge: Challenge,
    max_drop: float,
    allow_dirty: bool,
) -> list[Gate]:
    """Staging first, complete lineage, clean and sealed code, at least as good as production."""
    missing = [key for key in REQUIRED_LINEAGE if not tags.get(key)]
    dirty = tags.get("git_dirty") != "false"
    gates = [
        Gate(
            "in staging",
            "staging" in aliases,
            "holds alias staging" if "staging" in aliases else "promote it to staging first",
        ),
        Gate(
            "lineage complete",
            not missing,
            "data md5, model md5, git commit, dirty flag recorded"
            if not missing
            else f"missing tag(s): {', '.join(missing)}",
        ),
        Gate(
            "clean code",
            not dirty or allow_dirty,
            "trained from a clean tree"
            if not dirty
            else "trained from a dirty tree"
            + (
                " (allowed by --allow-dirty)"
                if allow_dirty
                else "; commit and retrain, or --allow-dirty"
            ),
        ),
        Gate(
            "sealed",
            sealed is not None or allow_dirty,
            f"dvc.lock pinning it committed in {sealed[:12]}"
            if sealed
            else "no committed dvc.lock pins its model md5"
            + (" (allowed by --allow-dirty)" if allow_dirty else "; commit dvc.lock first"),
        ),
    ]
    if challenge.champion is None:
        gates.append(Gate("champion/challenger", True, "no version holds production yet"))
    else:
        floor = challenge.champion - max_drop
        gates.append(
            Gate(
                "champion/challenger",
                challenge.challenger >= floor,
                f"{challenge.metric} {challenge.challenger:.4f} vs production "
                f"v{challenge.champion_version} {challenge.champion:.4f} (must be >= {floor:.4f})",
            )
        )
    return gates


def held_out_auc(model_uri: str, split: Path) -> float:
    """ROC AUC of a registered model on the workspace's current evaluation split."""
    import mlflow
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from predictflow.schema import TARGET
    from predictflow.scoring import churn_probability

    rows = pd.read_parquet(split)
    model = mlflow.pyfunc.load_model(model_uri)
    return float(roc_auc_score(rows[TARGET], churn_probability(model, rows)))


def challenge(client: MlflowClient, version: ModelVersion, split: Path) -> Challenge:
    if not split.exists():
        raise PromotionRefused(
            f"{split} not found: run `dvc repro` to build the evaluation split first"
        )
    champion = registry.holder(client, "production")
    challenger = held_out_auc(f"models:/{MODEL_NAME}/{version.version}", split)
    if champion is None:
        return Challenge("roc_auc", challenger)
    return Challenge(
        "roc_auc",
        challenger,
        str(champion.version),
        held_out_auc(f"models:/{MODEL_NAME}/{champion.version}", split),
    )


@dataclass
class Outcome:
    version: str
    target: str
    gates: list[Gate]
    previous: str | None
    event: dict[str, str] | None


def promote(
    client: MlflowClient,
    store: Path,
    workspace: Path,
    version: ModelVersion,
    target: str,
    reason: str,
    min_roc_auc: float,
    max_drop: float,
    allow_dirty: bool = False,
) -> Outcome:
    """Check the gates for `target`; if all pass, move the alias and record the event.

    On a team server the server refuses what the caller's permissions do not allow; production
    additionally takes a releaser (MLflow cannot express that), and `who` is the login the
    server authenticated, not a name the caller typed.
    """
    uri = tracking_uri(store)
    caller = access.require_releaser(uri) if target == "production" else access.caller(uri)
    current = client.get_model_version(MODEL_NAME, str(version.version))
    aliases = list(current.aliases)
    seen = registry.holder(client, target)  # must still hold the alias when we move it
    if target in aliases:
        return Outcome(str(version.version), target, [], str(version.version), None)
    run = client.get_run(current.run_id)
    gates = [quality_gate(run.data.metrics.get("roc_auc"), min_roc_auc)]
    sealed = None
    if target == "production":
        sealed = lineage.sealed_commit(workspace, MODEL_PATH, current.tags.get("model_md5", ""))
        duel = challenge(client, current, workspace / EVALUATION_SPLIT)
        gates += production_gates(aliases, current.tags, sealed, duel, max_drop, allow_dirty)
    failed = [gate for gate in gates if not gate.passed]
    if failed:
        raise PromotionRefused(
            f"version {version.version} not promoted to {target}: gate "
            + "; gate ".join(f"'{g.name}' failed ({g.detail})" for g in failed)
        )
    with store_lock(store, "promote"):
        now = registry.holder(client, target)
        if (now and now.version) != (seen and seen.version):
            raise PromotionRefused(
                f"{target} moved to version {now.version if now else None} while version "
                f"{version.version} was being checked; run the promotion again"
            )
        registry.set_alias(client, target, str(version.version))
        event = {
            "who": caller.name,
            "who_verified": "true" if caller.verified else "false",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "from": ",".join(a for a in aliases if a in TARGETS) or "none",
            "to": target,
            "reason": reason,
        }
        registry.record_event(client, current, event)
        if sealed:
            client.set_model_version_tag(MODEL_NAME, str(version.version), "sealed_commit", sealed)
    return Outcome(str(version.version), target, gates, seen and str(seen.version), event)
