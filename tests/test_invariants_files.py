"""Invariant: nothing a user made is destroyed, however the paths are spelled.

Each table row is one attack on a private copy of the pipeline repo (its git history, DVC cache
and MLflow store included). Every row then gets the same checks: a non-zero exit with exactly one
`predictflow: error:` line and no traceback, every file of the workspace byte-identical (so no
stray temp file either), the same `git status`, the registry and its aliases unchanged and no
MLflow run left RUNNING. Real `predictflow`, `dvc` and MLflow store; no mocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from predictflow.core import io
from predictflow.lineage import evidence

from .conftest import BIN, assert_one_line_error, dvc, git, predictflow, run

pytestmark = pytest.mark.pipeline

RAW = "data/customers.csv"
PIN = "data/customers.csv.dvc"
ELSEWHERE = "deadbeef" * 4  # a pinned md5 that neither the remote nor the generator can give
BATCH = "batch.csv"  # a user's own file to score, untracked, in the workspace
MODEL = ("--model", "models:/churn-predictor@staging")
# Bookkeeping that DVC, git and MLflow own; the store is compared through the registry below.
NOT_USER_FILES = {".git", ".dvc/tmp", "mlflow_data"}

Setup = Callable[[Path], None]


# --- the checks every row gets ---------------------------------------------------------------


def files(root: Path) -> dict[str, str]:
    """Every file and symlink under `root`: sha256 of a file's bytes, the target of a link."""
    found: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        rel = here.relative_to(root).as_posix()
        dirs[:] = [d for d in dirs if f"{rel}/{d}".removeprefix("./") not in NOT_USER_FILES]
        for name in [*names, *dirs]:
            path = here / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            elif path.is_file():
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def registry(repo: Path) -> list[tuple]:
    """Each registered version's number, stage, aliases and tags."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sorted(
        (v.version, v.current_stage, sorted(v.aliases), sorted(v.tags.items()))
        for v in client.search_model_versions("name = 'churn-predictor'")
    )


def running_runs(repo: Path) -> list[str]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r.info.run_id for r in client.search_runs(ids, "attributes.status = 'RUNNING'")]


def state(repo: Path) -> dict[str, object]:
    return {
        "files": files(repo),
        "git status": git(repo, "status", "--porcelain").stdout,
        "registry": registry(repo),
    }


@pytest.fixture
def repo(built_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the pipeline repo; its default DVC remote (a folder beside it) is empty."""
    copy = tmp_path / "repo"
    shutil.copytree(built_repo, copy, symlinks=True)
    (copy / BATCH).write_text(
        "".join((built_repo / RAW).read_text().splitlines(keepends=True)[:21])
    )
    return copy


def assert_refused(repo: Path, setup: Setup, args: tuple[str, ...], fragments: tuple[str, ...]):
    """Run one attack and check everything that must hold afterwards."""
    setup(repo)
    before = state(repo)
    assert before["registry"], "the copy has no registered version to protect"
    result = predictflow(repo, *(a.format(repo=repo) for a in args), check=False)
    assert result.returncode == 1, result
    assert_one_line_error(result, *fragments)
    assert state(repo) == before
    assert running_runs(repo) == []


# --- setups: what the user made before running the command -----------------------------------


def nothing(repo: Path) -> None:
    """The copy as it is: the pipeline's data and a batch file to score."""


def symlink(name: str, target: str) -> Setup:
    def make(repo: Path) -> None:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo / name)

    return make


def hard_link(name: str, target: str) -> Setup:
    def make(repo: Path) -> None:
        os.link(repo / target, repo / name)

    return make


def raw_edited(repo: Path) -> None:
    """The user appended a customer by hand."""
    raw = repo / RAW
    lines = raw.read_text().splitlines(keepends=True)
    raw.write_text("".join([*lines, "9999-ZZZZZ" + lines[-1][10:]]))


def raw_edited_remote_has_pin(repo: Path) -> None:
    """The pinned data is on the default remote, so `dvc pull` could restore it, and then the
    user edits the file."""
    dvc(repo, "push", "-q", PIN)
    raw_edited(repo)


def raw_foreign(repo: Path) -> None:
    """The user's own real data set put in place, not yet `dvc add`ed."""
    predictflow(repo, "data", "synth", "--rows", "300", "--seed", "9", "--out", "real.csv")
    os.replace(repo / "real.csv", repo / RAW)


def raw_same_size(repo: Path) -> None:
    """Same size as the pinned file, other bytes: two customers swapped."""
    raw = repo / RAW
    data = raw.read_bytes()
    header, first, second, *rest = data.splitlines(keepends=True)
    raw.write_bytes(b"".join([header, second, first, *rest]))
    assert raw.stat().st_size == len(data) and raw.read_bytes() != data


def raw_crlf(repo: Path) -> None:
    """The same rows with Windows line endings (how the public file comes)."""
    raw = repo / RAW
    raw.write_bytes(raw.read_bytes().replace(b"\n", b"\r\n"))


def raw_symlink_to_foreign(repo: Path) -> None:
    predictflow(repo, "data", "synth", "--rows", "100", "--seed", "3", "--out", "mine.csv")
    (repo / RAW).unlink()
    os.symlink("../mine.csv", repo / RAW)


def raw_dangling_symlink(repo: Path) -> None:
    (repo / RAW).unlink()
    os.symlink("../gone.csv", repo / RAW)


def raw_directory(repo: Path) -> None:
    (repo / RAW).unlink()
    (repo / RAW).mkdir()
    (repo / RAW / "part-0.csv").write_text("customerID\n0001-AAAAA\n")


def pin_removed(repo: Path) -> None:
    (repo / PIN).unlink()


def pin_text(text: str) -> Setup:
    def write(repo: Path) -> None:
        (repo / PIN).write_text(text)

    return write


def pin_directory(repo: Path) -> None:
    (repo / PIN).unlink()
    (repo / PIN).mkdir()


def unscorable_batch(repo: Path) -> None:
    """A batch whose every row has a blank TotalCharges at tenure > 0 (each one is skipped)."""
    frame = pd.read_csv(repo / BATCH, dtype=str, keep_default_na=False)
    frame = frame[frame["tenure"] != "0"].assign(TotalCharges=" ")
    frame.to_csv(repo / "blank.csv", index=False)


def users_page(repo: Path) -> None:
    """A page of the user's own where the report would go."""
    (repo / "reports").mkdir(exist_ok=True)
    (repo / "reports" / "mine.html").write_text("<html><body>my notes</body></html>\n")


def users_notes(repo: Path) -> None:
    """A file of the user's own where the scores or the synthetic rows would go."""
    (repo / "notes.csv").write_text("customerID,note\n0001-AAAAA,call back\n")


def scored_then(edit: Callable[[Path, Path], None]) -> Setup:
    """`predict` wrote s.csv and its record; then the user did `edit` (to the scores, record)."""

    def make(repo: Path) -> None:
        predictflow(repo, "predict", *MODEL, "--input", BATCH, "--output", "s.csv")
        edit(repo / "s.csv", repo / "s.csv.json")

    return make


def labels_filled_in(scores: Path, _record: Path) -> None:
    frame = pd.read_csv(scores, dtype=str).assign(Churn="No")
    frame.to_csv(scores, index=False)


def record_removed(_scores: Path, record: Path) -> None:
    record.unlink()


def raw_removed(repo: Path) -> None:
    (repo / RAW).unlink()


def pin_elsewhere(repo: Path) -> None:
    """The pin moved to data this machine cannot get (another branch, another remote)."""
    pin_text((repo / PIN).read_text().replace(evidence.pinned_md5(repo / PIN), ELSEWHERE))(repo)


def raw_edited_and_pin_elsewhere(repo: Path) -> None:
    raw_edited(repo)
    pin_elsewhere(repo)


# --- the tables ------------------------------------------------------------------------------

SAME_FILE = ("is the same file as the input", "give another output path")
PREDICT = ("predict", *MODEL, "--input", BATCH, "--output")

predict_attacks = [
    pytest.param(nothing, (*PREDICT, BATCH), (BATCH, *SAME_FILE), id="same-spelling"),
    pytest.param(nothing, (*PREDICT, f"./{BATCH}"), (BATCH, *SAME_FILE), id="dot-slash"),
    pytest.param(nothing, (*PREDICT, f"data/../{BATCH}"), SAME_FILE, id="dot-dot"),
    pytest.param(nothing, (*PREDICT, f"{{repo}}/{BATCH}"), SAME_FILE, id="absolute"),
    pytest.param(
        symlink("out.csv", BATCH), (*PREDICT, "out.csv"), ("out.csv", *SAME_FILE), id="symlink"
    ),
    pytest.param(
        symlink("links/here", ".."),
        (*PREDICT, f"links/here/{BATCH}"),
        SAME_FILE,
        id="symlinked-folder",
    ),
    pytest.param(
        hard_link("out.csv", BATCH), (*PREDICT, "out.csv"), ("out.csv", *SAME_FILE), id="hard-link"
    ),
    pytest.param(
        symlink("in.csv", BATCH),
        ("predict", *MODEL, "--input", "in.csv", "--output", BATCH),
        (BATCH, "in.csv", *SAME_FILE),
        id="input-is-a-symlink",
    ),
    pytest.param(nothing, (*PREDICT, "data"), ("data", "is a directory"), id="output-directory"),
    pytest.param(nothing, (*PREDICT, "."), (".", "is a directory"), id="output-dot"),
    pytest.param(
        nothing,
        (*PREDICT, f"{BATCH}/scores.csv"),
        (f"{BATCH}/scores.csv", "not a directory"),
        id="output-under-a-file",
    ),
    pytest.param(
        nothing,
        (*PREDICT, "/sys/predictflow-scores.csv"),
        ("/sys/predictflow-scores.csv", "cannot write in /sys"),
        id="output-unwritable",
    ),
    *(
        pytest.param(
            nothing,
            (*PREDICT, "scores.csv", "--chunk-rows", n),
            (f"--chunk-rows {n}", "at least 1"),
            id=f"chunk-rows-{n}",
        )
        for n in ("0", "-5")
    ),
    *(
        pytest.param(
            nothing,
            (*PREDICT, "scores.csv", f"--threshold={t}"),
            ("--threshold", "a probability in [0, 1]"),
            id=f"threshold-{t}",
        )
        for t in ("nan", "inf", "-inf", "1.5", "-0.01")
    ),
    pytest.param(
        nothing,
        (*PREDICT, RAW),
        (RAW, "tracked by DVC", PIN, "give another --output"),
        id="output-dvc-tracked",
    ),
    pytest.param(
        nothing,
        (*PREDICT, "models/model.pkl"),
        ("models/model.pkl", "tracked by DVC", "'train'"),
        id="output-pipeline-out",
    ),
    pytest.param(
        nothing,
        (*PREDICT, "metrics/eval"),
        ("metrics/eval.json", "tracked by DVC", "'evaluate'", "the scoring record"),
        id="record-pipeline-out",
    ),
    pytest.param(
        nothing,
        ("predict", "--model", "models:/churn-predictor", "--input", BATCH, "--output", "s.csv"),
        ("'models:/churn-predictor'", "models:/NAME/VERSION"),
        id="model-uri-without-version",
    ),
    pytest.param(
        unscorable_batch,
        ("predict", *MODEL, "--input", "blank.csv", "--output", "s.csv"),
        ("blank.csv", "no row can be scored", "blank TotalCharges", "nothing was written"),
        id="no-scorable-row",
    ),
    *(
        pytest.param(
            setup,
            (*PREDICT, name),
            (name, "is not scores `predictflow predict` wrote", "--force"),
            id=f"output-over-{name}",
        )
        for setup, name in (
            (nothing, "params.yaml"),
            (nothing, "dvc.yaml"),
            (nothing, ".gitignore"),
            (users_notes, "notes.csv"),
            (symlink("scores.csv", "params.yaml"), "scores.csv"),
        )
    ),
    pytest.param(
        scored_then(labels_filled_in),
        (*PREDICT, "s.csv"),
        ("s.csv", "or was edited since", "--force"),
        id="output-scores-the-user-labelled",
    ),
    pytest.param(
        scored_then(record_removed),
        (*PREDICT, "s.csv"),
        ("s.csv", "is not scores", "--force"),
        id="output-scores-without-record",
    ),
    pytest.param(
        nothing,
        ("report", "--output", RAW),
        (RAW, "tracked by DVC", PIN, "give another --output"),
        id="report-dvc-tracked",
    ),
    pytest.param(
        users_page,
        ("report", "--output", "reports/mine.html"),
        ("reports/mine.html", "not a page written by `predictflow report`"),
        id="report-over-a-users-page",
    ),
    pytest.param(
        nothing, ("report", "--output", "data"), ("data", "is a directory"), id="report-directory"
    ),
    pytest.param(
        nothing,
        ("report", "--output", "/sys/lineage.html"),
        ("cannot write in /sys",),
        id="report-unwritable",
    ),
]

TRACKED_RAW = ("tracked by DVC", PIN, "--force")
SYNTH = ("data", "synth", "--rows", "50", "--out")

synth_attacks = [
    pytest.param(nothing, ("data", "synth"), (RAW, *TRACKED_RAW), id="default-out"),
    pytest.param(
        nothing, ("data", "synth", "--rows", "50"), (RAW, *TRACKED_RAW), id="default-out-50-rows"
    ),
    pytest.param(nothing, (*SYNTH, f"./{RAW}"), TRACKED_RAW, id="dot-slash"),
    pytest.param(nothing, (*SYNTH, f"models/../{RAW}"), TRACKED_RAW, id="dot-dot"),
    pytest.param(nothing, (*SYNTH, f"{{repo}}/{RAW}"), TRACKED_RAW, id="absolute"),
    pytest.param(symlink("raw.csv", RAW), (*SYNTH, "raw.csv"), TRACKED_RAW, id="symlink"),
    pytest.param(raw_removed, (*SYNTH, RAW), TRACKED_RAW, id="tracked-but-missing"),
    pytest.param(
        nothing,
        (*SYNTH, "models/model.pkl"),
        ("tracked by DVC", "dvc.yaml stage 'train'"),
        id="pipeline-out",
    ),
    pytest.param(
        nothing,
        (*SYNTH, "metrics/eval.json"),
        ("tracked by DVC", "'evaluate'"),
        id="pipeline-metric",
    ),
    pytest.param(
        nothing,
        (*SYNTH, "metrics/train/plots/new.tsv"),
        ("tracked by DVC", "'train'"),
        id="inside-a-directory-out",
    ),
    pytest.param(nothing, (*SYNTH, "data"), ("data", "is a directory"), id="out-directory"),
    *(
        pytest.param(setup, (*SYNTH, name), (name, "exists", "--force"), id=f"over-{name}")
        for setup, name in (
            (nothing, "dvc.yaml"),
            (nothing, "params.yaml"),
            (users_notes, "notes.csv"),
            (symlink("out.csv", "params.yaml"), "out.csv"),
        )
    ),
]

DIFFERS = (RAW, "differs from md5", PIN, f"`dvc add {RAW}`", f"`dvc checkout --force {RAW}`")
ENSURE = ("data", "ensure")

ensure_attacks = [
    pytest.param(raw_edited, ENSURE, DIFFERS, id="raw-edited"),
    pytest.param(raw_edited_remote_has_pin, ENSURE, DIFFERS, id="raw-edited-remote-has-pin"),
    pytest.param(raw_foreign, ENSURE, DIFFERS, id="raw-foreign"),
    pytest.param(raw_same_size, ENSURE, DIFFERS, id="raw-same-size-other-bytes"),
    pytest.param(raw_crlf, ENSURE, DIFFERS, id="raw-crlf"),
    pytest.param(raw_symlink_to_foreign, ENSURE, DIFFERS, id="raw-symlink-to-foreign"),
    pytest.param(
        raw_dangling_symlink, ENSURE, (RAW, "symlink", "does not exist"), id="raw-dangling-link"
    ),
    pytest.param(raw_directory, ENSURE, (RAW, "not a regular file", PIN), id="raw-directory"),
    pytest.param(pin_removed, ENSURE, (PIN, "not found", "git checkout"), id="pin-missing"),
    pytest.param(
        pin_text("outs: [\n  - md5: {\n"), ENSURE, (PIN, "git checkout"), id="pin-not-yaml"
    ),
    pytest.param(pin_text("outs: 5\n"), ENSURE, (PIN, "no md5 recorded"), id="pin-no-outs"),
    pytest.param(pin_text("- just a list\n"), ENSURE, (PIN, "no md5"), id="pin-a-list"),
    pytest.param(pin_directory, ENSURE, (PIN, "cannot read"), id="pin-a-directory"),
    pytest.param(
        raw_edited_and_pin_elsewhere, ENSURE, (RAW, "differs", ELSEWHERE), id="raw-and-pin-changed"
    ),
]


@pytest.mark.parametrize(("setup", "args", "fragments"), predict_attacks)
def test_predict_and_report_never_replace_an_input(repo, setup, args, fragments) -> None:
    assert_refused(repo, setup, args, fragments)


@pytest.mark.parametrize(("setup", "args", "fragments"), synth_attacks)
def test_synth_never_replaces_dvc_tracked_data(repo, setup, args, fragments) -> None:
    assert_refused(repo, setup, args, fragments)


def test_one_dvc_lookup_finds_each_tracker(repo: Path, tmp_path: Path, monkeypatch) -> None:
    """Many paths, one Repo: each gets what DVC's `find_outs_by_path` says of it alone (the
    tables above), however spelled, and a path outside the project gets None."""
    monkeypatch.chdir(repo)  # DVC names a stage file relative to the working directory
    expected = {
        repo / RAW: PIN,
        repo / f"models/../{RAW}": PIN,
        repo / "models/model.pkl": "dvc.yaml stage 'train'",
        repo / "metrics/train/plots/new.tsv": "dvc.yaml stage 'train'",
        repo / BATCH: None,
        repo / "scores.csv.json": None,
        tmp_path / "elsewhere" / "scores.csv": None,
    }
    assert io.dvc_trackers(expected) == expected


def test_dvc_root_is_the_root_dvc_finds(tmp_path: Path) -> None:
    """The pre-check that spares `import dvc.repo` finds a project exactly where DVC does."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    project = tmp_path / "project"
    for folder in (project / ".dvc", project / "a" / "b", project / "sub" / ".dvc"):
        folder.mkdir(parents=True)
    (project / "a" / ".dvc").write_text("")  # a file of that name makes no project
    (tmp_path / "linked").mkdir()
    os.symlink(project / ".dvc", tmp_path / "linked" / ".dvc")
    (tmp_path / "elsewhere").mkdir()
    folders = [project, project / "a", project / "a" / "b", project / "sub", tmp_path / "linked"]
    folders += [tmp_path / "elsewhere", Path("/"), Path("/proc")]
    for folder in folders:
        try:
            found: Path | None = Path(Repo.find_root(str(folder)))
        except NotDvcRepoError:
            found = None
        assert io.dvc_root(folder) == found, folder
    assert io.dvc_root(project / "a" / "b") == project
    assert io.dvc_root(tmp_path / "elsewhere") is None


def test_predict_outside_any_project_does_not_import_dvc(repo: Path, tmp_path: Path) -> None:
    """Scores and record written where no DVC project lies need no DVC lookup (importing
    `dvc.repo` alone takes 2 s); inside one, the tables above still refuse."""
    out = tmp_path / "elsewhere" / "scores.csv"
    argv = [BIN / "predictflow", "predict", *MODEL, "--input", BATCH, "--output", out]
    result = run(argv, repo, PYTHONPROFILEIMPORTTIME="1")
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "predictflow.core.scoring" in imported  # the profile is there
    assert "dvc.repo" not in imported
    assert out.is_file() and out.with_name("scores.csv.json").is_file()


@pytest.mark.parametrize(("setup", "args", "fragments"), ensure_attacks)
def test_ensure_never_replaces_raw_data_that_differs_from_its_pin(
    repo, setup, args, fragments
) -> None:
    assert_refused(repo, setup, args, fragments)


# --- what must still work, and what a failed bootstrap leaves --------------------------------


def test_failed_bootstrap_leaves_no_file_for_dvc_repro_to_adopt(repo: Path) -> None:
    """A pin the generator cannot produce, no remote: no file left, and `dvc repro` then cannot
    rewrite the pin to whatever bytes were generated."""
    raw_removed(repo)
    pin_elsewhere(repo)
    before = state(repo)
    result = predictflow(repo, *ENSURE, check=False)
    assert_one_line_error(result, RAW, "regenerated md5", ELSEWHERE, "nothing was written")
    assert state(repo) == before
    dvc(repo, "repro", check=False)
    assert not os.path.lexists(repo / RAW)
    assert yaml.safe_load((repo / PIN).read_text())["outs"][0]["md5"] == ELSEWHERE
    assert git(repo, "diff", "--cached", "--name-only").stdout == ""


def test_predict_replaces_its_own_scores_and_force_a_users_file(repo: Path) -> None:
    """Scores predict wrote (its record's output_md5 matches) are replaced by a rerun; a user's
    file only with --force."""
    scores = ("predict", *MODEL, "--input", BATCH, "--output")
    predictflow(repo, *scores, "s.csv")
    first = (repo / "s.csv").read_bytes()
    predictflow(repo, *scores, "s.csv", "--threshold", "0.9")
    assert (repo / "s.csv").read_bytes() != first  # other labels at another threshold
    assert json.loads((repo / "s.csv.json").read_text())["threshold"] == 0.9
    users_notes(repo)
    predictflow(repo, *scores, "notes.csv", "--force")
    assert (repo / "notes.csv").read_text().startswith("customerID,churn_probability")


def test_synth_force_replaces_tracked_data(repo: Path) -> None:
    out = predictflow(repo, "data", "synth", "--rows", "50", "--force").stdout
    assert f"wrote 50 rows to {RAW}" in out
    assert len((repo / RAW).read_text().splitlines()) == 51


def test_report_replaces_its_own_page(repo: Path) -> None:
    """The page `report` wrote before is its own: a rerun replaces it."""
    predictflow(repo, "report", "--output", "reports/lineage.html")
    first = (repo / "reports/lineage.html").read_text()
    assert "by <code>predictflow report</code>" in first
    predictflow(repo, "report", "--output", "reports/lineage.html", "--version", "1")
    assert "details below are for version 1" in (repo / "reports/lineage.html").read_text()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: the scores of 2,000 customers do not fit (root only, as on CI)."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_during_predict_is_one_line_and_leaves_nothing(
    repo: Path, full_disk: Path
) -> None:
    lines = (repo / RAW).read_text().splitlines(keepends=True)[:2001]
    (repo / "big.csv").write_text("".join(lines))
    output = full_disk / "scores.csv"
    result = predictflow(
        repo, "predict", *MODEL, "--input", "big.csv", "--output", output, check=False
    )
    assert_one_line_error(
        result, str(output), "No space left on device", "nothing was written", "--output"
    )
    assert list(full_disk.iterdir()) == []
