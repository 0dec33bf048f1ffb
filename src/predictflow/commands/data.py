"""`predictflow data`: the raw file (synthesize, restore to its pin) and two versions' data diff."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    pass

from predictflow.commands.common import (
    RAW_DATA,
    SYNTH_ROWS,
    SYNTH_SEED,
    emit,
    json_option,
    registry_client,
    workspace,
)


@click.group()
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
    facts = datadiff.diff(root, old, new, params.drift, params.base.seed, str(path))
    emit(facts, as_json, datadiff.render(facts))
