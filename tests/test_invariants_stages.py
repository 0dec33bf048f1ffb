"""Invariants of the pipeline stages under bad raw data, held as one table of attacks.

Every row writes a hostile `data/customers.csv` into one shared copy of the reproduced project
and runs the real `dvc repro`. Whatever the row, afterwards: exactly one `<stage>: error:` line
that names the problem, no traceback, no `*.tmp` file, every output of the other stages
byte-identical (the failing stage's own outputs are removed by DVC before it runs, never left
half-written), no new MLflow run, and the registry and its aliases unchanged.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from predictflow.core.io import write_json
from predictflow.lineage import evidence

from .conftest import assert_one_line_error, copy_built_repo, dvc, git, run, stage_error_line

RAW = Path("data/customers.csv")
# What each stage writes (dvc.yaml); compared byte for byte before and after every attack.
STAGE_OUTPUTS = {
    "prepare": ("data/prepared", "metrics/prepare.json"),
    "featurize": ("data/features", "models/featurizer.pkl"),
    "train": ("models/model.pkl", "metrics/train"),
    "evaluate": (
        "data/predictions",
        "metrics/eval_plots",
        "metrics/eval_figures",
        "metrics/eval.json",
    ),
    "register": ("models/registration.json",),
}
# Files git tracks that a stage run may rewrite. `data/customers.csv.dvc` is not among the
# watched ones: `dvc repro` pins whatever raw file the user put there before any stage runs.
PINNED = ("dvc.lock", "params.yaml", "data/customers.csv.dvc", "metrics")
WATCHED = ("dvc.lock", "params.yaml", *(path for paths in STAGE_OUTPUTS.values() for path in paths))


@dataclass(frozen=True)
class Raw:
    """The project's raw file as header and data lines (without line endings)."""

    header: str
    rows: list[str]

    def churn(self, label: str) -> list[str]:
        return [row for row in self.rows if row.endswith(f",{label}")]

    def file(self, rows: list[str], eol: str = "\n", header: str | None = None) -> bytes:
        return eol.join([header or self.header, *rows]).encode("utf-8") + eol.encode()


@pytest.fixture(scope="module")
def project(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the reproduced project for the whole module; each row restores it."""
    return copy_built_repo(built_repo, tmp_path_factory.mktemp("invariants") / "repo")


@pytest.fixture(scope="module")
def raw(project: Path) -> Raw:
    lines = (project / RAW).read_text(encoding="utf-8").splitlines()
    return Raw(lines[0], lines[1:])


def _files(repo: Path, *names: str) -> dict[str, bytes]:
    """Every file under the given paths, by relative path, with its bytes."""
    found: dict[str, bytes] = {}
    for name in names:
        path = repo / name
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found.update({str(p.relative_to(repo)): p.read_bytes() for p in paths if p.exists()})
    return found


def _store(repo: Path) -> dict[str, list[tuple]]:
    """Runs, registered versions, aliases and version tags, straight from the SQLite store."""
    queries = {
        "runs": "SELECT run_uuid, status, end_time FROM runs ORDER BY run_uuid",
        "versions": "SELECT name, version, current_stage, source FROM model_versions ORDER BY 2",
        "aliases": "SELECT name, alias, version FROM registered_model_aliases ORDER BY 2",
        "version_tags": "SELECT name, version, key, value FROM model_version_tags ORDER BY 2, 3",
    }
    with sqlite3.connect(repo / "mlflow_data" / "mlflow.db") as db:
        return {name: db.execute(sql).fetchall() for name, sql in queries.items()}


def _temp_files(repo: Path) -> list[str]:
    skip = {".git", ".dvc"}
    return sorted(
        str(p.relative_to(repo))
        for p in repo.rglob("*.tmp")
        if not skip.intersection(p.relative_to(repo).parts)
    )


@pytest.fixture
def pristine(project: Path) -> Iterator[Path]:
    """The shared project; afterwards its files, git index and DVC outputs are as they were."""
    status = git(project, "status", "--porcelain").stdout
    kept = _files(project, RAW, *PINNED)
    yield project
    for name, data in kept.items():
        (project / name).write_bytes(data)
    git(project, "add", "--", *PINNED)  # DVC stages the files it rewrites (core.autostage)
    dvc(project, "checkout")
    assert git(project, "status", "--porcelain").stdout == status


# --- the table: raw-file attacks through `dvc repro` ---------------------------------------------

# Each attack builds the raw file's bytes and lists what the error line must name.
Attack = Callable[[Raw], bytes]


def _rows(yes: int, no: int) -> Attack:
    return lambda raw: raw.file([*raw.churn("Yes")[:yes], *raw.churn("No")[:no]])


def _header_only(raw: Raw) -> bytes:
    return raw.file([])


def _bad_churn_after_multiline_field(eol: str) -> Attack:
    """A quoted note spanning two lines in data row 5, then a bad Churn in data row 40."""

    def build(raw: Raw) -> bytes:
        rows = [f"{row}," for row in raw.rows[:300]]
        rows[5] = f'{raw.rows[5]},"called twice{eol}then left"'
        rows[40] = raw.rows[40].rsplit(",", 1)[0] + ",Maybe,"
        return raw.file(rows, eol=eol, header=f"{raw.header},notes")

    return build


def _latin1_deep(raw: Raw) -> bytes:
    """An e-acute from a Latin-1 editor on file line 5002, far past the first 64 KiB."""
    data = raw.file(raw.rows)
    line = raw.rows[5000].encode()  # the header is line 1, so data row 0 is line 2
    assert data.count(line) == 1
    return data.replace(line, b"\xe9" + line, 1)


ATTACKS = [
    pytest.param(_header_only, ("no data rows after the header",), id="header-only"),
    pytest.param(_rows(0, 1), ("only one class present (all 'No')",), id="one-row"),
    pytest.param(_rows(1, 1), ("2 usable rows (1 Yes, 1 No)", "test_size 0.2"), id="two-rows"),
    pytest.param(
        _rows(2, 2),
        ("4 usable rows (2 Yes, 2 No)", "prepare.test_size 0.2", "3 train and 1 held-out"),
        id="four-rows",
    ),
    pytest.param(
        _rows(2, 3),
        ("5 usable rows (2 Yes, 3 No)", "prepare.test_size 0.2", "4 train and 1 held-out"),
        id="five-rows",
    ),
    pytest.param(
        _rows(2, 8),
        ("the held-out split has no 'Yes' row", "10 usable rows", "raise prepare.test_size"),
        id="ten-rows-held-out-without-churner",
    ),
    pytest.param(
        _bad_churn_after_multiline_field("\n"),
        ("column 'Churn', line 43: must be Yes or No (got 'Maybe')",),
        id="bad-value-after-multiline-field",
    ),
    pytest.param(
        _bad_churn_after_multiline_field("\r\n"),
        ("column 'Churn', line 43: must be Yes or No (got 'Maybe')",),
        id="crlf-bad-value-after-multiline-field",
    ),
    pytest.param(
        _latin1_deep,
        ("line 5002: byte 0xE9 is not UTF-8; save the file as UTF-8",),
        id="latin-1-byte-deep-in-the-file",
    ),
]


@pytest.mark.pipeline
@pytest.mark.parametrize(("attack", "fragments"), ATTACKS)
def test_a_bad_raw_file_fails_prepare_in_one_line_and_changes_nothing(
    pristine: Path, raw: Raw, attack: Attack, fragments: tuple[str, ...]
) -> None:
    repo = pristine
    before = _files(repo, *WATCHED)
    prepared = set(_files(repo, *STAGE_OUTPUTS["prepare"]))
    store = _store(repo)
    (repo / RAW).write_bytes(attack(raw))

    result = dvc(repo, "repro", check=False)

    stage_error_line(result, "prepare", f"{RAW}: ", *fragments)
    assert _temp_files(repo) == []
    after = _files(repo, *WATCHED)
    # DVC removes a stage's outputs before running it (`dvc checkout` restores them); nothing
    # else may change, and nothing may be left half-written.
    assert set(before) - set(after) <= prepared
    assert after == {name: data for name, data in before.items() if name in after}
    assert _store(repo) == store


# --- evaluate: a held-out split it cannot score --------------------------------------------------


@pytest.mark.pipeline
def test_evaluate_refuses_a_one_class_held_out_split_and_keeps_its_outputs(
    pristine: Path, tmp_path: Path
) -> None:
    repo = pristine
    outputs = _files(repo, *STAGE_OUTPUTS["evaluate"])
    store = _store(repo)
    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    no_churner = tmp_path / "test.parquet"
    test[test["Churn"] == 0].head(10).to_parquet(no_churner, index=False)

    result = run(
        [sys.executable, "stages/evaluate.py", "--test", no_churner, "--model", "models/model.pkl"],
        repo,
        check=False,
    )

    assert_one_line_error(
        result,
        f"{no_churner}: the held-out split has no 'Yes' row (10 rows)",
        "raise prepare.test_size",
        prefix="evaluate",
    )
    assert _files(repo, *STAGE_OUTPUTS["evaluate"]) == outputs
    assert _temp_files(repo) == []
    assert _store(repo) == store


def test_write_json_refuses_nan_and_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    write_json(path, {"roc_auc": 0.8})
    before = path.read_bytes()

    with pytest.raises(ValueError, match="not JSON compliant"):
        write_json(path, {"roc_auc": float("nan")})

    assert path.read_bytes() == before
    assert json.loads(before) == {"roc_auc": 0.8}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


# --- a repository with no commit yet -------------------------------------------------------------


@pytest.mark.pipeline
def test_pipeline_runs_before_the_first_commit_and_says_so_in_lineage(
    project: Path, tmp_path: Path
) -> None:
    repo = copy_built_repo(project, tmp_path / "repo")
    shutil.rmtree(repo / ".git")
    git(repo, "init", "-q", "-b", "main")
    assert git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0

    trained = dvc(repo, "repro", "--force", "--single-item", "train", check=False)

    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    with sqlite3.connect(repo / "mlflow_data" / "mlflow.db") as db:
        (run_uuid,) = db.execute(
            "SELECT run_uuid FROM runs ORDER BY start_time DESC LIMIT 1"
        ).fetchone()
        tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_uuid,)))
        (status,) = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_uuid,)).fetchone()
    assert status == "FINISHED"
    assert tags.get("git_commit", "") == ""  # empty lineage values are not set as tags
    assert tags["git_dirty"] == "true"
    assert tags["model_md5"] == evidence.file_md5(repo / "models/model.pkl")
    assert json.loads((repo / "metrics/train/metrics.json").read_text())["test"]["logloss"] > 0
