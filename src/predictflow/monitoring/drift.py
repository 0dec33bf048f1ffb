"""`predictflow drift`: a scoring batch against the exact data a registered version learned from.

The reference is rebuilt from the version's lineage, not from the workspace: its `data_md5` tag
names the raw file in the DVC cache (or the default remote), which is cleaned by the data contract
and split by `data.split` (the function `prepare` runs) with the `base.seed` and
`prepare.test_size` its dvc.lock recorded; only the train part is kept. The batch is streamed in
chunks: histograms and category counts are accumulated per chunk, and the samples a KS test needs
come from a fixed-size seeded reservoir, so memory stays flat in the batch size.

Statistics are numpy/scipy rather than Evidently: Evidently 0.7.23 installs into the pinned set
without changing a pin (33 more packages), but `from evidently import Report` fails on pandas 3.1.1
(`infer_dtype_from_object` is gone), and `import evidently` alone is slow.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from predictflow.base.errors import StageError, machine_cause, machine_state
from predictflow.core import data
from predictflow.core.cleaning import clean
from predictflow.core.params import DriftParams, PrepareParams
from predictflow.core.rawfile import read_raw
from predictflow.core.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from predictflow.core.scoring import DEFAULT_CHUNK_ROWS, Model, churn_probability
from predictflow.lineage import evidence, tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = tracking.MONITORING_EXPERIMENT
SCORE = "churn_probability"
DRIFT_EXIT = 3
EPSILON = 1e-4  # share floor in PSI: an empty bin would otherwise make it infinite


@dataclass(frozen=True)
class Reference:
    """The cleaned train split a version learned from, and where it came from."""

    frame: pd.DataFrame
    data_md5: str
    seed: int
    test_size: float


@contextmanager
def pinned_data(workspace: Path, data_md5: str, what: str = "training data") -> Iterator[Path]:
    """The raw file with `data_md5`: from the local DVC cache, else the default remote.

    Read only: a file fetched from the remote goes to a temp dir, never into the workspace.
    Every copy is hashed before it is used: a corrupted cache object (DVC never re-checks one,
    and `dvc fetch` skips it as present) is passed over for the remote's copy, and named when
    there is none. `what` names the file in the error (`predictflow data diff` reads any data
    version here).
    """
    from dvc.config import NoRemoteError
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        cached = Path(repo.cache.local.oid_to_path(data_md5))
        corrupt = None
        if cached.is_file():
            actual = evidence.file_md5(cached)
            if actual == data_md5:
                yield cached
                return
            corrupt = (
                f"{what} md5 {data_md5}: the DVC cache copy {cached} is corrupt (its content "
                f"hashes to {actual}) and the default remote has no copy: delete it, then "
                "`dvc fetch` gets a good copy once one is pushed (`dvc fetch` skips a present "
                "object, corrupt or not)"
            )
        try:
            odb = repo.cloud.get_remote_odb()
        except NoRemoteError:
            odb = None
        remote_path = odb.oid_to_path(data_md5) if odb is not None else None
        if odb is None or not odb.fs.exists(remote_path):
            raise StageError(
                corrupt
                or f"{what} md5 {data_md5} is in neither the DVC cache nor the default "
                "remote; run `dvc push` on the machine that added it or trained on it"
            )
        with tempfile.TemporaryDirectory(prefix="predictflow-drift-") as tmp:
            local = Path(tmp) / "customers.csv"
            odb.fs.get_file(remote_path, str(local))
            if evidence.file_md5(local) != data_md5:
                raise StageError(
                    f"{what} md5 {data_md5}: the default remote's copy is corrupt too"
                    if corrupt
                    else f"{what} md5 {data_md5}: the default remote's copy is corrupt; "
                    "`dvc push` a good copy from the machine that added it"
                )
            yield local


def load_reference(workspace: Path, data_md5: str, split_params: dict[str, Any]) -> Reference:
    """Clean and split the pinned data exactly as `prepare` did for this version.

    `split_params` are the `prepare` stage's params from the dvc.lock logged at registration.
    """
    try:
        seed, test_size = int(split_params["base.seed"]), float(split_params["prepare.test_size"])
    except KeyError as err:
        raise StageError(
            f"the dvc.lock logged with this version records no {err.args[0]} for `prepare`; "
            "cannot rebuild its split"
        ) from None
    source = f"training data md5 {data_md5}"
    with pinned_data(workspace, data_md5) as path:
        frame, _ = clean(read_raw(path), source)
    train, _ = data.split(frame, PrepareParams(test_size=test_size), seed, source)
    return Reference(train, data_md5, seed, test_size)


def inner_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin boundaries at the reference's quantiles; the outer bins are open-ended, so no batch
    value falls outside them."""
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(quantiles)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def psi(reference: np.ndarray, batch: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    ref = np.clip(reference / max(reference.sum(), 1), EPSILON, None)
    new = np.clip(batch / max(batch.sum(), 1), EPSILON, None)
    return float(np.sum((new - ref) * np.log(new / ref)))


class Reservoir:
    """A uniform sample of at most `size` rows of a stream: each row draws a seeded random key
    and the rows with the smallest keys are kept (memory bounded by `size`)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.rows: pd.DataFrame | None = None

    def add(self, rows: pd.DataFrame) -> None:
        keys = np.concatenate([self.keys, self.rng.random(len(rows))])
        pool = rows if self.rows is None else pd.concat([self.rows, rows], ignore_index=True)
        keep = np.argsort(keys, kind="stable")[: self.size]
        self.keys, self.rows = keys[keep], pool.iloc[keep].reset_index(drop=True)


@dataclass
class BatchStats:
    """What is accumulated over the batch's chunks."""

    rows: int = 0
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    categories: dict[str, dict[str, int]] = field(default_factory=dict)


def _numeric_columns() -> tuple[str, ...]:
    return (*NUMERIC_FEATURES, SCORE)


def scan_batch(
    model: Model,
    source: Path,
    edges: dict[str, np.ndarray],
    reservoir: Reservoir,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> BatchStats:
    """Stream the batch: bin counts for numbers and scores, counts per category, a sample."""
    stats = BatchStats()
    for chunk in read_raw(source, chunksize=chunk_rows):
        rows, _ = clean(chunk, str(source), strict_categories=False, require_target=False)
        if rows.empty:
            continue
        rows = rows.assign(**{SCORE: churn_probability(model, rows)})
        stats.rows += len(rows)
        for column in _numeric_columns():
            counts = bin_counts(rows[column].to_numpy(dtype="float64"), edges[column])
            stats.numeric[column] = stats.numeric.get(column, 0) + counts
        for column in CATEGORICAL_FEATURES:
            counts = stats.categories.setdefault(column, {})
            for value, count in rows[column].value_counts().items():
                counts[str(value)] = counts.get(str(value), 0) + int(count)
        reservoir.add(rows.loc[:, list(_numeric_columns())])
    if stats.rows == 0:
        raise StageError(f"{source}: no usable rows to compare (every row was blank or dropped)")
    return stats


def shift_status(values: dict[str, float], params: DriftParams) -> str:
    """`drift` on a large shift (or a moderate one the test confirms, or too many unseen values);
    `warn` on a moderate shift or a significant test alone (large batches make tiny shifts
    significant, so a p-value alone never means drift)."""
    shift, p_value = values["psi"], values["p_value"]
    if (
        shift >= params.psi_drift
        or (shift >= params.psi_warn and p_value < params.p_value)
        or values.get("unseen_share", 0.0) > params.max_unseen_share
    ):
        return "drift"
    if shift >= params.psi_warn or p_value < params.p_value:
        return "warn"
    return "ok"


def compare(
    reference: pd.DataFrame,
    stats: BatchStats,
    sample: pd.DataFrame,
    edges: dict[str, np.ndarray],
    params: DriftParams,
) -> dict[str, dict[str, Any]]:
    """Per feature (and the model's score): the statistics and a status."""
    features: dict[str, dict[str, Any]] = {}
    for column in _numeric_columns():
        ref_values = reference[column].to_numpy(dtype="float64")
        values = {
            "kind": "score" if column == SCORE else "numeric",
            **numeric_shift(
                ref_values,
                stats.numeric[column],
                edges[column],
                sample[column].to_numpy(dtype="float64"),
            ),
            "reference_mean": float(ref_values.mean()),
        }
        features[column] = {**values, "status": shift_status(values, params)}
    for column in CATEGORICAL_FEATURES:
        ref_counts = {str(k): int(v) for k, v in reference[column].value_counts().items()}
        values = {
            "kind": "categorical",
            **categorical_shift(ref_counts, stats.categories[column], stats.rows),
        }
        features[column] = {**values, "status": shift_status(values, params)}
    return features


def numeric_shift(
    reference: np.ndarray, batch_counts: np.ndarray, edges: np.ndarray, batch_sample: np.ndarray
) -> dict[str, Any]:
    """PSI over the reference's quantile bins (`batch_counts` binned with `edges`) and a KS test
    of the reference against `batch_sample` (drift and data diff share these statistics)."""
    from scipy import stats as scipy_stats

    test = scipy_stats.ks_2samp(reference, batch_sample)
    return {
        "test": "ks",
        "psi": psi(bin_counts(reference, edges), batch_counts),
        "statistic": float(test.statistic),
        "p_value": float(test.pvalue),
    }


def categorical_shift(
    ref_counts: dict[str, int], batch_counts: dict[str, int], batch_rows: int
) -> dict[str, Any]:
    """PSI and a chi-square test over the union of categories, and the batch's share of
    categories the reference never had."""
    from scipy import stats as scipy_stats

    union = sorted(ref_counts.keys() | batch_counts.keys())
    ref_vec = np.array([ref_counts.get(c, 0) for c in union], dtype="float64")
    new_vec = np.array([batch_counts.get(c, 0) for c in union], dtype="float64")
    table = np.vstack([ref_vec, new_vec])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] > 1:
        test = scipy_stats.chi2_contingency(table)
        statistic, p_value = float(test.statistic), float(test.pvalue)
    else:  # one category on both sides: nothing can differ
        statistic, p_value = 0.0, 1.0
    unseen = {c: n for c, n in batch_counts.items() if c not in ref_counts}
    return {
        "test": "chi2",
        "psi": psi(ref_vec, new_vec),
        "statistic": statistic,
        "p_value": p_value,
        "unseen_share": sum(unseen.values()) / max(batch_rows, 1),
        "unseen": sorted(unseen),
    }


# A batch needs this many rows per PSI bin: below it, empty or doubled bins are chance, and a
# sample of the version's own training rows (50 of them) read as drift.
MIN_ROWS_PER_BIN = 20


def measure(
    model: Model,
    reference: Reference,
    source: Path,
    params: DriftParams,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> dict[str, Any]:
    """The drift report of one batch against one reference (plain JSON-able data)."""
    frame = reference.frame.assign(**{SCORE: churn_probability(model, reference.frame)})
    edges = {
        c: inner_edges(frame[c].to_numpy(dtype="float64"), params.bins) for c in _numeric_columns()
    }
    reservoir = Reservoir(params.sample_rows, reference.seed)
    stats = scan_batch(model, source, edges, reservoir, chunk_rows)
    assert reservoir.rows is not None  # scan_batch refuses a batch without rows
    needed = MIN_ROWS_PER_BIN * params.bins
    if stats.rows < needed:
        raise StageError(
            f"{source}: {stats.rows} scorable rows are too few to judge drift: PSI over "
            f"drift.bins {params.bins} needs at least {needed} ({MIN_ROWS_PER_BIN} per bin; "
            "fewer, and the training data itself reads as drift); score a larger batch"
        )
    features = compare(frame, stats, reservoir.rows, edges, params)
    drifted = sorted(name for name, f in features.items() if f["status"] == "drift")
    return {
        "verdict": "drift" if drifted else "ok",
        "drifted": drifted,
        "warned": sorted(name for name, f in features.items() if f["status"] == "warn"),
        "batch_rows": stats.rows,
        "reference_rows": len(frame),
        "sample_rows": len(reservoir.rows),
        "thresholds": params.model_dump(),
        "features": features,
    }


def render(facts: dict[str, Any]) -> str:
    """The report as a table for a person."""
    lines = [
        f"{'feature':<18} {'kind':<11} {'PSI':>7} {'test':>5} {'p-value':>9} {'unseen':>7}  status",
    ]
    for name, f in facts["features"].items():
        unseen = f"{f['unseen_share']:.1%}" if "unseen_share" in f else "-"
        lines.append(
            f"{name:<18} {f['kind']:<11} {f['psi']:>7.3f} {f['test']:>5} {f['p_value']:>9.2g} "
            f"{unseen:>7}  {f['status']}"
        )
    verdict = f"DRIFT in {', '.join(facts['drifted'])}" if facts["drifted"] else "no drift"
    lines.append(
        f"{facts['model']} (version {facts['version']}): {facts['batch_rows']} batch rows vs "
        f"{facts['reference_rows']} training rows (data md5 {facts['reference_data_md5']}): "
        f"{verdict}"
    )
    return "\n".join(lines)


def monitoring_experiment(root: Path) -> str:
    """The `churn-monitoring` experiment's id, created once (artifacts beside the store's)."""
    import mlflow

    client = mlflow.MlflowClient(tracking.tracking_uri(root))
    with tracking.store_lock(root):
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        location = (
            (tracking.store_dir(root) / "artifacts").as_uri()
            if tracking.uses_local_store(root)
            else None
        )
        return client.create_experiment(EXPERIMENT, artifact_location=location)


def log_run(root: Path, facts: dict[str, Any]) -> str:
    """One monitoring run: which model, which two datasets, every statistic; return its id."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking.tracking_uri(root))
    run = client.create_run(
        monitoring_experiment(root),
        run_name=f"drift-v{facts['version']}",
        tags={
            "model_name": tracking.MODEL_NAME,
            "model_version": str(facts["version"]),
            "batch_path": facts["input"],
            "batch_md5": facts["batch_md5"],
            "reference_data_md5": facts["reference_data_md5"],
            "verdict": facts["verdict"],
            "drifted": ",".join(facts["drifted"]),  # the report's drift section names them
        },
    )
    run_id = run.info.run_id
    metrics = {"batch_rows": facts["batch_rows"], "drifted_features": len(facts["drifted"])}
    for name, f in facts["features"].items():
        metrics[f"{name}.psi"] = f["psi"]
        metrics[f"{name}.p_value"] = f["p_value"]
        if "unseen_share" in f:
            metrics[f"{name}.unseen_share"] = f["unseen_share"]
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    client.log_dict(run_id, facts, "drift.json")
    client.set_terminated(run_id)
    return run_id


def check(
    client: MlflowClient,
    workspace: Path,
    model_ref: str,
    source: Path,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> dict[str, Any]:
    """`predictflow drift`: the batch against the training data of `model_ref`'s version,
    logged as a monitoring run; return the facts (`verdict` is "drift" or "ok")."""
    from predictflow.core.params import load_params
    from predictflow.lineage import artifacts, provenance, registry

    params = load_params(workspace / "params.yaml").drift
    version = registry.resolve(client, model_ref)
    data_md5 = version.tags.get("data_md5")
    if not data_md5:
        raise StageError(f"version {version.version} has no data_md5 tag; its data is unknown")
    # How `prepare` split the data: its params as the dvc.lock logged at registration hashed
    # them (the run records only what `train` reads).
    split_params = provenance.recorded_stages(client, version.run_id).get("prepare", {})
    model = artifacts.load_verified(
        client, f"models:/{tracking.MODEL_NAME}/{version.version}", shown=model_ref
    )
    reference = load_reference(workspace, data_md5, split_params.get("params", {}))
    facts = {
        "model": model_ref,
        "version": int(version.version),
        "input": str(source),
        "reference_data_md5": data_md5,
        **measure(model, reference, source, params, chunk_rows),
    }
    facts["batch_md5"] = evidence.file_md5(source)
    try:
        facts["run_id"] = log_run(tracking.store_root(), facts)
    except Exception as err:  # only a full or read-only store is turned into one line
        if (cause := machine_cause(err)) is None:
            raise
        raise StageError(
            f"drift measured (verdict: {facts['verdict']}) but not recorded: the tracking store "
            f"is {machine_state(cause)} ({cause}); free space or make it writable and run "
            "drift again"
        ) from None
    return facts
