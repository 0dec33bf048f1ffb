"""After scoring: how a shadow challenger agrees with the champion, and how both did once the
labels arrived.

`predictflow predict --shadow URI` scores every chunk with both models (see `scoring.score_csv`)
and accumulates the agreement here without keeping the batch: Pearson from streamed co-moments
(exact), Spearman on a seeded reservoir sample (exact while the batch fits in it), flips counted.

Which versions scored a file is written by `predict` in a *scoring record* beside its output,
`<output>.json`, rather than in extra columns: the champion's CSV must stay byte-identical to what
predict wrote before shadowing existed, the versions and threshold are one fact per batch rather
than one per row, and the record also carries the batch md5, the threshold and which columns hold
which model. `predictflow evaluate-batch` reads it back (`--record` when the labelled file was
renamed) and records each version's realized metrics as a run in `churn-monitoring`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from predictflow import io, lineage, tracking
from predictflow.errors import StageError
from predictflow.schema import ID, TARGET, parse_target

if TYPE_CHECKING:
    from mlflow import MlflowClient

RECORD_SUFFIX = ".json"
RECORD_KIND = "predictflow.scoring"
SHADOW_PREFIX = "shadow_"
SPEARMAN_SAMPLE_ROWS = 100_000  # Spearman needs ranks: exact up to this many rows, sampled above
SAMPLE_SEED = 0
COHORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # safe as an MLflow tag key part
ROLES = ("champion", "shadow")


# --- which model is which ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model URI as given, pinned to the registered version it resolved to (None otherwise)."""

    uri: str
    name: str | None = None
    version: str | None = None
    model_md5: str | None = None
    run_id: str | None = None  # the run that logged the model, when known

    @property
    def pinned_uri(self) -> str:
        """The URI to load: the resolved version, so an alias moving mid-run changes nothing."""
        return f"models:/{self.name}/{self.version}" if self.version else self.uri

    def describe(self) -> str:
        return f"{self.uri} (version {self.version})" if self.version else self.uri


def resolve_model(client: MlflowClient, uri: str) -> ModelRef:
    """Pin a `models:/` URI (alias, number, stage, latest) or a bare version number of the
    churn model to its version, as MLflow resolves it; other URIs keep their run, if any."""
    from predictflow.errors import RegistryError

    if uri.isdecimal():
        uri = f"models:/{tracking.MODEL_NAME}/{uri}"
    if uri.startswith("runs:/"):
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        return ModelRef(uri, run_id=RunsArtifactRepository.parse_runs_uri(uri)[0])
    if uri.startswith("models:/m-") and "/" not in uri.removeprefix("models:/"):
        from predictflow.artifacts import logged_model_run

        return ModelRef(uri, run_id=logged_model_run(client, uri.removeprefix("models:/")))
    if not uri.startswith("models:/"):
        return ModelRef(uri)
    name, at, selector = uri.removeprefix("models:/").partition("@")
    if not at:
        name, _, selector = name.partition("/")
    if not name or not selector:
        raise RegistryError(
            f"model URI {uri!r}: expected models:/NAME/VERSION, models:/NAME@ALIAS or a "
            "version number"
        )
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    name, number = get_model_name_and_version(client, uri)
    version = client.get_model_version(name, str(number))
    run_id = version.tags.get("run_id") or version.run_id
    return ModelRef(uri, name, str(number), version.tags.get("model_md5"), run_id)


def check_distinct(champion: ModelRef, shadow: ModelRef) -> None:
    """Shadowing a model with itself measures nothing; refuse before scoring. The same model
    however named: the same verified bytes (a path to the champion's folder), the same
    registered version, or a `runs:/` URI of the run that logged it (a run logs one model)."""
    if champion.model_md5 and champion.model_md5 == shadow.model_md5:
        same = True
    elif champion.version and shadow.version:
        same = (champion.name, champion.version) == (shadow.name, shadow.version)
    else:
        same = champion.uri == shadow.uri or (
            champion.run_id is not None and champion.run_id == shadow.run_id
        )
    if same:
        raise StageError(
            f"--shadow {shadow.describe()} is the champion {champion.describe()} itself; "
            "shadow a different version"
        )


def columns(role: str) -> dict[str, str]:
    """The output columns holding a role's scores."""
    prefix = SHADOW_PREFIX if role == "shadow" else ""
    return {"probability": f"{prefix}churn_probability", "predicted": f"{prefix}churn_predicted"}


# --- agreement, streamed ----------------------------------------------------------------------


@dataclass
class Agreement:
    """Champion vs shadow over a stream of chunks; memory bounded by the Spearman sample."""

    rows: int = 0
    flips_to_churn: int = 0  # champion says stay, shadow says churn
    flips_to_stay: int = 0
    abs_diff_sum: float = 0.0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(2))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(2))  # sums of squared deviations
    comoment: float = 0.0
    sample: Any = None  # a drift.Reservoir, made on first use

    def add(
        self,
        champion: np.ndarray,
        shadow: np.ndarray,
        champion_predicted: np.ndarray,
        shadow_predicted: np.ndarray,
    ) -> None:
        """Merge one chunk (Chan et al.'s pairwise update keeps Pearson exact and stable)."""
        from predictflow.drift import Reservoir

        n = len(champion)
        if n == 0:
            return
        pair = np.column_stack([champion, shadow]).astype("float64")
        chunk_mean = pair.mean(axis=0)
        centred = pair - chunk_mean
        total = self.rows + n
        delta = chunk_mean - self.mean
        self.m2 += (centred**2).sum(axis=0) + delta**2 * self.rows * n / total
        self.comoment += float(centred[:, 0] @ centred[:, 1]) + (
            delta[0] * delta[1] * self.rows * n / total
        )
        self.mean += delta * n / total
        self.rows = total
        self.flips_to_churn += int(((champion_predicted == 0) & (shadow_predicted == 1)).sum())
        self.flips_to_stay += int(((champion_predicted == 1) & (shadow_predicted == 0)).sum())
        self.abs_diff_sum += float(np.abs(pair[:, 0] - pair[:, 1]).sum())
        if self.sample is None:
            self.sample = Reservoir(SPEARMAN_SAMPLE_ROWS, SAMPLE_SEED)
        self.sample.add(pd.DataFrame({"champion": pair[:, 0], "shadow": pair[:, 1]}))

    def as_dict(self) -> dict[str, Any]:
        from scipy import stats

        flips = self.flips_to_churn + self.flips_to_stay
        spread = math.sqrt(self.m2[0] * self.m2[1])
        sample = self.sample.rows if self.sample is not None else None
        spearman = None
        if (
            sample is not None
            and sample["champion"].nunique() > 1
            and sample["shadow"].nunique() > 1
        ):
            spearman = float(stats.spearmanr(sample["champion"], sample["shadow"]).statistic)
        return {
            "rows": self.rows,
            # None when a model gives every row the same score: no correlation is defined
            "pearson": self.comoment / spread if spread > 0 else None,
            "spearman": spearman,
            "spearman_sample_rows": 0 if sample is None else len(sample),
            "flips": flips,
            "flip_share": flips / self.rows if self.rows else 0.0,
            "flips_to_churn": self.flips_to_churn,
            "flips_to_stay": self.flips_to_stay,
            "mean_abs_score_diff": self.abs_diff_sum / self.rows if self.rows else 0.0,
            "champion_mean_score": float(self.mean[0]),
            "shadow_mean_score": float(self.mean[1]),
        }


def render_agreement(record: dict[str, Any]) -> str:
    a, shadow = record["agreement"], record["models"]["shadow"]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    return (
        f"shadow {shadow['uri']} (version {shadow['version']})"
        f" vs champion (version {record['models']['champion']['version']}): "
        f"Pearson {fmt(a['pearson'])}, Spearman {fmt(a['spearman'])}, decision flips "
        f"{a['flips']} of {a['rows']} ({a['flip_share']:.2%}: {a['flips_to_churn']} to churn, "
        f"{a['flips_to_stay']} to stay)"
    )


# --- the scoring record -------------------------------------------------------------------------


def record_path(output: Path) -> Path:
    return output.with_name(output.name + RECORD_SUFFIX)


def scoring_record(
    models: dict[str, ModelRef],
    source: Path,
    output: Path,
    threshold: float,
    rows_scored: int,
    agreement: dict[str, Any] | None,
    scores_md5: str,
) -> dict[str, Any]:
    """What `evaluate-batch` needs to know about a scored file, and what a person auditing it
    would ask: which versions, which threshold, which input."""
    return {
        "kind": RECORD_KIND,
        "input": str(source),
        "batch_md5": lineage.file_md5(source),
        "output": str(output),
        "output_md5": lineage.file_md5(output),  # the file predict may replace without --force
        "threshold": threshold,
        "rows_scored": rows_scored,
        "scores_md5": scores_md5,  # of the score columns (scoring.score_text)
        "models": {
            role: {
                "uri": ref.uri,
                "name": ref.name,
                "version": ref.version,
                "model_md5": ref.model_md5,
                "columns": columns(role),
            }
            for role, ref in models.items()
        },
        "agreement": agreement,
    }


def read_record(path: Path, scored: Path) -> dict[str, Any]:
    if not scored.is_file():
        raise StageError(f"{scored}: scored file not found")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(
            f"{path}: no scoring record; `predictflow predict` writes it beside its output as "
            f"<output>{RECORD_SUFFIX}: pass it with --record if {scored} was renamed"
        ) from None
    except (OSError, ValueError) as err:
        raise StageError(f"{path}: not a readable scoring record ({err})") from None
    if not isinstance(record, dict) or record.get("kind") != RECORD_KIND:
        raise StageError(f"{path}: not a scoring record written by `predictflow predict`")
    missing = _missing_key(record)
    if missing:
        raise StageError(
            f"{path}: scoring record has no valid {missing!r} (edited or incomplete); score the "
            "batch again with `predictflow predict`"
        )
    return record


# What evaluate-batch reads from a record: key -> the type its value must have.
RECORD_KEYS: dict[str, type | tuple[type, ...]] = {
    "input": str,
    "batch_md5": str,
    "threshold": (int, float),
    "models": dict,
}
MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "uri": str,
    "name": (str, type(None)),
    "version": (str, type(None)),
    "columns": dict,
}


def _missing_key(record: dict[str, Any]) -> str | None:
    """The first key (dotted) that a record lacks or holds with the wrong type, or None."""
    for key, kind in RECORD_KEYS.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            return key
    if not 0.0 <= record["threshold"] <= 1.0:
        return "threshold"
    if "scores_md5" in record and not isinstance(record["scores_md5"], str):
        return "scores_md5"  # absent in records written before it existed
    models = record["models"]
    if "champion" not in models or not set(models) <= set(ROLES):
        return "models.champion"
    for role, model in models.items():
        if not isinstance(model, dict):
            return f"models.{role}"
        for key, kind in MODEL_KEYS.items():
            if not isinstance(model.get(key), kind):
                return f"models.{role}.{key}"
        for key in ("probability", "predicted"):
            if not isinstance(model["columns"].get(key), str):
                return f"models.{role}.columns.{key}"
    return None


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
    from predictflow.scoring import rows_digest, rows_hex, score_text

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
    from predictflow.drift import EXPERIMENT

    experiment = client.get_experiment_by_name(EXPERIMENT)
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


def _log(client: MlflowClient, run_id: str, metrics: dict[str, float | None], facts: dict) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
    client.log_batch(run_id, metrics=values)
    client.log_dict(run_id, facts, "facts.json")
    client.set_terminated(run_id)


def log_shadow_run(root: Path, record: dict[str, Any]) -> str:
    """One monitoring run per shadowed batch: both versions, the batch md5, the agreement."""
    import mlflow

    from predictflow.drift import monitoring_experiment

    client = mlflow.MlflowClient(tracking.tracking_uri(root))
    champion, shadow = record["models"]["champion"], record["models"]["shadow"]
    run = client.create_run(
        monitoring_experiment(root),
        run_name=f"shadow-v{shadow['version']}-vs-v{champion['version']}",
        tags={
            "kind": "shadow",
            "model_name": champion["name"] or "",
            "champion_uri": champion["uri"],
            "champion_version": str(champion["version"]),
            "shadow_uri": shadow["uri"],
            "shadow_version": str(shadow["version"]),
            "batch_path": record["input"],
            "batch_md5": record["batch_md5"],
            "threshold": str(record["threshold"]),
        },
    )
    agreement = record["agreement"]
    metrics = {
        k: agreement[k]
        for k in ("rows", "pearson", "spearman", "flip_share", "flips", "mean_abs_score_diff")
    }
    _log(client, run.info.run_id, metrics, record)
    return run.info.run_id


def log_realized(
    client: MlflowClient,
    root: Path,
    record: dict[str, Any],
    results: dict[str, dict[str, float]],
    facts: dict[str, Any],
) -> dict[str, str]:
    """A run per version (so successive cohorts chart as a history) and a version tag
    `realized.<cohort>` with the same numbers (so the version's page shows them)."""
    from predictflow.access import require_writes
    from predictflow.drift import monitoring_experiment

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
        _log(client, run.info.run_id, values, {**facts, "role": role, "metrics": values})
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


def check_outputs(output: Path, source: Path, force: bool = False) -> Path:
    """Refuse, before any scoring, scores or a record beside them that would replace the input,
    a DVC-tracked file (one DVC lookup for both) or a file of the user's: the record may
    replace only an earlier record, the scores only scores that record says predict wrote,
    unchanged since (its `output_md5`), unless `force`. Return the record's path."""
    io.check_output(output, source)
    path = record_path(output)  # a file name, now that `output` is known not to be a folder
    io.check_output(path, source)
    io.check_untracked({output: "the scores", path: "the scoring record"}, "give another --output")
    if path.exists():
        try:
            kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            kind = None
        if kind != RECORD_KIND:
            raise StageError(
                f"{path}: exists and is not a predictflow scoring record; predict writes its "
                "record there: move that file away or give another --output"
            )
    if not force and (output.exists() or output.is_symlink()) and not wrote_scores(output, path):
        raise StageError(
            f"{output}: exists and is not scores `predictflow predict` wrote (or was edited "
            "since): give another --output, or pass --force to replace it"
        )
    return path


def wrote_scores(output: Path, record: Path) -> bool:
    """Whether `output` is, byte for byte, the scores file the record beside it says predict
    wrote: the only file predict replaces without --force."""
    try:
        written = json.loads(record.read_text(encoding="utf-8"))
        return (
            written.get("kind") == RECORD_KIND
            and output.is_file()
            and written.get("output_md5") == lineage.file_md5(output)
        )
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def write_record(output: Path, record: dict[str, Any]) -> Path:
    path = record_path(output)
    io.write_json(path, record)
    return path


def predict_file(
    client: MlflowClient,
    model_uri: str,
    source: Path,
    output: Path,
    threshold: float | None,
    chunk_rows: int,
    quiet: bool = False,
    shadow_uri: str | None = None,
) -> tuple[dict[str, Any], list[str], str]:
    """`predictflow predict [--shadow]`: score `source` into `output` with the verified
    champion (and challenger), write the scoring record beside it, log the agreement as a
    churn-monitoring run; return the facts, the notes for the user and the text to print."""
    from mlflow.exceptions import MlflowException

    from predictflow import artifacts
    from predictflow.scoring import default_threshold, notes, score_csv

    refs: dict[str, ModelRef] = {}
    models = {}
    for role, uri in (("champion", model_uri), ("shadow", shadow_uri)):
        if uri is None:
            continue
        try:  # pinned to the version the alias names now: the record says exactly who scored
            refs[role] = resolve_model(client, uri)
        except (MlflowException, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise artifacts.ArtifactError(f"cannot load model {uri!r}: {first}") from None
        if role == "shadow":
            check_distinct(refs["champion"], refs["shadow"])
        models[role], proof = artifacts.load_with_proof(client, refs[role].pinned_uri, shown=uri)
        # What was verified, recorded: a runs:/ URI or a path gets the md5 its run vouched for.
        refs[role] = replace(refs[role], model_md5=proof.md5, run_id=proof.run_id)
        if role == "shadow":  # the same bytes however named (a path to the champion's folder)
            check_distinct(refs["champion"], refs["shadow"])
    if threshold is None:
        threshold = default_threshold(lineage.workspace_root())
    report = score_csv(
        models["champion"],
        source,
        output,
        threshold,
        chunk_rows,
        progress=False if quiet else None,
        shadow=models.get("shadow"),
        agreement=Agreement() if "shadow" in models else None,
    )
    agreement = report.agreement.as_dict() if report.agreement is not None else None
    record = scoring_record(
        refs,
        source,
        output,
        threshold,
        report.rows_scored,
        agreement,
        report.scores_digest.hexdigest(),
    )
    record["scores_rows_md5"] = report.rows_md5()  # order-free: see scoring.rows_digest
    if agreement is not None:
        record["run_id"] = log_shadow_run(tracking.store_root(), record)
    facts: dict[str, Any] = {
        "model": model_uri,
        "input": str(source),
        "output": str(output),
        "threshold": threshold,
        **report.as_dict(),
        "record": str(write_record(output, record)),
        "versions": {role: ref.version for role, ref in refs.items()},
    }
    text = f"scored {report.rows_scored} rows with {model_uri} -> {output}"
    if agreement is not None:
        facts.update(shadow=shadow_uri, agreement=agreement, run_id=record["run_id"])
        text += f"\n{render_agreement(record)}; run {record['run_id']}"
    return facts, notes(report), text


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
    scored_md5 = lineage.file_md5(source)
    facts: dict[str, Any] = {
        "cohort": cohort or scored_md5[:12],
        "input": str(source),
        "labels": str(labels) if labels else None,
        "scored_md5": scored_md5,
        "labels_md5": lineage.file_md5(labels) if labels else None,
        "rows": len(rows),
        "churn_rate": float(rows[TARGET].mean()),
        "threshold": record["threshold"],
        "versions": {role: m["version"] for role, m in record["models"].items()},
        "metrics": results,
    }
    check_versions(client, record, facts["cohort"])  # before anything is recorded
    facts["run_ids"] = log_realized(client, tracking.store_root(), record, results, facts)
    return facts
