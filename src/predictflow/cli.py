"""`predictflow`: what DVC and MLflow don't do by themselves.

One click command per subcommand; each parses its options, calls one library function and
prints the facts (`--json`) or a short text. Exit status: 0 success, 1 one `predictflow: error:`
line for a user mistake (`errors.UserError`), 2 a usage error, 3 drift found. Any other
exception is a bug and keeps its traceback.

Imports are lazy: `--help`, `lineage`, `doctor` and `access whoami` load only what they use
(no pandas, scikit-learn or DVC's Repo for a read-only command).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from predictflow.base import errors  # errors, paths: constants and small helpers only
from predictflow.base.errors import MACHINE_ERRORS, UserError
from predictflow.base.redact import mask_logs, redact
from predictflow.core import paths

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("predictflow")

F = TypeVar("F", bound=Callable[..., Any])

# Literal copies keep `--help` free of heavy imports; tests hold them equal to the sources.
MODEL_NAME = "churn-predictor"  # names.MODEL_NAME
DEFAULT_MODEL = f"models:/{MODEL_NAME}@production"
RAW_DATA = paths.RAW_DATA
CHUNK_ROWS = 100_000  # scoring.DEFAULT_CHUNK_ROWS
ROLES = ("reader", "experimenter", "releaser")  # access.ROLES
SYNTH_ROWS, SYNTH_SEED = 7043, 42  # synth.DEFAULT_ROWS, synth.DEFAULT_SEED
VERSION_HELP = "models:/churn-predictor@production, models:/churn-predictor/3 or 3"


# --- options shared by several commands --------------------------------------------------------

json_option = click.option("--json", "as_json", is_flag=True, help="Print facts as JSON.")


def _at_least_one(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    if value < 1:
        raise UserError(f"--chunk-rows {value}: must be at least 1")
    return value


def chunk_rows_option(what: str) -> Callable[[F], F]:
    """`--chunk-rows`: how much of a CSV is in memory at once (memory stays flat)."""
    return click.option(
        "--chunk-rows",
        type=int,
        default=CHUNK_ROWS,
        show_default=True,
        callback=_at_least_one,
        help=f"{what} at a time: memory stays flat.",
    )


def model_option(what: str) -> Callable[[F], F]:
    """`--model`: a registered version, by URI or number."""
    return click.option(
        "--model", default=DEFAULT_MODEL, show_default=True, metavar="URI", help=what
    )


def model_uri_argument(f: F) -> F:
    """An optional MODEL_URI; the default is the newest registered version."""
    return click.argument("model_uri", required=False, default=None, metavar="[MODEL_URI]")(f)


def emit(facts: dict[str, Any], as_json: bool, text: str) -> None:
    """A command's output: the facts as JSON, or the text for a person (credentials masked)."""
    click.echo(redact(json.dumps(facts, indent=2, sort_keys=True) if as_json else text))


def registry_client() -> MlflowClient:
    from predictflow.lineage import registry

    return registry.open_client()


def workspace() -> Path:
    from predictflow.lineage import evidence

    return evidence.workspace_root()


# --- the command group -------------------------------------------------------------------------


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "terminal_width": 100},
)
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
def cli(verbose: bool) -> None:
    """Churn-model lineage: what DVC and MLflow don't do by themselves.

    Every command exits 0 on success, 1 with one `predictflow: error:` line on a mistake,
    2 on a usage error; `drift` exits 3 when it finds drift.
    """
    from predictflow.lineage.stage import configure_logging

    # MLflow's per-download progress bars and its "View run ... at" lines on stdout would
    # interleave with the command's own output (and break `--json`).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Progress notes only for a person at a terminal: in automation, stderr stays empty on
    # success and holds exactly one line on failure.
    level = logging.DEBUG if verbose else logging.INFO if sys.stderr.isatty() else logging.WARNING
    configure_logging("predictflow", level)
    mask_logs()


@cli.group()
def data() -> None:
    """Raw data: generate, restore or compare it."""


@data.command("synth")
@click.option("--rows", type=int, default=SYNTH_ROWS, show_default=True, help="Customers.")
@click.option("--seed", type=int, default=SYNTH_SEED, show_default=True, help="Random seed.")
@click.option("--out", type=Path, default=RAW_DATA, show_default=True, help="Output CSV.")
@click.option("--force", is_flag=True, help="Replace an existing file, even one DVC tracks.")
@json_option
def data_synth(rows: int, seed: int, out: Path, force: bool, as_json: bool) -> None:
    """Write a synthetic data set in the raw layout (byte-identical per arguments)."""
    from predictflow.ops import rawdata

    facts = rawdata.write_synthetic(out, rows, seed, force)
    emit(facts, as_json, f"wrote {rows} rows to {out} (md5 {facts['md5']})")


@data.command("ensure")
@click.option("--path", type=Path, default=RAW_DATA, show_default=True, help="DVC-tracked file.")
@json_option
def data_ensure(path: Path, as_json: bool) -> None:
    """Restore missing raw data to its .dvc pin: dvc pull, else regenerate it.

    A file that differs from the pin is never replaced.
    """
    from predictflow.ops import rawdata

    how = rawdata.ensure(workspace(), path)
    emit({"path": str(path), "source": how}, as_json, f"{path}: {how}")


@data.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--path", type=Path, default=RAW_DATA, show_default=True, help="DVC-tracked file.")
@json_option
def data_diff(a: str, b: str, path: Path, as_json: bool) -> None:
    """Rows added / removed / changed and per-column shifts from data version A to B.

    A and B are each a git revision (the .dvc pin there), a DVC md5 or a registered version
    (models:/churn-predictor/3, models:/churn-predictor@production: the data its lineage pins).
    Both are read from the DVC cache or the default remote, never from git or the workspace.
    Rows are matched by customerID; shifts use drift's statistics and thresholds (params.yaml
    drift), B against A. Exit 0: a diff is information, not a verdict.
    """
    from predictflow.core.params import load_params
    from predictflow.monitoring import datadiff

    root = workspace()
    params = load_params(root / "params.yaml")
    old, new = (datadiff.resolve(spec, root, str(path), registry_client) for spec in (a, b))
    facts = datadiff.diff(root, old, new, params.drift, params.base.seed)
    emit(facts, as_json, datadiff.render(facts))


@cli.command()
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


@cli.command("evaluate-batch")
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


@cli.command()
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


@cli.command()
@click.argument("version", metavar="VERSION")
@click.option("--to", "target", required=True, type=click.Choice(["staging", "production"]))
@click.option("--reason", default="", help="Why: kept in the audit trail.")
@click.option(
    "--allow-dirty", is_flag=True, help="Accept a version from a dirty tree or not yet sealed."
)
@json_option
def promote(version: str, target: str, reason: str, allow_dirty: bool, as_json: bool) -> None:
    """Move alias staging/production to VERSION after its gates pass.

    VERSION is a version number or models:/ URI. Staging needs the quality gate
    (register.min_roc_auc). Production needs staging first, complete lineage tags, a clean
    tree, a committed dvc.lock pinning the model (sealed), and, scored with the current
    production version on the same rows of the current evaluation split, a ROC AUC not worse
    beyond promote.margin: the low end of a paired-bootstrap interval at promote.confidence must
    reach -margin.
    """
    from predictflow.lineage import promotion

    outcome = promotion.promote_ref(
        registry_client(), workspace(), version, target, reason, allow_dirty
    )
    facts, text = promotion.describe(outcome)
    emit(facts, as_json, text)


@cli.command()
@model_uri_argument
@json_option
def lineage(model_uri: str | None, as_json: bool) -> None:
    """Which run and which data produced a registered version.

    MODEL_URI: models:/churn-predictor@production, models:/churn-predictor/3 or 3
    (default: the newest registered version).
    """
    from predictflow.lineage import provenance, registry_read
    from predictflow.lineage.names import MODEL_NAME

    reader = registry_read.open_reader()  # no MLflow import unless the store needs it
    version = registry_read.resolve(reader, model_uri, MODEL_NAME)
    view = provenance.facts(reader, version, workspace())
    emit(view, as_json, provenance.render(view))


@cli.command()
@model_uri_argument
@click.option("--keep", is_flag=True, help="Keep the temporary clone.")
@json_option
def reproduce(model_uri: str | None, keep: bool, as_json: bool) -> None:
    """Rebuild a version from its recorded code and data; compare the bytes.

    In a temporary clone at the recorded commit, with the recorded params and data md5 (from
    the DVC cache or remote), run the pipeline up to train with a throw-away MLflow store, and
    compare every stage's outputs with the recorded hashes. Exit 0 only on a full match. Your
    workspace and registry are not touched.
    """
    from predictflow.ops import reproduce as reproduce_

    facts = reproduce_.check_version(registry_client(), model_uri, workspace(), keep)
    emit(facts, as_json, reproduce_.render_check(facts))
    if not facts["matches"]:
        sys.exit(1)


@cli.command()
@click.option(
    "--output",
    type=Path,
    default=Path("reports/lineage.html"),
    show_default=True,
    help="HTML file to write.",
)
@click.option(
    "--version",
    default=None,
    help="Version number or models:/ URI to detail (default: the production version, "
    "else staging, else the newest).",
)
@json_option
def report(output: Path, version: str | None, as_json: bool) -> None:
    """Write one self-contained HTML page: versions, lineage, stage graph, plots.

    Every registered version side by side (aliases, promotions, params, held-out metrics, data
    md5, git commit), the DVC stage graph with the out hashes and the evaluation plots of one
    version. Views offline: no scripts, fonts or images by URL.
    """
    from predictflow.core import io
    from predictflow.ops import report as report_

    io.check_output(output)
    io.check_untracked({output: "the report"}, "give another --output")
    io.check_replaceable(output, report_.GENERATOR, "a page written by `predictflow report`")
    facts = report_.publish(registry_client(), workspace(), version, output)
    for warning in facts["warnings"]:
        log.warning(warning)
    versions = ", ".join(map(str, facts["versions"]))
    emit(
        facts,
        as_json,
        f"wrote {output} ({facts['bytes'] // 1024} KiB): {facts['model']} versions {versions}, "
        f"details for version {facts['selected']}",
    )


@cli.command()
@click.option("--spec", type=Path, default=None, help="YAML with a `tune:` section [params.yaml].")
@click.option(
    "-j", "--jobs", type=int, default=None, help="Parallel DVC queue workers (default: tune.jobs)."
)
@click.option("--name", default=None, help="Sweep name, prefix of the experiment names.")
@click.option(
    "--timeout", type=float, default=3600, show_default=True, help="Seconds to wait for the sweep."
)
@json_option
def tune(
    spec: Path | None, jobs: int | None, name: str | None, timeout: float, as_json: bool
) -> None:
    """Run a hyperparameter grid on DVC's queue and rank the results.

    Queues one `dvc exp run --queue` per grid point of the `tune:` spec (params.yaml, or --spec
    FILE), starts DVC's workers, waits, then prints the ranking (params + held-out metrics, as
    `dvc exp show` has them) and the `dvc exp apply` command for the best. The runs are grouped
    under one parent run in MLflow.
    """
    from predictflow.ops import tune as tune_

    facts, text = tune_.sweep(workspace(), spec, name, jobs, timeout)
    emit(facts, as_json, text)
    if facts["failed"]:
        raise tune_.TuneError(
            f"{len(facts['failed'])} experiment(s) failed: {', '.join(facts['failed'])}; "
            "see `dvc queue logs NAME`"
        )


@cli.command()
@click.option(
    "--fix",
    is_flag=True,
    help="Apply the safe repairs (mark dead runs KILLED; back up, then upgrade an outdated "
    "schema or move a corrupt store aside).",
)
@click.option("--remote", default=None, help="DVC remote to probe (default: the default remote).")
@json_option
def doctor(fix: bool, remote: str | None, as_json: bool) -> None:
    """Check store, runs, versions, lock, remote and secrets; say how to fix.

    Checks: tracking store reachable and intact (SQLite integrity, schema), runs left RUNNING
    by dead processes, registered versions with missing lineage tags or artifacts, dvc.lock
    state, DVC remote access (403 / missing bucket), credentials in git. Exit 1 when a problem
    remains.
    """
    from predictflow.lineage import tracking
    from predictflow.ops import doctor as doctor_

    findings = doctor_.run_checks(workspace(), tracking.store_root(), fix=fix, remote=remote)
    emit({"findings": [f.as_dict() for f in findings]}, as_json, doctor_.render(findings))
    if any(f.status == "problem" and not f.fixed for f in findings):
        sys.exit(1)


@cli.group()
def store() -> None:
    """The MLflow store: move it to a team server."""


@store.command("migrate")
@click.option("--to", "target", required=True, metavar="URI", help="Target tracking URI.")
@click.option(
    "--from",
    "source",
    default=None,
    metavar="URI",
    help="Source tracking URI (default: the project's sqlite:///.../mlflow_data/mlflow.db).",
)
@json_option
def store_migrate(target: str, source: str | None, as_json: bool) -> None:
    """Copy runs, logged models and registered versions to another store (idempotent).

    Copies experiments (by name), runs (params, full metric history, tags, artifacts, status,
    times), their logged models and every registered version (tags, aliases, legacy stage) from
    the project's SQLite store to a tracking server. Copied runs carry the tag
    predictflow.migrated_from: running it again copies only what is new.
    """
    from predictflow.lineage import tracking
    from predictflow.ops import migrate

    summary = migrate.migrate(source or tracking.default_uri(tracking.store_root()), target)
    emit(summary.as_dict(), as_json, summary.render())


@cli.group()
def access() -> None:
    """Team server: create users, grant roles reader / experimenter / releaser.

    Against MLFLOW_TRACKING_URI with an admin's MLFLOW_TRACKING_USERNAME /
    MLFLOW_TRACKING_PASSWORD. reader: READ on the experiment and the model; experimenter: EDIT
    on both (log runs, register, move staging); releaser: EDIT on the experiment, MANAGE on the
    model (also moves production).
    """


role_option = click.option("--role", required=True, type=click.Choice(ROLES))


@access.command("whoami")
@json_option
def access_whoami(as_json: bool) -> None:
    """The login the server accepts from your credentials, and its role."""
    from predictflow.lineage import access as access_
    from predictflow.lineage.server import team_server

    facts = access_.whoami(*team_server())
    emit(facts, as_json, f"{facts['user']} on {facts['server']}: {facts['role']}")


@access.command("add")
@click.argument("user")
@role_option
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin (default: prompt).",
)
@json_option
def access_add(user: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create USER (a login name) with a role."""
    import getpass

    from predictflow.lineage import access as access_
    from predictflow.lineage.server import team_server

    access_.check_user_name(user)  # before the prompt: a blank name is never created
    uri, _ = team_server()
    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else getpass.getpass(f"password for {user}: ")
    )
    facts = access_.add_user(uri, user, password, role)
    emit(facts, as_json, f"{user}: {role} on {access_.server_of(uri)}")


@access.command("grant")
@click.argument("user")
@role_option
@json_option
def access_grant(user: str, role: str, as_json: bool) -> None:
    """Give an existing USER a role (replaces the one they had)."""
    from predictflow.lineage import access as access_
    from predictflow.lineage.server import team_server

    uri, _ = team_server()
    facts = access_.grant(uri, user, role)
    emit(facts, as_json, f"{user}: {role} on {access_.server_of(uri)}")


# --- entry point -------------------------------------------------------------------------------


# The machine's state, not a bug (errors.MACHINE_ERRORS). Every write goes through a temp file
# renamed into place, so nothing is left half-written.


def _fail(message: str, code: int) -> None:
    print(f"predictflow: error: {redact(message)}", file=sys.stderr)
    sys.exit(code)


def _refusal(err: Exception) -> UserError | None:
    """A team server's 401/403 is the user's to fix (credentials, role), not a bug.

    Only checked when MLflow is already loaded: a command that never imported it cannot have
    raised its exception, and `--help` stays free of the 3 s import.
    """
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(err, exceptions.MlflowException):
        return None
    from predictflow.lineage import access, tracking

    return access.refusal(err, tracking.tracking_uri(tracking.store_root()))


def main(argv: list[str] | None = None) -> None:
    try:
        with errors.machine_errors_unlogged():  # a full or read-only store: the one line below
            code = cli.main(args=argv, prog_name="predictflow", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:  # `predictflow data` alone
        _fail(f"missing command (see `{err.ctx.command_path} --help`)", 2)
    except click.UsageError as err:  # bad option, missing argument, unknown command
        where = err.ctx.command_path if err.ctx else "predictflow"
        # click lists choices on lines of their own ("Choose from:\n\tstaging,\n\t..."): one line
        message = " ".join(part.strip() for part in err.format_message().splitlines())
        _fail(f"{message.strip()} (see `{where} --help`)", 2)
    except click.Abort:  # Ctrl-C or EOF at a prompt
        _fail("aborted", 1)
    except UserError as err:
        _fail(str(err), err.exit_code)
    except OSError as err:
        if err.errno not in MACHINE_ERRORS:
            raise  # a bug: its traceback is what the developer needs
        where = f"{err.filename}: " if err.filename else ""
        _fail(f"{where}{err.strerror}; free space or pick a writable place, then run again", 1)
    except Exception as err:
        if cause := errors.machine_cause(err):  # SQLite's full or read-only store, via MLflow
            state = errors.machine_state(cause)
            _fail(f"the tracking store is {state} ({cause}); free space or make it writable", 1)
        mapped = _refusal(err)
        if mapped is None:
            raise  # a bug: its traceback is what the developer needs
        _fail(str(mapped), mapped.exit_code)
    else:
        sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
