"""`predictflow`: what DVC and MLflow don't do by themselves.

Every subcommand exits 0 on success and 1 with one `predictflow: error: ...` line on a user
mistake; `--json` prints machine-readable facts where a command reports some.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

from predictflow import lineage, synth
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
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="predictflow: %(message)s"
    )
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib", "dvc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args.func(args)
    except USER_ERRORS as err:
        print(f"predictflow: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
