"""The command line itself: one error line for a user mistake, a traceback for a bug, exit 2 for
a usage error, and read-only commands that start without the heavy imports. Fast: no pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, predictflow, run

# A command added to the real click app in a child process, raising what the test names.
WITH_COMMAND = """
import sys
from predictflow.cli import cli, main
from predictflow.base.errors import UserError

class Refused(UserError):
    exit_code = 7

@cli.command()
def boom():
    raise {raise_}

main(["boom"])
"""


def run_raising(tmp_path: Path, raise_: str):
    return run([sys.executable, "-c", WITH_COMMAND.format(raise_=raise_)], tmp_path, check=False)


def test_a_programming_error_keeps_its_traceback(tmp_path: Path) -> None:
    result = run_raising(tmp_path, "KeyError('model_md5')")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "KeyError: 'model_md5'" in result.stderr
    assert "predictflow: error:" not in result.stderr


def test_a_lookup_error_is_a_bug_too(tmp_path: Path) -> None:
    """The old catch-all turned any LookupError into a tidy line; only UserError is the user's."""
    result = run_raising(tmp_path, "IndexError('list index out of range')")
    assert "Traceback" in result.stderr and "predictflow: error:" not in result.stderr


def test_a_user_error_is_one_line_with_its_exit_code(tmp_path: Path) -> None:
    result = run_raising(tmp_path, "Refused('version 3: gate failed')")
    assert result.returncode == 7
    assert_one_line_error(result, "version 3: gate failed")


def test_a_stage_shows_a_bug_with_its_traceback(tmp_path: Path) -> None:
    code = "from predictflow.lineage import stage; stage.run('prepare', lambda: {}['seed'], False)"
    result = run([sys.executable, "-c", code], tmp_path, check=False)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "KeyError: 'seed'" in result.stderr
    assert "prepare: error:" not in result.stderr


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ((), ("missing command", "predictflow --help")),
        (("data",), ("missing command", "predictflow data --help")),
        (("nosuch",), ("No such command 'nosuch'",)),
        (("promote", "1", "--to", "prod"), ("'--to'", "'prod'", "predictflow promote --help")),
        (("predict", "--input", "x.csv"), ("Missing option '--output'",)),
        # click lists the choices on lines of their own: joined onto the one line
        (("promote", "1"), ("Missing option '--to'", "Choose from: staging, production")),
        (("access", "grant", "bob"), ("Missing option '--role'", "reader, experimenter")),
        (
            ("evaluate-batch", "--history", "--input", "s.csv", "--cohort", "w1"),
            ("--history lists every recorded cohort", "drop --input, --cohort"),
        ),
        (("lineage", "--no-such-option"), ("--no-such-option",)),
        (("drift", "--input", "x.csv", "--chunk-rows", "many"), ("'--chunk-rows'", "'many'")),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    result = predictflow(tmp_path, *args, check=False)
    assert result.returncode == 2, result
    assert_one_line_error(result, *fragments)


def test_help_lists_every_command_and_each_has_its_own(tmp_path: Path) -> None:
    listed = predictflow(tmp_path, "--help").stdout
    commands = listed.partition("\nCommands:\n")[2].split()
    for name in ("lineage", "promote", "predict", "drift", "reproduce", "report", "tune"):
        assert name in commands
        helped = predictflow(tmp_path, name, "--help").stdout
        assert helped.startswith(f"Usage: predictflow {name} ")
    for group, sub in (("data", "synth"), ("data", "ensure"), ("store", "migrate")):
        helped = predictflow(tmp_path, group, sub, "-h").stdout
        assert f"Usage: predictflow {group} {sub} " in helped
    for sub in ("whoami", "add", "grant"):
        assert "Usage: predictflow access" in predictflow(tmp_path, "access", sub, "--help").stdout


HEAVY = ("mlflow", "pandas", "sklearn", "xgboost", "dvc.repo", "pydantic", "numpy")


def test_the_command_line_imports_nothing_heavy_before_a_command_needs_it(tmp_path: Path) -> None:
    code = (
        "import sys; import predictflow.cli; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert run([sys.executable, "-c", code], tmp_path).stdout.strip() == "[]"


def test_the_literal_defaults_match_their_sources() -> None:
    """The commands repeat a few constants so that `--help` imports nothing heavy."""
    from predictflow.commands import common as cli
    from predictflow.core import paths, scoring
    from predictflow.lineage import access, names
    from predictflow.ops import rawdata, synth

    assert cli.MODEL_NAME == names.MODEL_NAME
    assert cli.CHUNK_ROWS == scoring.DEFAULT_CHUNK_ROWS
    assert tuple(access.ROLES) == cli.ROLES
    assert (cli.SYNTH_ROWS, cli.SYNTH_SEED) == (synth.DEFAULT_ROWS, synth.DEFAULT_SEED)
    assert cli.RAW_DATA == rawdata.RAW_DATA == paths.RAW_DATA
