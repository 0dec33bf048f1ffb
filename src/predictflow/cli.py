"""`predictflow`: what DVC and MLflow don't do by themselves.

One click command per subcommand; each parses its options, calls one library function and
prints the facts (`--json`) or a short text. Exit status: 0 success, 1 one `predictflow: error:`
line for a user mistake (`errors.UserError`), 2 a usage error, 3 drift found. Any other
exception is a bug and keeps its traceback.

Imports are lazy: `--help`, `lineage`, `doctor` and `access whoami` load only what they use
(no pandas, scikit-learn or DVC's Repo for a read-only command).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from predictflow.base import errors  # errors, paths: constants and small helpers only
from predictflow.base.errors import MACHINE_ERRORS, UserError
from predictflow.base.redact import mask_logs, redact

if TYPE_CHECKING:
    pass

from predictflow.commands.access import access
from predictflow.commands.common import (
    emit,
    json_option,
    log,
    model_uri_argument,
    registry_client,
    workspace,
)
from predictflow.commands.data import data
from predictflow.commands.scoring import drift, evaluate_batch, predict

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
    compare every stage's outputs with the recorded hashes. A version trained on scale.engine
    dask matches when its data and features do byte for byte and its rebuilt model's held-out
    roc_auc is within 0.005 of the recorded one. Exit 0 only on a match. Your workspace and
    registry are not touched.
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
    from predictflow.ops.report_build import GENERATOR

    io.check_output(output)
    io.check_untracked({output: "the report"}, "give another --output")
    io.check_replaceable(output, GENERATOR, "a page written by `predictflow report`")
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


# `--help` lists the commands by name, wherever they are defined.
cli.add_command(data)
for command in (predict, evaluate_batch, drift):
    cli.add_command(command)
cli.add_command(access)


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
