"""Scoring and after: `predict` (with `--shadow`), `evaluate-batch` once labels arrive, `drift`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from predictflow.base.errors import UserError

if TYPE_CHECKING:
    pass

from predictflow.commands.common import (
    chunk_rows_option,
    emit,
    json_option,
    log,
    model_option,
    registry_client,
    workspace,
)


@click.command()
@model_option("Any MLflow model URI or version number.")
@click.option("--input", "input_", type=Path, required=True, help="CSV in the raw layout.")
@click.option("--output", type=Path, required=True, help="CSV to write the scores to.")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Label threshold (default: evaluate.threshold from params.yaml).",
)
@click.option(
    "--shadow",
    default=None,
    metavar="URI",
    help="A challenger scored on every row too: columns shadow_churn_probability and "
    "shadow_churn_predicted, agreement on stdout and as a churn-monitoring run.",
)
@chunk_rows_option("Rows scored")
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing --output that predict did not write (or that was edited since).",
)
@json_option
def predict(
    model: str,
    input_: Path,
    output: Path,
    threshold: float | None,
    shadow: str | None,
    chunk_rows: int,
    force: bool,
    as_json: bool,
) -> None:
    """Score a raw-layout CSV with a registered model (streams in chunks).

    Raw-layout CSV in (Churn optional, extra columns ignored), CSV out with customerID,
    churn_probability, churn_predicted. Beside it, OUTPUT.json records which versions scored
    it and with which threshold (what `evaluate-batch` reads when the labels arrive).
    """
    from predictflow.monitoring.record import check_outputs
    from predictflow.monitoring.shadow import predict_file

    # Refused before the model loads (seconds): values no user means, an output over the input.
    if threshold is not None and not 0.0 <= threshold <= 1.0:  # nan fails both
        raise UserError(f"--threshold {threshold}: must be a probability in [0, 1]")
    check_outputs(output, input_, force)  # the scores and the record beside them
    facts, notes, text = predict_file(
        registry_client(), model, input_, output, threshold, chunk_rows, as_json, shadow
    )
    for note in notes:
        log.warning(note)
    emit(facts, as_json, text)


@click.command("evaluate-batch")
@click.option("--input", "input_", type=Path, help="CSV written by `predictflow predict`.")
@click.option("--labels", type=Path, default=None, help="CSV with the labels (Churn: 0/1/Yes/No).")
@click.option(
    "--on", default="customerID", show_default=True, help="Column joining --labels to --input."
)
@click.option(
    "--record", type=Path, default=None, help="The record predict wrote (default: INPUT.json)."
)
@click.option("--cohort", default=None, help="Cohort name (default: the input's md5, 12 hex).")
@click.option("--history", is_flag=True, help="List the realized metrics of every cohort.")
@json_option
def evaluate_batch(
    input_: Path | None,
    labels: Path | None,
    on: str,
    record: Path | None,
    cohort: str | None,
    history: bool,
    as_json: bool,
) -> None:
    """Realized metrics of the versions that scored a batch, once its labels arrive.

    Reads a file `predict` wrote (with Churn filled in, or joined from --labels on --on) and
    the scoring record beside it (INPUT.json), computes each version's ROC AUC, PR AUC,
    accuracy, precision, recall (at the threshold used), Brier, rows and churn rate on that
    cohort, and records them as a churn-monitoring run per version and a version tag
    realized.<cohort>. --history lists every recorded cohort.
    """
    from predictflow.monitoring import realized

    if history:
        given = [
            f"--{n}"
            for n, v in (
                ("input", input_),
                ("labels", labels),
                ("record", record),
                ("cohort", cohort),
            )
            if v is not None
        ]
        if given:  # --history lists every cohort; it filters by none of these
            raise click.UsageError(
                f"--history lists every recorded cohort: drop {', '.join(given)}"
            )
        rows = realized.history(registry_client())
        emit({"history": rows}, as_json, realized.render_history(rows))
        return
    if input_ is None:
        raise click.UsageError("--input is required (or --history to list what was recorded)")
    facts = realized.evaluate_batch(registry_client(), input_, labels, on, record, cohort)
    emit(facts, as_json, realized.render_realized(facts))


@click.command()
@click.option("--input", "input_", type=Path, required=True, help="Batch CSV in the raw layout.")
@model_option("Version or models:/ URI.")
@chunk_rows_option("Batch rows read")
@json_option
def drift(input_: Path, model: str, chunk_rows: int, as_json: bool) -> None:
    """Compare a batch with the exact training data of a version (exit 3 on drift).

    The reference is the train split of the data the version's lineage pins (data_md5 -> DVC
    cache or remote -> the same cleaning and split as prepare), not the workspace's file. Per
    feature: PSI and a KS (numeric) or chi-square (categorical) test, the share of unseen
    categories, and the PSI of the model's scores; thresholds from the drift section of
    params.yaml. Logged as a run in the churn-monitoring experiment. Exit 0 no drift, 3 drift,
    1 error.
    """
    from predictflow.monitoring import drift as drift_

    facts = drift_.check(registry_client(), workspace(), model, input_, chunk_rows)
    emit(facts, as_json, drift_.render(facts))
    if facts["verdict"] == "drift":
        sys.exit(drift_.DRIFT_EXIT)
