"""What every subcommand shares: the options, the output, the literal defaults `--help` shows."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from predictflow.base.errors import UserError
from predictflow.base.redact import redact
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
