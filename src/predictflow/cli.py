"""`predictflow`: what DVC and MLflow don't do by themselves.

Every subcommand exits 0 on success and 1 with one `predictflow: error: ...` line on a user
mistake; `--json` prints machine-readable facts where a command reports some.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from predictflow import io, lineage, synth, tracking
from predictflow.params import ParamsError, load_params
from predictflow.stage import USER_ERRORS, StageError, configure_logging

log = logging.getLogger("predictflow")

RAW_DATA = Path("data/customers.csv")


def _print(facts: dict, as_json: bool, text: str) -> None:
    print(json.dumps(facts, indent=2, sort_keys=True) if as_json else text)


def cmd_data_synth(args: argparse.Namespace) -> None:
    io.check_output(args.out)
    tracker = None if args.force else io.dvc_tracker(args.out)
    if tracker:
        raise StageError(
            f"{args.out}: tracked by DVC ({tracker}); synthetic rows would replace it: "
            "write them elsewhere, or pass --force to replace it"
        )
    try:
        synth.write_csv(args.out, rows=args.rows, seed=args.seed)
    except ValueError as err:
        raise StageError(str(err)) from None
    facts = {
        "path": str(args.out),
        "rows": args.rows,
        "seed": args.seed,
        "md5": lineage.file_md5(args.out),
    }
    _print(facts, args.json, f"wrote {args.rows} rows to {args.out} (md5 {facts['md5']})")


def ensure_raw_data(root: Path, data: Path) -> str:
    """Make `data` match its `.dvc` pin: keep it, `dvc pull` it or regenerate it; return how.

    Only a missing file is restored. A file that differs from the pin may be the user's own work
    (edited, or their real data not yet `dvc add`ed), so it is never replaced.
    """
    dvc_file = data.with_name(data.name + ".dvc")
    pinned = lineage.pinned_md5(root / dvc_file)
    path = root / data
    if os.path.lexists(path):
        _check_pinned(path, data, dvc_file, pinned)
        return "present"
    pull = subprocess.run(
        [sys.executable, "-m", "dvc", "pull", "-q", str(dvc_file)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if os.path.lexists(path):  # whatever pull left, it is checked, never replaced
        _check_pinned(path, data, dvc_file, pinned)
        return "pulled"
    log.debug("dvc pull exited %d: %s", pull.returncode, pull.stderr.strip())
    log.info("default DVC remote does not have md5 %s; bootstrapping from the generator", pinned)
    with io.atomic_path(path) as temp:  # renamed into place only if its md5 is the pin
        synth.write_csv(temp)
        actual = lineage.file_md5(temp)
        if actual != pinned:
            raise StageError(
                f"{data}: regenerated md5 {actual} does not match the pin {pinned} in "
                f"{dvc_file}, and the default DVC remote does not have it; nothing was written: "
                "run `dvc pull` with access to the remote that holds it"
            )
    return "generated"


def _check_pinned(path: Path, data: Path, dvc_file: Path, pinned: str) -> None:
    """Refuse, with what differs and what to do, a raw file whose bytes are not the pin."""
    if not path.exists():
        raise StageError(
            f"{data}: a symlink to {os.readlink(path)}, which does not exist; remove the link, "
            "then run `predictflow data ensure` again"
        )
    if not path.is_file():
        raise StageError(
            f"{data}: not a regular file, but {dvc_file} pins a file (md5 {pinned}); move it "
            "away, then run `predictflow data ensure` again"
        )
    try:
        actual = lineage.file_md5(path)
    except OSError as err:
        raise StageError(f"{data}: cannot read it ({err.strerror})") from None
    if actual != pinned:
        raise StageError(
            f"{data}: md5 {actual} differs from md5 {pinned} pinned in {dvc_file}; "
            f"nothing was changed: `dvc add {data}` adopts your file, "
            f"`dvc checkout --force {data}` drops it for the pinned version"
        )


def cmd_data_ensure(args: argparse.Namespace) -> None:
    how = ensure_raw_data(lineage.workspace_root(), args.path)
    _print({"path": str(args.path), "source": how}, args.json, f"{args.path}: {how}")


DEFAULT_MODEL = f"models:/{tracking.MODEL_NAME}@production"


def _registry_client():
    from predictflow import access, registry

    root = tracking.store_root()
    uri = tracking.reach(tracking.tracking_uri(root))  # bounded: one line, not minutes of retries
    access.check_credentials(uri)
    return registry.client_for(root)


def _default_threshold() -> float:
    """`evaluate.threshold` from the workspace's params.yaml, so predict labels like evaluate."""
    try:
        return load_params(lineage.workspace_root() / "params.yaml").evaluate.threshold
    except ParamsError:
        return 0.5


def _check_predict_args(args: argparse.Namespace) -> None:
    """Refuse values no user means, and an output that would replace the input, before the
    model is loaded (which takes seconds)."""
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:  # nan fails both
        raise StageError(f"--threshold {args.threshold}: must be a probability in [0, 1]")
    _check_chunk_rows(args.chunk_rows)
    io.check_output(args.output, args.input)
    io.check_output(Path(f"{args.output}.json"), args.input)  # the scoring record beside it


CHUNK_ROWS = 100_000  # scoring.DEFAULT_CHUNK_ROWS, without importing pandas for `--help`


def _add_chunk_rows(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=CHUNK_ROWS,
        help=f"{what} at a time: memory stays flat (default {CHUNK_ROWS})",
    )


def _check_chunk_rows(chunk_rows: int) -> None:
    if chunk_rows < 1:
        raise StageError(f"--chunk-rows {chunk_rows}: must be at least 1")


def cmd_predict(args: argparse.Namespace) -> None:
    _check_predict_args(args)
    from mlflow.exceptions import MlflowException

    from predictflow import monitoring, registry
    from predictflow.scoring import score_csv

    client = _registry_client()
    refs, models = {}, {}
    for role, uri in (("champion", args.model), ("shadow", args.shadow)):
        if uri is None:
            continue
        try:  # pinned to the version the alias names now: the record says exactly who scored
            refs[role] = monitoring.resolve_model(client, uri)
            if role == "shadow":
                monitoring.check_distinct(refs["champion"], refs["shadow"])
            models[role] = registry.load_verified(client, refs[role].pinned_uri)
        except (MlflowException, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StageError(f"cannot load model {uri!r}: {first}") from None
    threshold = args.threshold if args.threshold is not None else _default_threshold()
    report = score_csv(
        models["champion"],
        args.input,
        args.output,
        threshold,
        args.chunk_rows,
        progress=False if args.json else None,
        shadow=models.get("shadow"),
    )
    agreement = report.agreement.as_dict() if report.agreement is not None else None
    record = monitoring.scoring_record(
        refs, args.input, args.output, threshold, report.rows_scored, agreement
    )
    if agreement is not None:
        record["run_id"] = monitoring.log_shadow_run(tracking.store_root(), record)
    facts = {
        "model": args.model,
        "input": str(args.input),
        "output": str(args.output),
        "threshold": threshold,
        **report.as_dict(),
        "record": str(monitoring.write_record(args.output, record)),
        "versions": {role: ref.version for role, ref in refs.items()},
    }
    if agreement is not None:
        facts.update(shadow=args.shadow, agreement=agreement, run_id=record["run_id"])
    notes = []
    if report.clean.unseen_categories:
        unseen = ", ".join(f"{c} ({n})" for c, n in report.clean.unseen_categories.items())
        notes.append(f"scored rows with categories unseen in training: {unseen}")
    if report.clean.rows_dropped_total_charges:
        notes.append(
            f"{report.clean.rows_dropped_total_charges} row(s) skipped: blank "
            "TotalCharges at tenure > 0"
        )
    if report.clean.extra_columns:
        notes.append(f"ignored column(s): {', '.join(report.clean.extra_columns)}")
    for note in notes:
        log.warning(note)
    text = f"scored {report.rows_scored} rows with {args.model} -> {args.output}"
    if agreement is not None:
        text += f"\n{monitoring.render_agreement(record)}; run {record['run_id']}"
    _print(facts, args.json, text)


def cmd_evaluate_batch(args: argparse.Namespace) -> None:
    from predictflow import monitoring

    if args.history:
        rows = monitoring.history(_registry_client())
        _print({"history": rows}, args.json, monitoring.render_history(rows))
        return
    if args.input is None:
        raise StageError("--input is required (or --history to list what was recorded)")
    if args.cohort is not None:
        monitoring.check_cohort(args.cohort)
    record = monitoring.read_record(args.record or monitoring.record_path(args.input), args.input)
    cohort = monitoring.labelled_cohort(args.input, record, args.labels, args.on)
    results = monitoring.evaluate_cohort(cohort, record)
    scored_md5 = lineage.file_md5(args.input)
    facts = {
        "cohort": args.cohort or scored_md5[:12],
        "input": str(args.input),
        "labels": str(args.labels) if args.labels else None,
        "scored_md5": scored_md5,
        "labels_md5": lineage.file_md5(args.labels) if args.labels else None,
        "rows": len(cohort),
        "churn_rate": float(cohort["Churn"].mean()),
        "threshold": record["threshold"],
        "versions": {role: m["version"] for role, m in record["models"].items()},
        "metrics": results,
    }
    client = _registry_client()
    monitoring.check_versions(client, record, facts["cohort"])  # before anything is recorded
    facts["run_ids"] = monitoring.log_realized(
        client, tracking.store_root(), record, results, facts
    )
    _print(facts, args.json, monitoring.render_realized(facts))


def cmd_drift(args: argparse.Namespace) -> None:
    _check_chunk_rows(args.chunk_rows)
    from mlflow.exceptions import MlflowException

    from predictflow import drift, provenance, registry

    client = _registry_client()
    workspace = lineage.workspace_root()
    params = load_params(workspace / "params.yaml").drift
    version = registry.resolve(client, args.model)
    data_md5 = version.tags.get("data_md5")
    if not data_md5:
        raise StageError(f"version {version.version} has no data_md5 tag; its data is unknown")
    try:
        # How `prepare` split the data: its params as the dvc.lock logged at registration hashed
        # them (the run records only what `train` reads).
        split_params = provenance.recorded_stages(client, version.run_id).get("prepare", {})
        model = registry.load_verified(client, f"models:/{tracking.MODEL_NAME}/{version.version}")
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StageError(f"cannot load model {args.model!r}: {first}") from None
    reference = drift.load_reference(workspace, data_md5, split_params.get("params", {}))
    facts = {
        "model": args.model,
        "version": int(version.version),
        "input": str(args.input),
        "reference_data_md5": data_md5,
        **drift.measure(model, reference, args.input, params, args.chunk_rows),
    }
    facts["batch_md5"] = lineage.file_md5(args.input)
    facts["run_id"] = drift.log_run(tracking.store_root(), facts)
    _print(facts, args.json, drift.render(facts))
    if facts["verdict"] == "drift":
        sys.exit(drift.DRIFT_EXIT)


def cmd_promote(args: argparse.Namespace) -> None:
    from predictflow import promotion, registry

    client = _registry_client()
    workspace = lineage.workspace_root()
    params = load_params(workspace / "params.yaml")
    version = registry.resolve(client, args.version)
    try:
        outcome = promotion.promote(
            client,
            tracking.store_root(),
            workspace,
            version,
            args.to,
            args.reason,
            promotion.Gates(
                min_roc_auc=params.registry.min_roc_auc,
                min_test_rows=params.registry.min_test_rows,
                min_test_class_rows=params.registry.min_test_class_rows,
                max_drop=params.promote.max_roc_auc_drop,
            ),
            allow_dirty=args.allow_dirty,
        )
    except promotion.PromotionRefused as err:
        raise StageError(str(err)) from None
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
    _print(facts, args.json, text)


def cmd_lineage(args: argparse.Namespace) -> None:
    from predictflow import provenance, registry

    client = _registry_client()
    version = registry.resolve(client, args.model_uri)
    view = provenance.facts(client, version, lineage.workspace_root())
    _print(view, args.json, provenance.render(view))


def cmd_reproduce(args: argparse.Namespace) -> None:
    import time

    from predictflow import provenance, registry
    from predictflow.reproduce import ReproduceError, reproduce

    client = _registry_client()
    version = registry.resolve(client, args.model_uri)
    workspace = lineage.workspace_root()
    view = provenance.facts(client, version, workspace)
    log.info(
        "rebuilding version %s from commit %s and data md5 %s ...",
        view["version"],
        (view["code"]["git_commit"] or "?")[:12],
        view["data"]["md5"],
    )
    started = time.monotonic()
    try:
        checks = reproduce(view, workspace, keep=args.keep)
    except ReproduceError as err:
        raise StageError(str(err)) from None
    matched = all(check.matches for check in checks)
    facts = {
        "version": view["version"],
        "git_commit": view["code"]["git_commit"],
        "data_md5": view["data"]["md5"],
        "matches": matched,
        "seconds": round(time.monotonic() - started, 1),
        "stages": {
            c.stage: {
                "matches": c.matches,
                "differing": {
                    path: {"recorded": rec, "rebuilt": new}
                    for path, (rec, new) in c.differing.items()
                },
            }
            for c in checks
        },
    }
    lines = []
    for check in checks:
        lines.append(f"  {'match' if check.matches else 'DIFFERS':<8}{check.stage}")
        lines += [
            f"          {path}: recorded {rec}, rebuilt {new}"
            for path, (rec, new) in check.differing.items()
        ]
    verdict = (
        f"version {view['version']} reproduced byte for byte"
        if matched
        else f"version {view['version']} did NOT reproduce"
    )
    _print(facts, args.json, "\n".join([*lines, verdict]))
    if not matched:
        sys.exit(1)


def cmd_report(args: argparse.Namespace) -> None:
    from predictflow import report

    io.check_output(args.output)
    view = report.collect(_registry_client(), lineage.workspace_root(), args.version)
    size = report.write(view, args.output)
    facts = {"output": str(args.output), "bytes": size, **view.facts()}
    for warning in facts["warnings"]:
        log.warning(warning)
    versions = ", ".join(map(str, facts["versions"]))
    _print(
        facts,
        args.json,
        f"wrote {args.output} ({size // 1024} KiB): {facts['model']} versions {versions}, "
        f"details for version {facts['selected']}",
    )


def cmd_doctor(args: argparse.Namespace) -> None:
    from predictflow import doctor

    findings = doctor.run_checks(
        lineage.workspace_root(), tracking.store_root(), fix=args.fix, remote=args.remote
    )
    _print({"findings": [f.as_dict() for f in findings]}, args.json, doctor.render(findings))
    if any(f.status == "problem" and not f.fixed for f in findings):
        sys.exit(1)


def cmd_tune(args: argparse.Namespace) -> None:
    from predictflow import tune
    from predictflow.params import load_params_data, parse_params

    workspace = lineage.workspace_root()
    spec_path = args.spec or workspace / "params.yaml"
    spec = tune.load_spec(spec_path)
    baseline = load_params_data(workspace / "params.yaml")
    parse_params(baseline, str(workspace / "params.yaml"))  # the baseline itself must be valid
    tune.check_grid(baseline, spec.grid, str(spec_path))
    points = tune.grid_points(spec.grid)
    sweep = tune.valid_sweep(args.name or tune.sweep_name())
    jobs = args.jobs or spec.jobs
    import mlflow  # after the checks: a spec error is reported without the 3 s import

    # The store exists before the workers start: two processes creating it at once crash.
    experiment_id = tracking.connect(tracking.store_root())
    client = mlflow.MlflowClient()
    parent = client.create_run(
        experiment_id,
        run_name=sweep,
        tags={"predictflow.sweep": sweep, "predictflow.grid": json.dumps(spec.grid)},
    )
    parent_id = parent.info.run_id
    status = "FAILED"
    try:
        log.info("tune: queueing %d experiments (%s-01 ...)", len(points), sweep)
        names = tune.queue_points(workspace, sweep, points)
        tune.run_dvc(
            ["queue", "start", "-j", str(jobs)], workspace, env=tune.worker_env(parent_id, sweep)
        )
        states = tune.wait(workspace, names, args.timeout)
        rows = tune.results(workspace, names, list(spec.grid), spec.metric)
        children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
        failed = sorted(n for n, s in states.items() if s != "Success")
        runs = tune.runs_of(rows, children, experiment_id)
        if rows and rows[0].get(spec.metric) is not None:
            client.log_metric(parent_id, f"best_{spec.metric}", float(rows[0][spec.metric]))
            client.set_tag(parent_id, "predictflow.best_experiment", rows[0]["experiment"])
        status = "FINISHED" if not failed else "FAILED"
    finally:
        client.set_terminated(parent_id, status=status)
    facts = {
        "sweep": sweep,
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
    reused = {name: run for name, run in runs.items() if run not in own}
    text = tune.render(rows, list(spec.grid), spec.metric) + (
        f"\nMLflow: {len(children)} run(s) under parent run {parent_id} ({sweep})"
    )
    if reused:  # DVC trained nothing for a point equal to the committed baseline
        text += "; unchanged points reuse an earlier run: " + ", ".join(
            f"{name} -> {run or 'none found'}" for name, run in sorted(reused.items())
        )
    _print(facts, args.json, text)
    if failed:
        raise StageError(
            f"{len(failed)} experiment(s) failed: {', '.join(failed)}; see `dvc queue logs NAME`"
        )


def cmd_store_migrate(args: argparse.Namespace) -> None:
    from predictflow import migrate

    source = args.source or tracking.default_uri(tracking.store_root())
    try:
        summary = migrate.migrate(source, args.to)
    except migrate.MigrationError as err:
        raise StageError(str(err)) from None
    _print(summary.as_dict(), args.json, summary.render())


def cmd_access(args: argparse.Namespace) -> None:
    import getpass

    from predictflow import access

    uri = tracking.tracking_uri(tracking.store_root())
    if not access.is_server(uri):
        raise StageError(
            f"{uri} is a local store: users and roles live on a team server; set "
            "MLFLOW_TRACKING_URI to it (and an admin's MLFLOW_TRACKING_USERNAME / PASSWORD)"
        )
    me = access.caller(uri)
    if not me.verified:
        raise StageError(
            f"{access.server_of(uri)} runs without authentication, so it has no users or roles: "
            "restart it with `make server` (auth is on unless PREDICTFLOW_INSECURE_NO_AUTH=1)"
        )
    if args.access_command == "whoami":
        role = "admin" if me.is_admin else access.role_of(uri, me.name)
        facts = {
            "server": access.server_of(uri),
            "user": me.name,
            "verified": me.verified,
            "role": role,
        }
        _print(facts, args.json, f"{me.name} on {facts['server']}: {role}")
        return
    if args.access_command == "add":
        password = (
            sys.stdin.readline().rstrip("\n")
            if args.password_stdin
            else getpass.getpass(f"password for {args.user}: ")
        )
        facts = access.add_user(uri, args.user, password, args.role)
    else:
        facts = access.grant(uri, args.user, args.role)
    _print(facts, args.json, f"{args.user}: {args.role} on {access.server_of(uri)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predictflow",
        description="Churn-model lineage: what DVC and MLflow don't do by themselves.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="raw data: generate or restore it")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth_cmd = data_commands.add_parser(
        "synth", help="write a synthetic data set in the raw layout (byte-identical per arguments)"
    )
    synth_cmd.add_argument(
        "--rows",
        type=int,
        default=synth.DEFAULT_ROWS,
        help=f"number of customers (default {synth.DEFAULT_ROWS})",
    )
    synth_cmd.add_argument(
        "--seed",
        type=int,
        default=synth.DEFAULT_SEED,
        help=f"random seed (default {synth.DEFAULT_SEED})",
    )
    synth_cmd.add_argument(
        "--out", type=Path, default=RAW_DATA, help=f"output CSV (default {RAW_DATA})"
    )
    synth_cmd.add_argument(
        "--force", action="store_true", help="replace the file even if DVC tracks it"
    )
    synth_cmd.add_argument("--json", action="store_true", help="print facts as JSON")
    synth_cmd.set_defaults(func=cmd_data_synth)

    ensure = data_commands.add_parser(
        "ensure",
        help="restore missing raw data to its .dvc pin: dvc pull, else regenerate it; "
        "never replaces a file that differs from the pin",
    )
    ensure.add_argument(
        "--path", type=Path, default=RAW_DATA, help=f"DVC-tracked raw file (default {RAW_DATA})"
    )
    ensure.add_argument("--json", action="store_true", help="print facts as JSON")
    ensure.set_defaults(func=cmd_data_ensure)

    predict = commands.add_parser(
        "predict",
        help="score a raw-layout CSV with a registered model (streams in chunks)",
        description="Batch scoring: raw-layout CSV in (Churn optional, extra columns ignored), "
        "CSV out with customerID, churn_probability, churn_predicted.",
    )
    predict.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"any MLflow model URI (default {DEFAULT_MODEL})"
    )
    predict.add_argument("--input", type=Path, required=True, help="CSV in the raw layout")
    predict.add_argument("--output", type=Path, required=True, help="CSV to write the scores to")
    predict.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="label threshold (default: evaluate.threshold from params.yaml)",
    )
    predict.add_argument(
        "--shadow",
        default=None,
        metavar="URI",
        help="a challenger scored on every row too: columns shadow_churn_probability and "
        "shadow_churn_predicted, agreement on stdout and as a churn-monitoring run",
    )
    _add_chunk_rows(predict, "rows scored")
    predict.add_argument("--json", action="store_true", help="print facts as JSON")
    predict.set_defaults(func=cmd_predict)

    evaluate_batch = commands.add_parser(
        "evaluate-batch",
        help="realized metrics of the versions that scored a batch, once its labels arrive",
        description="Reads a file `predict` wrote (with Churn filled in, or joined from --labels "
        "on --on) and the scoring record beside it (<output>.json), computes each version's "
        "ROC AUC, PR AUC, accuracy, precision, recall (at the threshold used), Brier, rows and "
        "churn rate on that cohort, and records them as a churn-monitoring run per version "
        "and a version tag realized.<cohort>. --history lists every recorded cohort.",
    )
    evaluate_batch.add_argument("--input", type=Path, help="CSV written by `predictflow predict`")
    evaluate_batch.add_argument(
        "--labels", type=Path, default=None, help="CSV with the labels (Churn: 0/1/Yes/No)"
    )
    evaluate_batch.add_argument(
        "--on", default="customerID", help="column joining --labels to --input (default customerID)"
    )
    evaluate_batch.add_argument(
        "--record",
        type=Path,
        default=None,
        help="the scoring record predict wrote (default: <input>.json)",
    )
    evaluate_batch.add_argument(
        "--cohort", default=None, help="cohort name (default: the input's md5, first 12 hex)"
    )
    evaluate_batch.add_argument(
        "--history", action="store_true", help="list the realized metrics of every cohort"
    )
    evaluate_batch.add_argument("--json", action="store_true", help="print facts as JSON")
    evaluate_batch.set_defaults(func=cmd_evaluate_batch)

    drift_cmd = commands.add_parser(
        "drift",
        help="compare a batch with the exact training data of a version (exit 3 on drift)",
        description="The reference is the train split of the data the version's lineage pins "
        "(data_md5 -> DVC cache or remote -> the same cleaning and split as prepare), not the "
        "workspace's file. Per feature: PSI and a KS (numeric) or chi-square (categorical) test, "
        "the share of unseen categories, and the PSI of the model's scores; thresholds from "
        "the drift section of params.yaml. Logged as a run in the churn-monitoring experiment. "
        "Exit 0 no drift, 3 drift, 1 error.",
    )
    drift_cmd.add_argument("--input", type=Path, required=True, help="batch CSV in the raw layout")
    drift_cmd.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"version or models:/ URI (default {DEFAULT_MODEL})"
    )
    _add_chunk_rows(drift_cmd, "batch rows read")
    drift_cmd.add_argument("--json", action="store_true", help="print facts as JSON")
    drift_cmd.set_defaults(func=cmd_drift)

    promote = commands.add_parser(
        "promote",
        help="move alias staging/production to a version after its gates pass",
        description="Staging needs the quality gate (register.min_roc_auc). Production needs "
        "staging first, complete lineage tags, a clean tree, a committed dvc.lock pinning the "
        "model (sealed), and a held-out ROC AUC at least the current production version's "
        "(minus promote.max_roc_auc_drop) on the current evaluation split.",
    )
    promote.add_argument("version", help="version number or models:/ URI")
    promote.add_argument("--to", required=True, choices=("staging", "production"))
    promote.add_argument("--reason", default="", help="why: kept in the audit trail")
    promote.add_argument(
        "--allow-dirty",
        action="store_true",
        help="accept a version trained from a dirty tree or not yet sealed",
    )
    promote.add_argument("--json", action="store_true", help="print facts as JSON")
    promote.set_defaults(func=cmd_promote)

    lineage_cmd = commands.add_parser(
        "lineage",
        help="which run and which data produced a registered version",
    )
    lineage_cmd.add_argument(
        "model_uri",
        nargs="?",
        default=None,
        help="models:/churn-predictor@production, models:/churn-predictor/3 "
        "or 3 (default: the newest registered version)",
    )
    lineage_cmd.add_argument("--json", action="store_true", help="print facts as JSON")
    lineage_cmd.set_defaults(func=cmd_lineage)

    reproduce = commands.add_parser(
        "reproduce",
        help="rebuild a version from its recorded code and data; compare the bytes",
        description="In a temporary clone at the recorded commit, with the recorded params and "
        "data md5 (from the DVC cache or remote), run the pipeline up to train with a throw-away "
        "MLflow store, and compare every stage's outputs with the recorded hashes. Exit 0 only "
        "on a full match. Your workspace and registry are not touched.",
    )
    reproduce.add_argument(
        "model_uri",
        nargs="?",
        default=None,
        help="version or models:/ URI (default: the newest registered version)",
    )
    reproduce.add_argument("--keep", action="store_true", help="keep the temporary clone")
    reproduce.add_argument("--json", action="store_true", help="print facts as JSON")
    reproduce.set_defaults(func=cmd_reproduce)

    report_cmd = commands.add_parser(
        "report",
        help="write one self-contained HTML page: versions, lineage, stage graph, plots",
        description="Every registered version side by side (aliases, promotions, params, "
        "held-out metrics, data md5, git commit), the DVC stage graph with the out hashes and "
        "the evaluation plots of one version. Views offline: no scripts, fonts or images by URL.",
    )
    report_cmd.add_argument(
        "--output",
        type=Path,
        default=Path("reports/lineage.html"),
        help="HTML file to write (default reports/lineage.html)",
    )
    report_cmd.add_argument(
        "--version",
        default=None,
        help="version number or models:/ URI to detail (default: the production version, "
        "else staging, else the newest)",
    )
    report_cmd.add_argument("--json", action="store_true", help="print facts as JSON")
    report_cmd.set_defaults(func=cmd_report)

    tune_cmd = commands.add_parser(
        "tune",
        help="run a hyperparameter grid on DVC's queue and rank the results",
        description="Queues one `dvc exp run --queue` per grid point of the `tune:` spec "
        "(params.yaml, or --spec FILE), starts DVC's workers, waits, then prints the ranking "
        "(params + held-out metrics, as `dvc exp show` has them) and the `dvc exp apply` "
        "command for the best. The runs are grouped under one parent run in MLflow.",
    )
    tune_cmd.add_argument(
        "--spec",
        type=Path,
        default=None,
        help="YAML file with a `tune:` section (default: params.yaml)",
    )
    tune_cmd.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="parallel DVC queue workers (default: tune.jobs)",
    )
    tune_cmd.add_argument(
        "--name",
        default=None,
        help="sweep name, prefix of the experiment names (default: tune-<time>)",
    )
    tune_cmd.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait for the sweep (default 3600)"
    )
    tune_cmd.add_argument("--json", action="store_true", help="print facts as JSON")
    tune_cmd.set_defaults(func=cmd_tune)

    doctor = commands.add_parser(
        "doctor",
        help="check store, runs, versions, lock, remote and secrets; say how to fix",
        description="Checks: tracking store reachable and intact (SQLite integrity, schema), runs "
        "left RUNNING by dead processes, registered versions with missing lineage tags or "
        "artifacts, dvc.lock state, DVC remote access (403 / missing bucket), credentials in "
        "git. Exit 1 when a problem remains.",
    )
    doctor.add_argument(
        "--fix",
        action="store_true",
        help="apply the safe repairs (mark dead runs KILLED; back up, then "
        "upgrade an outdated schema or move a corrupt store aside)",
    )
    doctor.add_argument(
        "--remote", default=None, help="DVC remote to probe (default: the default remote)"
    )
    doctor.add_argument("--json", action="store_true", help="print findings as JSON")
    doctor.set_defaults(func=cmd_doctor)

    store = commands.add_parser("store", help="the MLflow store: move it to a team server")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    migrate_cmd = store_commands.add_parser(
        "migrate",
        help="copy runs, logged models and registered versions to another store (idempotent)",
        description="Copies experiments (by name), runs (params, full metric history, tags, "
        "artifacts, status, times), their logged models and every registered version (tags, "
        "aliases, legacy stage) from the project's SQLite store to a tracking server. Copied "
        "runs carry the tag predictflow.migrated_from: running it again copies only what is new.",
    )
    migrate_cmd.add_argument(
        "--to", required=True, metavar="URI", help="target tracking URI, e.g. http://127.0.0.1:5001"
    )
    migrate_cmd.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="URI",
        help="source tracking URI (default: the project's sqlite:///.../mlflow_data/mlflow.db)",
    )
    migrate_cmd.add_argument("--json", action="store_true", help="print facts as JSON")
    migrate_cmd.set_defaults(func=cmd_store_migrate)

    access_cmd = commands.add_parser(
        "access",
        help="team server: create users, grant roles reader / experimenter / releaser",
        description="Against MLFLOW_TRACKING_URI with an admin's MLFLOW_TRACKING_USERNAME / "
        "MLFLOW_TRACKING_PASSWORD. reader: READ on the experiment and the model; experimenter: "
        "EDIT on both (log runs, register, move staging); releaser: EDIT on the experiment, "
        "MANAGE on the model (also moves production).",
    )
    access_commands = access_cmd.add_subparsers(
        dest="access_command", required=True, metavar="ACTION"
    )
    add = access_commands.add_parser("add", help="create a user with a role")
    grant = access_commands.add_parser("grant", help="give an existing user a role (replaces)")
    for sub in (add, grant):
        sub.add_argument("user", help="login name")
        sub.add_argument("--role", required=True, choices=("reader", "experimenter", "releaser"))
        sub.add_argument("--json", action="store_true", help="print facts as JSON")
        sub.set_defaults(func=cmd_access)
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: prompt)",
    )
    whoami = access_commands.add_parser(
        "whoami", help="the login the server accepts from your credentials, and its role"
    )
    whoami.add_argument("--json", action="store_true", help="print facts as JSON")
    whoami.set_defaults(func=cmd_access)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # MLflow's per-download progress bars would interleave with the command's own output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Progress notes only for a person at a terminal: in automation, stderr stays empty on
    # success and holds exactly one line on failure.
    level = (
        logging.DEBUG if args.verbose else logging.INFO if sys.stderr.isatty() else logging.WARNING
    )
    configure_logging("predictflow", level)
    from predictflow.access import refusals

    try:
        with refusals(tracking.tracking_uri(tracking.store_root())):
            args.func(args)
    except (*USER_ERRORS, LookupError) as err:
        print(f"predictflow: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
