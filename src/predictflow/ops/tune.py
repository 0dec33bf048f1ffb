"""`predictflow tune`: a hyperparameter grid run on DVC's own experiment queue, then ranked.

A thin front, not a second orchestrator: it queues one `dvc exp run --queue -S ...` per grid
point, starts DVC's workers, waits, and reads the results back with `dvc.api.exp_show`. Each
sweep gets a parent run in MLflow; the workers' train runs are its children (tag
`mlflow.parentRunId`), so the sweep can be compared in the UI.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from predictflow.core import paths
from predictflow.core.params import (
    ParamsError,
    TuneParams,
    describe,
    load_params_data,
    parse_params,
)
from predictflow.lineage.tracking import SWEEP_NAME_ENV, SWEEP_RUN_ENV
from predictflow.ops.dvc_queue import (  # TuneError: the CLI catches it as tune.TuneError
    STATUS_GRACE,
    TuneError,
    give_up,
    queue_view,
    refuse_foreign,
    run_dvc,
    wait,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def load_spec(path: Path) -> TuneParams:
    """The `tune:` section of a YAML file (params.yaml, or a spec file of the same shape), read
    as DVC reads params, so each point is queued with the value the file shows."""
    try:
        data = load_params_data(path)
    except ParamsError as err:
        raise TuneError(str(err)) from None
    if not isinstance(data.get("tune"), dict):
        raise TuneError(f"{path}: expected a `tune:` section (jobs, metric, grid)")
    try:
        return TuneParams.model_validate(data["tune"])
    except ValidationError as err:
        raise TuneError(describe(err, str(path), prefix="tune.")) from None


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, in a stable order (the first key varies slowest)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def check_grid(params: dict[str, Any], grid: dict[str, list[Any]], source: str) -> None:
    """Each grid value must make a valid params.yaml: catch `model.max_depth: 0` before
    queueing. Params have no cross-key rules, so checking each value alone covers every point."""
    for key, values in grid.items():
        section, _, name = key.partition(".")
        if not isinstance(params.get(section), dict) or not name:
            raise TuneError(f"{source}: tune.grid.{key}: not a params.yaml key (section.key)")
        for value in values:
            candidate = copy.deepcopy(params)
            candidate[section][name] = value
            try:
                parse_params(candidate, source=f"{source}: tune.grid")
            except ParamsError as err:
                raise TuneError(str(err)) from None


def queue_points(workspace: Path, names: list[str], points: list[dict[str, Any]]) -> None:
    """One `dvc exp run --queue` per point, named after the sweep (the names tell its tasks)."""
    for name, point in zip(names, points, strict=True):
        sets = [arg for key, value in point.items() for arg in ("-S", f"{key}={value}")]
        run_dvc(["exp", "run", "--queue", "--name", name, *sets], workspace)


def results(workspace: Path, names: list[str], keys: list[str], metric: str) -> list[dict]:
    """Grid params and held-out metrics of the sweep's experiments, best first."""
    import dvc.api

    rows = [r for r in dvc.api.exp_show(repo=str(workspace)) if r.get("Experiment") in names]
    ranked = sorted(rows, key=lambda r: -float(r.get(metric) or float("-inf")))
    shown = [*keys, "roc_auc", "pr_auc", "accuracy", "f1", "log_loss"]
    return [
        {
            "experiment": r["Experiment"],
            "model_md5": r.get(paths.MODEL.as_posix()),
            **{k: r.get(k) for k in shown},
        }
        for r in ranked
    ]


def runs_of(rows: list[dict], children: list, experiment_id: str) -> dict[str, str | None]:
    """The MLflow run holding each experiment's model: its own child run of the sweep, or, when
    DVC found the stages unchanged and trained nothing (a point equal to the baseline), the
    earlier run that logged the same model md5."""
    from predictflow.lineage.tracking import runs_with_model

    own = {run.data.tags.get("dvc_exp_name"): run.info.run_id for run in children}
    found: dict[str, str | None] = {}
    for row in rows:
        name = row["experiment"]
        if name in own:
            found[name] = own[name]
        else:
            earlier = runs_with_model(experiment_id, row["model_md5"]) if row["model_md5"] else []
            found[name] = earlier[0].info.run_id if earlier else None
    return found


def render(rows: list[dict], keys: list[str], metric: str) -> str:
    columns = ["experiment", *keys, "roc_auc", "pr_auc", "accuracy", "f1", "log_loss"]
    cells = [[_cell(row.get(c), c in keys) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    if rows:
        lines += [
            "",
            f"best by {metric}: {rows[0]['experiment']}",
            f"apply it: dvc exp apply {rows[0]['experiment']}",
        ]
    return "\n".join(lines)


def _cell(value: Any, is_param: bool) -> str:
    if isinstance(value, float):
        return f"{value:g}" if is_param else f"{value:.4f}"
    return str(value)


def sweep_name() -> str:
    return "tune-" + time.strftime("%Y%m%d-%H%M%S")


# `jobs` workers each train with as many OpenMP threads as there are cores, so threads outnumber
# cores; OpenMP's default spin-waiting then lets a descheduled thread stall the others at every
# barrier (a 0.3 s XGBoost fit took 16-49 s beside one other fit on 2 cores). Passive waiting
# sleeps instead: 0.4-0.9 s there, the same model bytes. A value the user set wins.
WORKER_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def worker_env(parent_run: str, sweep: str) -> dict[str, str]:
    """The environment DVC's queue workers (and so every stage they run) inherit."""
    return {**WORKER_DEFAULTS, **os.environ, SWEEP_RUN_ENV: parent_run, SWEEP_NAME_ENV: sweep}


def valid_sweep(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise TuneError(f"sweep name {name!r}: use letters, digits, '-' and '_'")
    return name


def close_orphans(client: MlflowClient, experiment_id: str, parent_id: str) -> list[str]:
    """Mark KILLED the sweep's child runs still RUNNING once no worker is left: a stage that
    was killed (by `--timeout`, or by the system) cannot end its own run, and the MLflow UI
    would show it running for ever. The ids marked."""
    running = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'",
    )
    for run in running:
        client.set_terminated(run.info.run_id, status="KILLED")
    return [run.info.run_id for run in running]


def sweep(
    workspace: Path, spec_path: Path | None, name: str | None, jobs: int | None, timeout: float
) -> tuple[dict[str, Any], str]:
    """`predictflow tune`: check the spec, queue the grid, run it under one MLflow parent run,
    rank the results; return the facts and the text. `facts["failed"]` lists the experiments
    that failed (the caller reports them after the ranking)."""
    from predictflow.lineage import tracking

    params_path = workspace / "params.yaml"
    spec_path = spec_path or params_path
    spec = load_spec(spec_path)
    baseline = load_params_data(params_path)
    parse_params(baseline, str(params_path))  # the baseline itself must be valid
    check_grid(baseline, spec.grid, str(spec_path))
    points = grid_points(spec.grid)
    name = valid_sweep(name or sweep_name())
    jobs = jobs or spec.jobs
    # Before any run is made or point queued: the queue must hold nothing but this sweep's.
    refuse_foreign(queue_view(workspace, timeout=STATUS_GRACE))
    import mlflow  # after the checks: a spec error is reported without the 3 s import

    # The store exists before the workers start: two processes creating it at once crash.
    experiment_id = tracking.connect(tracking.store_root())
    client = mlflow.MlflowClient()
    parent = client.create_run(  # host and pid: doctor can tell a killed sweep from a live one
        experiment_id,
        run_name=name,
        tags={
            "predictflow.sweep": name,
            "predictflow.grid": json.dumps(spec.grid),
            **tracking.process_tags(),
        },
    )
    parent_id = parent.info.run_id
    names = [f"{name}-{index:02d}" for index in range(1, len(points) + 1)]
    status, settled = "FAILED", False  # settled: no worker can still be running a stage
    try:
        log.info("tune: queueing %d experiments (%s-01 ...)", len(points), name)
        queue_points(workspace, names, points)
        run_dvc(
            ["queue", "start", "-j", str(jobs)],
            workspace,
            env=worker_env(parent_id, name),
            timeout=STATUS_GRACE,
        )
        deadline = time.monotonic() + timeout
        try:
            states = wait(workspace, names, timeout)
            settled = True
        except TuneError as err:
            settled, line = give_up(workspace, names, err, deadline)
            raise TuneError(line) from None
        rows = results(workspace, names, list(spec.grid), spec.metric)
        children = [  # a task another user queued meanwhile is not this sweep's
            child
            for child in client.search_runs(
                [experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
            )
            if child.data.tags.get("dvc_exp_name") in names
        ]
        failed = sorted(n for n, s in states.items() if s != "Success")
        runs = runs_of(rows, children, experiment_id)
        if rows and rows[0].get(spec.metric) is not None:
            client.log_metric(parent_id, f"best_{spec.metric}", float(rows[0][spec.metric]))
            client.set_tag(parent_id, "predictflow.best_experiment", rows[0]["experiment"])
        status = "FINISHED" if not failed else "FAILED"
    finally:
        if status != "FINISHED" and settled:
            killed = close_orphans(client, experiment_id, parent_id)
            if killed:
                log.info("tune: marked %d unfinished child run(s) KILLED", len(killed))
        client.set_terminated(parent_id, status=status)
    facts = {
        "sweep": name,
        "parent_run": parent_id,
        "jobs": jobs,
        "metric": spec.metric,
        "experiments": len(names),
        "failed": failed,
        "mlflow_runs": len(children),
        "runs": runs,
        "ranking": rows,
        "apply": f"dvc exp apply {rows[0]['experiment']}" if rows else None,
    }
    own = {child.info.run_id for child in children}
    reused = {point: run for point, run in runs.items() if run not in own}
    text = render(rows, list(spec.grid), spec.metric) + (
        f"\nMLflow: {len(children)} run(s) under parent run {parent_id} ({name})"
    )
    if reused:  # DVC trained nothing for a point equal to the committed baseline
        text += "; unchanged points reuse an earlier run: " + ", ".join(
            f"{point} -> {run or 'none found'}" for point, run in sorted(reused.items())
        )
    return facts, text
