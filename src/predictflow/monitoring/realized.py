"""Realized performance: how the versions that scored a batch did once its labels arrived.

`predictflow evaluate-batch` reads the labelled file and its scoring record (`record`), computes
each version's metrics on that cohort and records them as a run per version in `churn-monitoring`
and a version tag `realized.<cohort>`; `--history` lists every recorded cohort.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from predictflow.base.errors import StageError
from predictflow.core.schema import ID, TARGET, parse_target
from predictflow.lineage import evidence, tracking
from predictflow.lineage.names import MONITORING_EXPERIMENT
from predictflow.monitoring.record import (
    finish_run,
    monitoring_experiment,
    read_record,
    record_path,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

COHORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # safe as an MLflow tag key part


# --- realized metrics ---------------------------------------------------------------------------


def parse_labels(values: pd.Series, source: str) -> pd.Series:
    """`Churn` as 0/1 by the data contract's lenient reading, the one `predict` applies."""
    return parse_target(values.str.strip(), source, lenient=True)


def _read_csv(path: Path, what: str, keep: set[str] | None = None) -> pd.DataFrame:
    """A CSV as text; only the `keep` columns (a scored batch's features are not needed)."""
    try:
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            usecols=None if keep is None else (lambda column: column in keep),
        )
    except FileNotFoundError:
        raise StageError(f"{path}: {what} not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StageError(f"{path}: cannot read {what} ({first})") from None


def labelled_cohort(
    scored: Path, record: dict[str, Any], labels: Path | None, on: str, record_file: Path
) -> pd.DataFrame:
    """The scored rows that have a label: `Churn` in the scored file, or joined from `labels`.

    The file must be the one its record describes (same score columns, decisions taken at the
    record's threshold): metrics of another file would be recorded on the wrong versions.
    """
    needed = [c for role in record["models"].values() for c in role["columns"].values()]
    frame = _read_csv(scored, "scored file", {*needed, on, TARGET, ID})
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise StageError(
            f"{scored}: missing scored column(s) {', '.join(missing)} that its record names"
        )
    check_scores(frame, needed, record, scored, record_file)
    frame[LINE] = np.arange(len(frame)) + 2  # the CSV line, for messages after the join
    if labels is None:
        if TARGET not in frame.columns:
            raise StageError(
                f"{scored}: no '{TARGET}' column; fill it in, or join labels with "
                f"--labels FILE --on {ID}"
            )
        cohort = frame.assign(**{TARGET: parse_labels(frame[TARGET], str(scored))})
    else:
        truth = _read_csv(labels, "labels file")
        for path, table, wanted in ((scored, frame, (on,)), (labels, truth, (on, TARGET))):
            absent = [c for c in wanted if c not in table.columns]
            if absent:
                raise StageError(f"{path}: no column {', '.join(map(repr, absent))} to join on")
        _check_unique(frame, on, scored, "was scored more than once")
        _check_unique(truth, on, labels, "has more than one label")
        truth = truth.assign(**{TARGET: parse_labels(truth[TARGET], str(labels))})
        cohort = frame.drop(columns=[TARGET], errors="ignore").merge(
            truth[[on, TARGET]], on=on, how="inner"
        )
        if cohort.empty:
            raise StageError(f"no rows joined: no {on} of {labels} is in {scored}")
    if cohort.empty:
        raise StageError(f"{scored}: no scored rows")
    result = cohort[needed].apply(pd.to_numeric, errors="coerce")
    if result.isna().any().any():
        column = result.columns[result.isna().any()][0]
        raise StageError(f"{scored}: column {column!r}: a value is not a number")
    check_decisions(result, cohort[LINE].to_numpy(), record, scored, record_file)
    result[TARGET] = cohort[TARGET].to_numpy()
    return result


LINE = "__line__"  # a column no CSV of ours has


def _check_unique(table: pd.DataFrame, on: str, path: Path, problem: str) -> None:
    dupes = table[on].duplicated()
    if dupes.any():
        index = int(np.flatnonzero(dupes.to_numpy())[0])
        raise StageError(
            f"{path}: column {on!r}, line {index + 2}: {table[on].iloc[index]!r} {problem}; "
            f"the join on {on} needs one row per customer"
        )


def check_scores(
    frame: pd.DataFrame, needed: list[str], record: dict[str, Any], scored: Path, record_file: Path
) -> None:
    """Refuse a scored file whose score columns are not the ones its record digested (another
    batch, another model's scores, values edited): records from before the digest pass."""
    from predictflow.core.scoring import rows_digest, rows_hex, score_text

    expected = record.get("scores_md5")
    if expected is None:
        return
    in_file_order = [c for c in frame.columns if c in needed]  # the record's keys are sorted
    text = score_text(frame[in_file_order])
    actual = hashlib.md5(text).hexdigest()
    rows = record.get("scores_rows_md5")  # absent in records written before it existed
    if actual == expected or (ID in frame and rows == rows_hex(rows_digest(frame[ID], text))):
        return  # the same rows, perhaps re-sorted: each score is still beside its customer
    differ = "differ from" if rows else "differ from or are in another order than"
    restore = "" if rows else ", or restore the row order predict wrote"
    raise StageError(
        f"{scored}: its score columns {differ} the ones {record_file} describes (md5 {actual}, "
        f"record {expected}): edited scores or another batch's file; pass the record predict "
        f"wrote for this file with --record{restore}"
    )


def check_decisions(
    scores: pd.DataFrame,
    lines: np.ndarray,
    record: dict[str, Any],
    scored: Path,
    record_file: Path,
) -> None:
    """Every decision in the file is its probability at the record's threshold: a record of
    another threshold would record metrics of decisions nobody took."""
    threshold = record["threshold"]
    for model in record["models"].values():
        proba, predicted = (scores[model["columns"][k]] for k in ("probability", "predicted"))
        wrong = (proba >= threshold).astype("int64").to_numpy() != predicted.to_numpy()
        if wrong.any():
            index = int(np.flatnonzero(wrong)[0])
            raise StageError(
                f"{scored}: line {lines[index]}: {model['columns']['predicted']} is "
                f"{predicted.iloc[index]:g} at probability {proba.iloc[index]:.6g}, not the "
                f"decision at threshold {threshold} of {record_file}; pass the record of the "
                "threshold this file was scored with (--record)"
            )


def realized_metrics(
    y_true: np.ndarray, proba: np.ndarray, predicted: np.ndarray
) -> dict[str, float]:
    """The metrics of decisions already taken: `predicted` as written, not re-thresholded."""
    from sklearn import metrics

    return {
        "rows": float(len(y_true)),
        "churn_rate": float(np.mean(y_true)),
        "predicted_churn_rate": float(np.mean(predicted)),
        "roc_auc": float(metrics.roc_auc_score(y_true, proba)),
        "pr_auc": float(metrics.average_precision_score(y_true, proba)),
        "accuracy": float(metrics.accuracy_score(y_true, predicted)),
        "precision": float(metrics.precision_score(y_true, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(y_true, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(y_true, predicted, zero_division=0)),
        "brier": float(metrics.brier_score_loss(y_true, proba)),
    }


def evaluate_cohort(cohort: pd.DataFrame, record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Realized metrics per role (champion, and shadow when the file was shadow-scored)."""
    y_true = cohort[TARGET].to_numpy()
    if len(np.unique(y_true)) < 2:
        only = "Yes" if y_true[0] == 1 else "No"
        raise StageError(
            f"column '{TARGET}': every labelled customer is {only!r}; ROC AUC needs both classes"
        )
    return {
        role: realized_metrics(
            y_true,
            cohort[model["columns"]["probability"]].to_numpy(dtype="float64"),
            cohort[model["columns"]["predicted"]].to_numpy(dtype="int64"),
        )
        for role, model in record["models"].items()
    }


def check_cohort(cohort: str) -> str:
    if not COHORT.fullmatch(cohort):  # `match` would let a trailing newline through `$`
        raise StageError(
            f"--cohort {cohort!r}: use letters, digits, '.', '_' or '-' (at most 64 characters)"
        )
    return cohort


# --- MLflow -----------------------------------------------------------------------------------


def check_versions(client: MlflowClient, record: dict[str, Any], cohort: str) -> None:
    """Every version still registered, none holding this cohort yet: else nothing is recorded."""
    from mlflow.exceptions import MlflowException

    for role, model in record["models"].items():
        if not model.get("version"):
            raise StageError(
                f"the {role} {model['uri']} is not a registered version: its realized metrics "
                "have no version to be recorded on"
            )
        try:
            client.get_model_version(model["name"], model["version"])
        except MlflowException:
            raise StageError(
                f"version {model['version']} of {model['name']!r} (the {role}) no longer exists "
                "in the registry; nothing was recorded"
            ) from None
        done = realized_runs(client, model["version"], cohort)
        if done:
            raise StageError(
                f"cohort {cohort!r} is already recorded for version {model['version']} "
                f"(run {done[0].info.run_id}); give another --cohort"
            )


def realized_runs(client: MlflowClient, version: str | None = None, cohort: str | None = None):
    """The `evaluate-batch` runs, oldest first, optionally of one version and cohort."""

    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    if experiment is None:
        return []
    query = ["tags.kind = 'realized'"]
    if version is not None:
        query.append(f"tags.model_version = '{version}'")
    if cohort is not None:
        query.append(f"tags.cohort = '{cohort}'")
    runs = client.search_runs(
        [experiment.experiment_id],
        " and ".join(query),
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    )
    return list(runs)


def log_realized(
    client: MlflowClient,
    root: Path,
    record: dict[str, Any],
    results: dict[str, dict[str, float]],
    facts: dict[str, Any],
) -> dict[str, str]:
    """A run per version (so successive cohorts chart as a history) and a version tag
    `realized.<cohort>` with the same numbers (so the version's page shows them)."""
    from predictflow.lineage.access import require_writes

    experiment, run_ids = monitoring_experiment(root), {}
    require_writes(
        tracking.tracking_uri(root), experiment, {m["name"] for m in record["models"].values()}
    )
    for role, values in results.items():
        model = record["models"][role]
        run = client.create_run(
            experiment,
            run_name=f"realized-v{model['version']}-{facts['cohort']}",
            tags={
                "kind": "realized",
                "role": role,
                "model_name": model["name"],
                "model_version": str(model["version"]),
                "cohort": facts["cohort"],
                "scored_md5": facts["scored_md5"],
                "batch_md5": record["batch_md5"],
                "labels_md5": facts["labels_md5"] or "",
                "threshold": str(record["threshold"]),
            },
        )
        finish_run(client, run.info.run_id, values, {**facts, "role": role, "metrics": values})
        run_ids[role] = run.info.run_id
        summary = {k: round(v, 6) for k, v in values.items()}
        client.set_model_version_tag(
            model["name"],
            model["version"],
            f"realized.{facts['cohort']}",
            json.dumps({**summary, "run_id": run.info.run_id}, sort_keys=True),
        )
    return run_ids


# --- reports ----------------------------------------------------------------------------------

HISTORY_COLUMNS = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "brier", "churn_rate")


def history(client: MlflowClient) -> list[dict[str, Any]]:
    """Every recorded cohort per version, oldest first."""
    return [
        {
            "cohort": run.data.tags.get("cohort"),
            "version": run.data.tags.get("model_version"),
            "role": run.data.tags.get("role"),
            "rows": int(run.data.metrics.get("rows", 0)),
            "run_id": run.info.run_id,
            **{k: run.data.metrics.get(k) for k in HISTORY_COLUMNS},
        }
        for run in realized_runs(client)
    ]


def render_history(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no realized metrics recorded yet: run `predictflow evaluate-batch --input ...`"
    head = f"{'cohort':<18} {'version':>7} {'role':<9} {'rows':>7} " + " ".join(
        f"{c:>10}" for c in HISTORY_COLUMNS
    )
    lines = [head]
    for row in rows:
        values = " ".join(
            f"{'-' if row[c] is None else format(row[c], '.4f'):>10}" for c in HISTORY_COLUMNS
        )
        lines.append(
            f"{row['cohort']:<18} {row['version']:>7} {row['role']:<9} {row['rows']:>7} {values}"
        )
    return "\n".join(lines)


def render_realized(facts: dict[str, Any]) -> str:
    lines = [f"{'version':>7} {'role':<9} " + " ".join(f"{c:>10}" for c in HISTORY_COLUMNS)]
    for role, values in facts["metrics"].items():
        version = facts["versions"][role]
        lines.append(
            f"{version:>7} {role:<9} " + " ".join(f"{values[c]:>10.4f}" for c in HISTORY_COLUMNS)
        )
    lines.append(
        f"cohort {facts['cohort']}: {facts['rows']} labelled customers "
        f"(churn rate {facts['churn_rate']:.1%}), recorded on version(s) "
        f"{', '.join(facts['versions'].values())}"
    )
    return "\n".join(lines)


def evaluate_batch(
    client: MlflowClient,
    source: Path,
    labels: Path | None,
    on: str,
    record_file: Path | None,
    cohort: str | None,
) -> dict[str, Any]:
    """`predictflow evaluate-batch`: realized metrics of the versions that scored `source`,
    recorded per version and cohort; return the facts."""
    if cohort is not None:
        check_cohort(cohort)
    record_file = record_file or record_path(source)
    record = read_record(record_file, source)
    rows = labelled_cohort(source, record, labels, on, record_file)
    results = evaluate_cohort(rows, record)
    scored_md5 = evidence.file_md5(source)
    facts: dict[str, Any] = {
        "cohort": cohort or scored_md5[:12],
        "input": str(source),
        "labels": str(labels) if labels else None,
        "scored_md5": scored_md5,
        "labels_md5": evidence.file_md5(labels) if labels else None,
        "rows": len(rows),
        "churn_rate": float(rows[TARGET].mean()),
        "threshold": record["threshold"],
        "versions": {role: m["version"] for role, m in record["models"].items()},
        "metrics": results,
    }
    check_versions(client, record, facts["cohort"])  # before anything is recorded
    facts["run_ids"] = log_realized(client, tracking.store_root(), record, results, facts)
    return facts
