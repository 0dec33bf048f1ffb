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

from predictflow import lineage, synth, tracking
from predictflow.params import ParamsError, load_params
from predictflow.stage import USER_ERRORS, StageError

log = logging.getLogger("predictflow")

RAW_DATA = Path("data/customers.csv")


def _print(facts: dict, as_json: bool, text: str) -> None:
    print(json.dumps(facts, indent=2, sort_keys=True) if as_json else text)


def cmd_data_synth(args: argparse.Namespace) -> None:
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
    """Make `data` match its `.dvc` pin: keep it, `dvc pull` it, or regenerate it; return how."""
    dvc_file = data.with_name(data.name + ".dvc")
    pinned = lineage.pinned_md5(root / dvc_file)
    path = root / data
    if path.exists() and lineage.file_md5(path) == pinned:
        return "present"
    pull = subprocess.run(
        [sys.executable, "-m", "dvc", "pull", "-q", str(dvc_file)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if pull.returncode == 0 and path.exists() and lineage.file_md5(path) == pinned:
        return "pulled"
    log.info("default DVC remote does not have md5 %s; bootstrapping from the generator", pinned)
    synth.write_csv(path)
    actual = lineage.file_md5(path)
    if actual != pinned:
        raise StageError(
            f"{data}: regenerated md5 {actual} does not match the pin {pinned} in {dvc_file}; "
            "the pinned data came from elsewhere: run `dvc pull` with access to its remote"
        )
    return "generated"


def cmd_data_ensure(args: argparse.Namespace) -> None:
    how = ensure_raw_data(lineage.workspace_root(), args.path)
    _print({"path": str(args.path), "source": how}, args.json, f"{args.path}: {how}")


DEFAULT_MODEL = f"models:/{tracking.MODEL_NAME}@production"


def _registry_client():
    from predictflow import registry

    return registry.client_for(tracking.store_root())


def _default_threshold() -> float:
    """`evaluate.threshold` from the workspace's params.yaml, so predict labels like evaluate."""
    try:
        return load_params(lineage.workspace_root() / "params.yaml").evaluate.threshold
    except ParamsError:
        return 0.5


def cmd_predict(args: argparse.Namespace) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from predictflow.scoring import score_csv

    _registry_client()
    try:
        model = mlflow.pyfunc.load_model(args.model)
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StageError(f"cannot load model {args.model!r}: {first}") from None
    threshold = args.threshold if args.threshold is not None else _default_threshold()
    report = score_csv(
        model,
        args.input,
        args.output,
        threshold,
        args.chunk_rows,
        progress=False if args.json else None,
    )
    facts = {
        "model": args.model,
        "input": str(args.input),
        "output": str(args.output),
        "threshold": threshold,
        **report.as_dict(),
    }
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
    _print(facts, args.json, f"scored {report.rows_scored} rows with {args.model} -> {args.output}")


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
            min_roc_auc=params.registry.min_roc_auc,
            max_drop=params.promote.max_roc_auc_drop,
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
    synth_cmd.add_argument("--json", action="store_true", help="print facts as JSON")
    synth_cmd.set_defaults(func=cmd_data_synth)

    ensure = data_commands.add_parser(
        "ensure", help="make the raw data match its .dvc pin: dvc pull, else regenerate it"
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
        "--chunk-rows",
        type=int,
        default=100_000,
        help="rows scored at a time: memory stays flat (default 100000)",
    )
    predict.add_argument("--json", action="store_true", help="print facts as JSON")
    predict.set_defaults(func=cmd_predict)

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
    logging.basicConfig(level=level, format="predictflow: %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib", "dvc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args.func(args)
    except (*USER_ERRORS, LookupError) as err:
        print(f"predictflow: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
