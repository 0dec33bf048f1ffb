"""`predictflow drift`: a scoring batch against the exact data a registered version learned from.

The reference is rebuilt from the version's lineage, not from the workspace (`reference`). The
batch is streamed in chunks and compared feature by feature (`shift`), so memory stays flat in the
batch size; the verdict is logged as a run in `churn-monitoring`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.base.errors import StageError, machine_cause, machine_state
from predictflow.core.params import DriftParams
from predictflow.core.scoring import DEFAULT_CHUNK_ROWS, Model, churn_probability
from predictflow.lineage import evidence, names, tracking
from predictflow.monitoring.record import finish_run, monitoring_experiment
from predictflow.monitoring.reference import Reference, load_reference
from predictflow.monitoring.shift import (
    SCORE,
    Reservoir,
    compare,
    inner_edges,
    numeric_columns,
    scan_batch,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

DRIFT_EXIT = 3

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
        c: inner_edges(frame[c].to_numpy(dtype="float64"), params.bins) for c in numeric_columns()
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


def log_run(root: Path, facts: dict[str, Any]) -> str:
    """One monitoring run: which model, which two datasets, every statistic; return its id."""
    import mlflow

    client = mlflow.MlflowClient(tracking.tracking_uri(root))
    run = client.create_run(
        monitoring_experiment(root),
        run_name=f"drift-v{facts['version']}",
        tags={
            "model_name": names.MODEL_NAME,
            "model_version": str(facts["version"]),
            "batch_path": facts["input"],
            "batch_md5": facts["batch_md5"],
            "reference_data_md5": facts["reference_data_md5"],
            "verdict": facts["verdict"],
            "drifted": ",".join(facts["drifted"]),  # the report's drift section names them
        },
    )
    metrics = {"batch_rows": facts["batch_rows"], "drifted_features": len(facts["drifted"])}
    for name, f in facts["features"].items():
        metrics[f"{name}.psi"] = f["psi"]
        metrics[f"{name}.p_value"] = f["p_value"]
        if "unseen_share" in f:
            metrics[f"{name}.unseen_share"] = f["unseen_share"]
    finish_run(client, run.info.run_id, metrics, facts, "drift.json")
    return run.info.run_id


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
        client, f"models:/{names.MODEL_NAME}/{version.version}", shown=model_ref
    )
    reference = load_reference(
        workspace, data_md5, split_params.get("params", {}), version.tags.get("data_path")
    )
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
