"""Moving `staging` / `production` deliberately: gates first, then the alias with its audit record.

Gates are pure functions over facts gathered beforehand, so each is testable alone and a refused
promotion changes nothing. The alias moves under a lock, and only if the target alias still
points where it did when the gates were checked: of two racing promotions, one wins and the
other is refused.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from predictflow.base.errors import UserError, machine_cause, machine_state
from predictflow.core import paths
from predictflow.lineage import access, artifacts, evidence, heldout, registry, releases
from predictflow.lineage.names import MODEL_NAME
from predictflow.lineage.tracking import REQUIRED_LINEAGE, tracking_uri

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from predictflow.core.evaluation import PairedDifference
    from predictflow.core.scoring import Model

TARGETS = ("staging", "production")


class PromotionRefused(UserError):
    """A gate failed or the alias moved meanwhile; nothing was changed."""


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Challenge:
    """Champion/challenger on the current evaluation split: both score the same rows."""

    metric: str
    challenger: float
    champion_version: str | None = None
    champion: float | None = None
    paired: PairedDifference | None = None  # challenger minus champion, with its interval


def quality_gate(roc_auc: float | None, min_roc_auc: float) -> Gate:
    if roc_auc is None:
        return Gate("quality", False, "the version's run has no roc_auc metric")
    return Gate("quality", roc_auc >= min_roc_auc, f"roc_auc {roc_auc:.4f} >= {min_roc_auc:.4f}")


def champion_gate(challenge: Challenge, margin: float) -> Gate:
    """Not worse than production beyond `margin`, at the interval's confidence.

    The rule is on the paired interval, not the two point AUCs: its low end must reach
    -margin. A challenger whose point AUC is a hair below the champion's passes when the
    interval says the gap is within the margin; one that is really worse fails however its
    point AUC came out.
    """
    if challenge.champion is None or challenge.paired is None:
        return Gate("champion/challenger", True, "no version holds production yet")
    paired = challenge.paired
    return Gate(
        "champion/challenger",
        paired.low >= -margin,
        f"{challenge.metric} {challenge.challenger:.4f} vs production v{challenge.champion_version}"
        f" {challenge.champion:.4f} on the same {paired.rows} rows: difference "
        f"{_signed(paired.difference)}, {100 * paired.confidence:g}% paired-bootstrap interval "
        f"[{_signed(paired.low)}, {_signed(paired.high)}] (low end must be >= "
        f"{_signed(-margin)}, promote.margin)",
    )


def _signed(value: float) -> str:
    """`+0.0123`; a zero is `+0.0000` however it came (`-0.0`, from `-margin` at margin 0)."""
    return f"{value + 0.0:+.4f}"  # -0.0 + 0.0 is 0.0


def production_gates(
    aliases: list[str],
    tags: dict[str, str],
    sealed: str | None,
    challenge: Challenge,
    margin: float,
    allow_dirty: bool,
) -> list[Gate]:
    """Staging first, complete lineage, clean and sealed code, not worse than production."""
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
    return [*gates, champion_gate(challenge, margin)]


def held_out_scores(model: Model, rows: pd.DataFrame) -> np.ndarray:
    """P(churn) of a (verified) registered model for the evaluation split's rows."""
    from predictflow.core.scoring import churn_probability

    return churn_probability(model, rows)


def challenge(
    client: MlflowClient,
    version: ModelVersion,
    model: Model,
    split: heldout.ProvenSplit,
    limits: Gates,
) -> Challenge:
    """Score the proven split with the challenger and, if there is one, the production version;
    the paired bootstrap resamples the same rows for both (seeded: the same verdict every time).
    Both versions must have been trained beside this very split (`split_gate`)."""

    from sklearn.metrics import roc_auc_score

    from predictflow.core.evaluation import paired_auc_difference
    from predictflow.core.schema import TARGET

    heldout.split_gate(client, version, split)
    champion = registry.holder(client, "production")
    if champion is not None:
        heldout.split_gate(client, champion, split)
    rows = split.rows()  # from the bytes whose md5 was checked
    y_true = rows[TARGET].to_numpy()
    challenger = held_out_scores(model, rows)
    if champion is None:
        return Challenge("roc_auc", float(roc_auc_score(y_true, challenger)))
    champion_model = artifacts.load_verified(client, f"models:/{MODEL_NAME}/{champion.version}")
    defending = held_out_scores(champion_model, rows)
    paired = paired_auc_difference(
        y_true, challenger, defending, limits.resamples, limits.seed, limits.confidence
    )
    return Challenge(
        "roc_auc",
        float(roc_auc_score(y_true, challenger)),
        str(champion.version),
        float(roc_auc_score(y_true, defending)),
        paired,
    )


def held_out_gate(rows: int | None, smallest: int | None, min_rows: int, min_class: int) -> Gate:
    """Enough held-out rows, and of each class, for the quality metric to mean something:
    4 rows can score ROC AUC 1.0 by chance."""
    if rows is None or smallest is None:
        return Gate(
            "held-out size",
            False,
            "the version records no held-out size; register it again with `dvc repro`",
        )
    return Gate(
        "held-out size",
        rows >= min_rows and smallest >= min_class,
        f"{rows} held-out rows (register.min_test_rows {min_rows}), smallest class "
        f"{smallest} rows (register.min_test_class_rows {min_class})",
    )


def recorded_held_out(tags: dict[str, str]) -> tuple[int | None, int | None]:
    """The held-out size and smallest class count `register` tagged the version with."""
    rows, smallest = tags.get(registry.HELD_OUT_ROWS), tags.get(registry.HELD_OUT_MIN_CLASS)
    return (int(rows) if rows else None, int(smallest) if smallest else None)


@dataclass(frozen=True)
class Gates:
    """The params.yaml thresholds a promotion checks."""

    min_roc_auc: float
    min_test_rows: int
    min_test_class_rows: int
    margin: float  # promote.margin: how much worse than production a challenger may be
    confidence: float  # promote.confidence
    resamples: int  # promote.bootstrap_resamples
    seed: int  # base.seed


@dataclass
class Outcome:
    version: str
    target: str
    gates: list[Gate]
    previous: str | None
    event: dict[str, str] | None
    already: bool = False  # the version held the target before; `event` repaired its record


def promote(
    client: MlflowClient,
    store: Path,
    workspace: Path,
    version: ModelVersion,
    target: str,
    reason: str,
    limits: Gates,
    allow_dirty: bool = False,
) -> Outcome:
    """Check the gates for `target`; if all pass, move the alias with its audit record.

    Promoting a version that already holds `target` changes no alias, but completes an audit
    record a crashed promotion left pending (or missing) and re-mirrors the legacy stage.
    On a team server the server refuses what the caller's permissions do not allow; production
    additionally takes a releaser (MLflow cannot express that), and `who` is the login the
    server authenticated, not a name the caller typed.
    """
    uri = tracking_uri(store)
    caller = access.require_releaser(uri) if target == "production" else access.caller(uri)
    number = str(version.version)
    current = client.get_model_version(MODEL_NAME, number)
    aliases = list(current.aliases)
    seen = registry.holder(client, target)  # must still hold the alias when we move it
    if target in aliases:
        if target == "production":
            _ratify_release(client, current, caller, reason)
        with registry.move_lock(client, store, target, caller):
            event = registry.move_alias(client, target, number, caller, reason)
        return Outcome(number, target, [], number, event, already=True)
    if target == "production" and releases.applies(client):
        last = releases.latest(client)
        if last is not None and last.version == number and seen is not None:
            return _restore_release(client, store, current, seen, last, caller, reason)
    run = client.get_run(current.run_id)
    gates = [
        quality_gate(run.data.metrics.get("roc_auc"), limits.min_roc_auc),
        held_out_gate(
            *recorded_held_out(current.tags), limits.min_test_rows, limits.min_test_class_rows
        ),
    ]
    sealed = None
    with tempfile.TemporaryDirectory() as tmp:
        local = artifacts.download_verified(client, current, Path(tmp))  # refuses a swapped model
        if target == "production":
            sealed = evidence.sealed_commit(
                workspace, paths.MODEL.as_posix(), current.tags["model_md5"]
            )
            model = artifacts.load_local(local)
            duel = challenge(client, current, model, heldout.proven_split(workspace), limits)
            gates += production_gates(
                aliases, current.tags, sealed, duel, limits.margin, allow_dirty
            )
    failed = [gate for gate in gates if not gate.passed]
    if failed:
        raise PromotionRefused(
            f"version {number} not promoted to {target}: gate "
            + "; gate ".join(f"'{g.name}' failed ({g.detail})" for g in failed)
        )
    try:
        event = _move(client, store, current, target, caller, reason, sealed, seen)
    except Exception as err:  # only a full or read-only store is turned into one line
        if (cause := machine_cause(err)) is None:
            raise
        raise _unrecorded(client, number, target, cause) from None
    return Outcome(number, target, gates, seen and str(seen.version), event)


def _unrecorded(client: MlflowClient, number: str, target: str, cause: str) -> PromotionRefused:
    """What a promotion left when the store stopped taking writes, read back (reads still work)."""
    now = registry.holder(client, target)
    if now is None or str(now.version) != number:
        done = f"version {number} was not promoted, {target} is unchanged"
    else:
        done = (
            f"{target} now points to version {number} but its audit record is pending "
            f"(`predictflow doctor` shows it); once the store is writable, `predictflow promote "
            f"{number} --to {target}` completes it"
        )
    return PromotionRefused(f"the tracking store is {machine_state(cause)} ({cause}): {done}")


def _move(
    client: MlflowClient,
    store: Path,
    current: ModelVersion,
    target: str,
    caller: access.Caller,
    reason: str,
    sealed: str | None,
    seen: ModelVersion | None,
) -> dict[str, str] | None:
    """Move `target` to `current` under the lock, with its audit record; return the event."""
    number = str(current.version)
    with registry.move_lock(client, store, target, caller):
        now = registry.holder(client, target)
        if (now and now.version) != (seen and seen.version):
            raise PromotionRefused(
                f"{target} moved to version {now.version if now else None} while version "
                f"{number} was being checked; run the promotion again"
            )
        event = registry.move_alias(client, target, number, caller, reason)
        if target == "production" and releases.applies(client):
            releases.record(client, current, current.tags["model_md5"], caller, reason)
        if sealed:
            client.set_model_version_tag(MODEL_NAME, number, "sealed_commit", sealed)
    return event


def _restore_release(
    client: MlflowClient,
    store: Path,
    current: ModelVersion,
    seen: ModelVersion,
    last: releases.Release,
    caller: access.Caller,
    reason: str,
) -> Outcome:
    """Production was moved away from the last release outside `promote` (the ledger, which
    only releasers write, still names `current`): a releaser moves it back. No gate runs again:
    the version passed them when it was released, and its bytes are checked against that
    release's md5."""
    if current.tags.get("model_md5") != last.model_md5:
        raise PromotionRefused(
            f"version {current.version}: its model_md5 tag no longer matches its release "
            f"({last.model_md5}); refusing to restore it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        artifacts.download_verified(client, current, Path(tmp), ledger=False)
    gate = Gate(
        "release ledger",
        True,
        f"version {current.version} is the last release a releaser recorded ({last.who}, "
        f"{last.when}); production had been moved to version {seen.version} outside promote",
    )
    with registry.move_lock(client, store, "production", caller):
        event = registry.move_alias(client, "production", str(current.version), caller, reason)
    return Outcome(str(current.version), "production", [gate], str(seen.version), event)


def _ratify_release(
    client: MlflowClient, current: ModelVersion, caller: access.Caller, reason: str
) -> None:
    """`current` already holds production. On a team server whose ledger has no release yet
    (set up before there was one), the releaser's promote records it, after the artifact check.
    A ledger naming another version means production was moved outside `promote`: that is
    refused, never ratified, since the move skipped every gate."""
    if not releases.applies(client):
        return
    last = releases.latest(client)
    number = str(current.version)
    if last is not None and last.version == number:
        return
    if last is not None:
        raise PromotionRefused(
            f"{releases.moved_outside(number, last)}, and promoting would ratify a move that "
            f"passed no gate; move it back with `predictflow promote {last.version} --to "
            "production` first"
        )
    with tempfile.TemporaryDirectory() as tmp:
        artifacts.download_verified(client, current, Path(tmp), ledger=False)  # bytes = its tag
    releases.record(client, current, current.tags["model_md5"], caller, reason)


def promote_ref(
    client: MlflowClient,
    workspace: Path,
    ref: str,
    target: str,
    reason: str,
    allow_dirty: bool = False,
) -> Outcome:
    """`predictflow promote`: resolve `ref` and promote it with the params.yaml gates."""
    from predictflow.core.params import load_params
    from predictflow.lineage.tracking import store_root

    params = load_params(workspace / "params.yaml")
    version = registry.resolve(client, ref)
    limits = Gates(
        min_roc_auc=params.registry.min_roc_auc,
        min_test_rows=params.registry.min_test_rows,
        min_test_class_rows=params.registry.min_test_class_rows,
        margin=params.promote.margin,
        confidence=params.promote.confidence,
        resamples=params.promote.bootstrap_resamples,
        seed=params.base.seed,
    )
    return promote(client, store_root(), workspace, version, target, reason, limits, allow_dirty)


def describe(outcome: Outcome) -> tuple[dict[str, object], str]:
    """The facts (`--json`) and the text a person reads about a promotion."""
    facts = {
        "version": int(outcome.version),
        "alias": outcome.target,
        "previous": int(outcome.previous) if outcome.previous else None,
        "gates": [vars(g) for g in outcome.gates],
        "event": outcome.event,
    }
    if outcome.event is None:
        text = f"version {outcome.version} already holds {outcome.target}; nothing changed"
    elif outcome.already:
        text = (
            f"version {outcome.version} already holds {outcome.target}; its audit record was "
            f"{'pending' if outcome.event.get('from') != 'unknown' else 'missing'} and is now "
            "complete"
        )
    else:
        gates = "\n".join(f"  ok  {g.name}: {g.detail}" for g in outcome.gates)
        text = (
            f"{gates}\nversion {outcome.version} -> {outcome.target}"
            f" (was: {('version ' + outcome.previous) if outcome.previous else 'none'})"
        )
    return facts, text
