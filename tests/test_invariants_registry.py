"""Invariants of the registry (issue 11, promises 2 and 3), held against a real MLflow store.

- Random sequences of alias moves: after every step the legacy stage mirrors the aliases, both
  URI forms resolve to the alias holder, and every audit event says what the version held.
- Attacks on a real pipeline copy (each a row): a refused attack exits non-zero with exactly one
  error line, leaves the registry and aliases as they were and no RUNNING run behind.
- A promotion SIGKILLed between moving the alias and confirming its audit record is reported by
  `doctor` and completed by the next `promote`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from predictflow.lineage import evidence, registry
from predictflow.lineage.access import Caller
from predictflow.lineage.names import MODEL_NAME

from .conftest import (
    BIN,
    Result,
    assert_one_line_error,
    copy_built_repo,
    dvc,
    git,
    predictflow,
    run,
    stage_error_line,
)

TESTS = Caller("tests", verified=False)  # who the audit records for moves made here

pytestmark = pytest.mark.pipeline

ALIASES = ("staging", "production")


# ---------------------------------------------------------------------------------------------
# Property: any sequence of alias moves keeps stages, URIs and the audit trail consistent.


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One fresh SQLite store for the module (creating its tables takes seconds)."""
    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    return uri  # the tests make it the default; conftest's mlflow_uris_restored undoes that


@pytest.fixture
def store_client(store: str, tmp_path: Path):
    """A client on the store whose registry holds exactly three fresh versions, no aliases."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(store)
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    with contextlib.suppress(MlflowException):
        client.delete_registered_model(MODEL_NAME)
    client.create_registered_model(MODEL_NAME)
    for number in range(3):
        source = tmp_path / f"model-{number}"
        source.mkdir()
        client.create_model_version(MODEL_NAME, str(source))
    return client


def expected_stage(held: set[str], ever_held: bool) -> str:
    if "production" in held:
        return "Production"
    if "staging" in held:
        return "Staging"
    return "Archived" if ever_held else "None"


def resolved(client, uri: str) -> str | None:
    """The version MLflow itself loads for a `models:/` URI, or None when it finds none."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    try:
        return str(get_model_name_and_version(client, uri)[1])
    except MlflowException:
        return None


def check_invariant(client, held: dict[str, set[str]], ever: set[str]) -> None:
    """What must hold after every step, whatever the sequence."""
    for number, aliases in held.items():
        version = client.get_model_version(MODEL_NAME, number)
        assert set(version.aliases) == aliases
        assert version.current_stage == expected_stage(aliases, number in ever), number
    for alias, stage in registry.ALIAS_STAGES.items():
        holders = [n for n, aliases in held.items() if alias in aliases]
        by_alias = resolved(client, f"models:/{MODEL_NAME}@{alias}")
        by_stage = resolved(client, f"models:/{MODEL_NAME}/{stage}")
        assert [by_alias] == holders if holders else by_alias is None
        if alias == "staging" and holders and "production" in held[holders[0]]:
            assert by_stage is None  # its holder is Production, so no version is in Staging
        else:
            assert by_stage == by_alias, f"models:/{MODEL_NAME}/{stage} loads another version"
    assert registry.audit_gaps(client) == []


def step(client, held, ever, alias: str, number: str) -> None:
    before = set(held[number])
    event = registry.move_alias(client, alias, number, TESTS, f"{alias} -> {number}")
    if alias in before:
        assert event is None  # already there: nothing to record
        return
    for aliases in held.values():
        aliases.discard(alias)
    held[number].add(alias)
    ever.add(number)
    assert event is not None and event["status"] == "done"
    assert event["from"] == (",".join(sorted(before)) or "none")
    assert event["holds"] == ",".join(sorted(held[number]))
    assert registry.promotion_history(client.get_model_version(MODEL_NAME, number))[-1] == event


def test_the_issue_sequence_keeps_production_on_version_1(store_client) -> None:
    """promote 1 -> production, 2 -> staging, 1 -> staging: v1 holds both and stays Production."""
    held: dict[str, set[str]] = {"1": set(), "2": set(), "3": set()}
    ever: set[str] = set()
    steps = [("staging", "1"), ("production", "1"), ("staging", "2"), ("staging", "1")]
    for alias, number in steps:
        step(store_client, held, ever, alias, number)
        check_invariant(store_client, held, ever)
    assert store_client.get_model_version(MODEL_NAME, "1").current_stage == "Production"
    assert store_client.get_model_version(MODEL_NAME, "2").current_stage == "Archived"
    last = registry.promotion_history(store_client.get_model_version(MODEL_NAME, "1"))[-1]
    assert (last["from"], last["to"]) == ("production", "staging")
    assert last["holds"] == "production,staging"


@pytest.mark.parametrize("seed", range(4))
def test_random_promotion_sequences_keep_the_invariant(store_client, seed: int) -> None:
    rng = random.Random(seed)
    held: dict[str, set[str]] = {"1": set(), "2": set(), "3": set()}
    ever: set[str] = set()
    for _ in range(12):
        step(store_client, held, ever, rng.choice(ALIASES), rng.choice(sorted(held)))
        check_invariant(store_client, held, ever)


@pytest.mark.parametrize("skew_hours", [-2, -0.001, 3])
def test_a_client_clock_off_by_hours_orders_no_move_wrongly(
    store_client, monkeypatch, skew_hours: float
) -> None:
    """Each move is numbered under its alias's lock: a promotion from a client whose clock is
    behind (or ahead) is still the newest move, so its record is found and no gap reported."""
    from datetime import UTC, datetime, timedelta

    step(store_client, {"1": set(), "2": set(), "3": set()}, set(), "staging", "1")
    skewed = datetime.now(UTC) + timedelta(hours=skew_hours)
    monkeypatch.setattr(registry, "_now", lambda: skewed.isoformat(timespec="microseconds"))
    for number, reason in (("2", "from a skewed clock"), ("3", "the right clock again")):
        registry.move_alias(store_client, "staging", number, TESTS, reason)
        monkeypatch.undo()
        assert registry.audit_gaps(store_client) == []
        latest = registry.latest_move(store_client, "staging", number)
        assert latest is not None and (latest.version, latest.event["reason"]) == (number, reason)


MOVE_IN_CHILD = (
    "import sys; import mlflow; from predictflow.lineage import registry; "
    "from predictflow.lineage.access import Caller; uri = sys.argv[1]; "
    "registry.move_alias(mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), "
    "'production', '2', Caller('tests', verified=False), 'release')"
)


@pytest.mark.parametrize(
    ("fault", "gap"),
    [
        ("promote:audit-pending", "production: version 2 has a pending audit record for a move"),
        ("promote:alias-moved", "production -> version 2: its audit record is still pending"),
    ],
)
def test_a_move_killed_half_way_is_reported_then_completed(
    store: str, store_client, fault: str, gap: str
) -> None:
    """A real SIGKILL at each step of a move, in a child process on the same store."""
    step(store_client, {"1": set(), "2": set(), "3": set()}, set(), "production", "1")
    killed = run(
        [BIN / "python", "-c", MOVE_IN_CHILD, store],
        Path.cwd(),
        check=False,
        PREDICTFLOW_FAULT=fault,
        MLFLOW_TRACKING_URI=store,
    )
    assert killed.returncode == -9, killed.stderr
    (found,) = [g for g in registry.audit_gaps(store_client) if "pending" in g]
    assert gap in found
    event = registry.move_alias(store_client, "production", "2", TESTS, "release again")
    assert event is not None and event["status"] == "done"
    held = {"1": set(), "2": {"production"}, "3": set()}
    check_invariant(store_client, held, {"1", "2"})
    statuses = [
        e["status"]
        for e in registry.promotion_history(store_client.get_model_version(MODEL_NAME, "2"))
    ]
    assert statuses == (["aborted", "done"] if fault.endswith("pending") else ["done"])


def test_an_alias_moved_behind_the_trail_is_reported_then_recorded(store_client) -> None:
    """An alias set without an audit record (an older version of this tool, a manual call)."""
    store_client.set_registered_model_alias(MODEL_NAME, "staging", "3")
    assert registry.audit_gaps(store_client) == [
        "staging -> version 3 has no audit record for that move",
        "version 3 holds staging but its legacy stage is None (should be Staging)",
    ]
    event = registry.move_alias(store_client, "staging", "3", TESTS, "found it")
    assert event is not None and event["from"] == "unknown"
    assert "recorded after the fact" in event["reason"]
    check_invariant(store_client, {"1": set(), "2": set(), "3": {"staging"}}, {"3"})


# ---------------------------------------------------------------------------------------------
# Attacks on a real pipeline copy: version 1 from a sealed `dvc repro` (holds staging),
# version 2 from a weak `dvc exp run` (no alias).


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_built_repo(built_repo, tmp_path_factory.mktemp("invariants") / "repo")
    assert git(repo, "status", "--porcelain").stdout == ""  # the lock pinning v1 is committed
    dvc(repo, "exp", "run", "-S", "model.n_estimators=3", "-S", "model.max_depth=2", "-n", "weak")
    git(repo, "reset", "-q", "--hard")
    dvc(repo, "checkout", "-f", "-q")
    return repo


def client_of(repo: Path):
    import mlflow

    uri = f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def snapshot(repo: Path) -> dict[str, tuple[object, ...]]:
    """Every version with its aliases, legacy stage and tags (the audit trail included)."""
    versions = client_of(repo).search_model_versions(f"name = '{MODEL_NAME}'")
    return {
        str(v.version): (sorted(v.aliases), v.current_stage, dict(sorted(v.tags.items())))
        for v in versions
    }


def running_runs(repo: Path) -> list[str]:
    client = client_of(repo)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "attributes.status = 'RUNNING'")
    return [r.info.run_id for r in runs]


def artifact_file(repo: Path, version: str) -> Path:
    """The stored model.pkl of a version, found on disk by its md5 tag."""
    md5 = client_of(repo).get_model_version(MODEL_NAME, version).tags["model_md5"]
    (path,) = [p for p in (repo / "mlflow_data").rglob("model.pkl") if evidence.file_md5(p) == md5]
    return path


@contextlib.contextmanager
def swapped_artifact(repo: Path) -> Iterator[None]:
    """Version 1's stored model replaced by version 2's bytes (another, valid model)."""
    target = artifact_file(repo, "1")
    original = target.read_bytes()
    target.write_bytes(artifact_file(repo, "2").read_bytes())
    try:
        yield
    finally:
        target.write_bytes(original)


@contextlib.contextmanager
def deleted_artifacts(repo: Path) -> Iterator[None]:
    """Version 1's artifacts folder gone (moved aside, put back afterwards)."""
    folder = artifact_file(repo, "1").parent
    aside = folder.with_name("artifacts.aside")
    folder.rename(aside)
    try:
        yield
    finally:
        aside.rename(folder)


@contextlib.contextmanager
def forged_metrics(repo: Path) -> Iterator[None]:
    """metrics/eval.json claiming a better AUC, with the same size and mtime as the real one."""
    dvc(repo, "status")  # DVC now holds the file's md5 in its mtime cache, as after any run
    path = repo / "metrics/eval.json"
    original, stat = path.read_bytes(), path.stat()
    metrics = json.loads(original)
    real = f"{metrics['roc_auc']:.6f}"
    forged = original.replace(real.encode(), f"{min(float(real) + 0.1, 0.999999):.6f}".encode())
    assert forged != original and len(forged) == len(original)
    path.write_bytes(forged)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    try:
        yield
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@contextlib.contextmanager
def edited_params(repo: Path, old: str, new: str) -> Iterator[None]:
    """params.yaml with one value changed; the workspace reset to HEAD afterwards."""
    path = repo / "params.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    try:
        yield
    finally:
        git(repo, "reset", "-q", "--hard")
        dvc(repo, "checkout", "-f", "-q")


SPLIT = "data/prepared/test.parquet"


@contextlib.contextmanager
def forged_split(repo: Path, pin: bool = False, remove: bool = False) -> Iterator[None]:
    """The workspace's held-out split replaced by rows the model trained on (as another seed's
    split, left by `git checkout` without `dvc checkout`, would hold ~80% of); with `pin`,
    dvc.lock edited to record the forged file's md5 too; with `remove`, the split is gone."""
    import pandas as pd

    path, lock = repo / SPLIT, repo / "dvc.lock"
    original, lock_text = path.read_bytes(), lock.read_text()
    if remove:
        path.unlink()
    else:
        held_out = pd.read_parquet(path)
        trained_on = pd.read_parquet(repo / "data/prepared/train.parquet").head(len(held_out))
        trained_on.to_parquet(path, index=False)
        if pin:
            lock.write_text(
                lock_text.replace(hashlib.md5(original).hexdigest(), evidence.file_md5(path))
            )
    try:
        yield
    finally:
        path.write_bytes(original)
        lock.write_text(lock_text)


def held_out_csv(repo: Path) -> Path:
    """A few raw-layout rows to score."""
    lines = (repo / "data/customers.csv").read_text().splitlines(keepends=True)[:30]
    path = repo.parent / "rows.csv"
    path.write_text("".join(lines))
    return path


@dataclass(frozen=True)
class Attack:
    name: str
    setup: Callable[[Path], contextlib.AbstractContextManager[None]]
    command: Callable[[Path], Result]
    check: Callable[[Result], str]  # asserts the one error line, returns it


def promote(*args: str) -> Callable[[Path], Result]:
    return lambda repo: predictflow(repo, "promote", *args, check=False)


def predict(repo: Path) -> Result:
    output = repo.parent / "scores.csv"
    result = predictflow(
        repo,
        "predict",
        "--model",
        f"models:/{MODEL_NAME}@staging",
        "--input",
        held_out_csv(repo),
        "--output",
        output,
        check=False,
    )
    assert not output.exists()
    return result


def version_1_uris(repo: Path) -> dict[str, str]:
    """Every way to name version 1's model that MLflow loads: run, logged model, folder."""
    version = client_of(repo).get_model_version(MODEL_NAME, "1")
    logged = version.source.removeprefix("models:/")  # MLflow 3: the logged model's m-<id>
    (folder,) = (repo / "mlflow_data").rglob(f"{logged}/artifacts")
    return {
        "runs": f"runs:/{version.run_id}/model",
        "logged": version.source,
        "path": str(folder),
        "file": folder.as_uri(),
    }


def predict_with(form: str, role: str = "model") -> Callable[[Path], Result]:
    """`predict` naming version 1 by `form` as the model, or as the shadow of version 2."""

    def command(repo: Path) -> Result:
        uri = version_1_uris(repo)[form]
        output = repo.parent / "scores.csv"
        models = ["--model", uri] if role == "model" else ["--model", "2", "--shadow", uri]
        result = predictflow(
            repo,
            "predict",
            *models,
            "--input",
            held_out_csv(repo),
            "--output",
            output,
            check=False,
        )
        assert not output.exists()
        return result

    return command


def repro_register(repo: Path) -> Result:
    """Only the register stage, as `dvc repro -s -f register` runs it (DVC's status is fooled)."""
    return dvc(repo, "repro", "-s", "-f", "register", check=False)


def repro(repo: Path) -> Result:
    return dvc(repo, "repro", check=False)


ATTACKS = [
    Attack(
        "swapped artifact: promote",
        swapped_artifact,
        promote("1", "--to", "production", "--reason", "attack"),
        lambda r: assert_one_line_error(
            r, "version 1: artifact model.pkl has md5", "model_md5 tag", "refusing"
        ),
    ),
    Attack(
        "swapped artifact: predict",
        swapped_artifact,
        predict,
        lambda r: assert_one_line_error(r, "version 1: artifact model.pkl has md5", "refusing"),
    ),
    *(
        Attack(
            f"swapped artifact: predict {role} by {form} URI",
            swapped_artifact,
            predict_with(form, role),
            lambda r: assert_one_line_error(
                r, "artifact model.pkl has md5", "model_md5 tag of run", "refusing"
            ),
        )
        for form in ("runs", "logged", "path", "file")
        for role in ("model", "shadow")
    ),
    Attack(
        "swapped artifact: drift",
        swapped_artifact,
        lambda repo: predictflow(
            repo, "drift", "--model", "1", "--input", held_out_csv(repo), check=False
        ),
        lambda r: assert_one_line_error(r, "version 1: artifact model.pkl has md5", "refusing"),
    ),
    Attack(
        "training rows as the workspace's held-out split: promote production",
        forged_split,
        promote("1", "--to", "production", "--allow-dirty"),
        lambda r: assert_one_line_error(
            r, f"{SPLIT} has md5", "but dvc.lock records", f"dvc checkout {SPLIT}"
        ),
    ),
    Attack(
        "training rows as the held-out split, pinned in dvc.lock: promote production",
        lambda repo: forged_split(repo, pin=True),
        promote("1", "--to", "production", "--allow-dirty"),
        lambda r: assert_one_line_error(
            r,
            "version 1 was trained beside held-out split",
            "base.seed 42",
            "not the one dvc.lock pins",
            "its training rows may be among the gate's rows",
        ),
    ),
    Attack(
        "held-out split missing: promote production",
        lambda repo: forged_split(repo, remove=True),
        promote("1", "--to", "production"),
        lambda r: assert_one_line_error(r, f"{SPLIT}: cannot read it", "dvc checkout"),
    ),
    Attack(
        "artifacts folder deleted: promote",
        deleted_artifacts,
        promote("1", "--to", "production"),
        lambda r: assert_one_line_error(r, "version 1: its artifacts cannot be read"),
    ),
    Attack(
        "forged eval.json, same size and mtime: register",
        forged_metrics,
        repro_register,
        lambda r: stage_error_line(
            r, "register", "metrics/eval.json: md5", "differs from dvc.lock"
        ),
    ),
    Attack(
        "4% held-out split: dvc repro registers nothing",
        lambda repo: edited_params(repo, "test_size: 0.2", "test_size: 0.02"),
        repro,
        lambda r: stage_error_line(
            r,
            "register",
            "data/prepared/test.parquet: held-out split too small",
            "(register.min_test_rows 200)",
            "(register.min_test_class_rows 30)",
            "nothing registered",
        ),
    ),
    Attack(
        "held-out minimum above the version's split: promote --to staging",
        lambda repo: edited_params(repo, "min_test_rows: 200", "min_test_rows: 100000"),
        promote("2", "--to", "staging"),
        lambda r: assert_one_line_error(
            r, "gate 'held-out size' failed", "(register.min_test_rows 100000)"
        ),
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_a_refused_attack_changes_nothing(repo: Path, attack: Attack) -> None:
    before = snapshot(repo)
    with attack.setup(repo):
        result = attack.command(repo)
    attack.check(result)
    assert snapshot(repo) == before
    assert running_runs(repo) == []


def test_a_promotion_killed_after_moving_the_alias_is_reported_and_completed(repo: Path) -> None:
    """SIGKILL between moving `production` and confirming its audit record."""
    killed = run(
        [BIN / "predictflow", "promote", "1", "--to", "production", "--reason", "release"],
        repo,
        check=False,
        PREDICTFLOW_FAULT="promote:alias-moved",
    )
    assert killed.returncode == -9, killed.stderr
    client = client_of(repo)
    assert registry.holder(client, "production").version == 1
    doctor = json.loads(predictflow(repo, "doctor", "--json", check=False).stdout)["findings"]
    (audit,) = [f for f in doctor if f["check"] == "alias audit"]
    assert audit["status"] == "problem"
    assert "production -> version 1: its audit record is still pending" in audit["detail"]

    again = predictflow(repo, "promote", "1", "--to", "production", "--reason", "release")
    assert "already holds production; its audit record was pending and is now complete" in (
        again.stdout
    )
    doctor = json.loads(predictflow(repo, "doctor", "--json", check=False).stdout)["findings"]
    (audit,) = [f for f in doctor if f["check"] == "alias audit"]
    assert audit["status"] == "ok", audit
    view = json.loads(predictflow(repo, "lineage", "1", "--json").stdout)
    assert view["stage"] == "Production"
    last = view["promotions"][-1]
    assert (last["to"], last["status"], last["from"]) == ("production", "done", "staging")
    assert running_runs(repo) == []


def test_lineage_never_shows_another_versions_register_hashes(repo: Path) -> None:
    """Version 2 was registered while dvc.lock still held version 1's `register` entry."""
    view = json.loads(predictflow(repo, "lineage", "2", "--json").stdout)
    assert set(view["stages"]) == {"prepare", "featurize", "train", "evaluate"}
    assert view["stages"]["train"]["outs"]["models/model.pkl"] == view["model_md5"]
    text = predictflow(repo, "lineage", "2").stdout
    assert "register              not recorded: dvc.lock gets its entry only after" in text


def test_a_model_folder_no_run_vouches_for_is_refused(repo: Path) -> None:
    """A copy of a real model folder whose MLmodel names no run (or a run this store lacks):
    its bytes are intact, but nothing recorded them, so no door loads it."""
    import shutil

    source = artifact_file(repo, "1").parent
    for name, edit in (
        ("no-run", lambda text: "\n".join(x for x in text.splitlines() if "run_id" not in x)),
        ("foreign-run", lambda text: text.replace("run_id: ", "run_id: 0000")),
    ):
        folder = repo.parent / name
        shutil.copytree(source, folder)
        (folder / "MLmodel").write_text(edit((folder / "MLmodel").read_text()))
        output = repo.parent / f"{name}.csv"
        result = predictflow(
            repo,
            "predict",
            "--model",
            folder,
            "--input",
            held_out_csv(repo),
            "--output",
            output,
            check=False,
        )
        expected = "no run is recorded" if name == "no-run" else "is not in this tracking store"
        assert_one_line_error(result, str(folder), expected, "load a registered version")
        assert not output.exists()


def test_the_gate_scores_only_the_split_both_versions_were_held_out_from(
    built_repo: Path, tmp_path: Path
) -> None:
    """The attack as a user meets it: an experiment with another seed is registered (v2), then
    `git checkout -- .` restores the code but leaves that seed's split in the workspace. The
    gate refuses those rows; after `dvc checkout` v1 goes to production on the proven split;
    v2, trained beside another split (~80% of v1's held-out rows in its training set), is
    refused against it with or without --allow-dirty."""
    repo = copy_built_repo(built_repo, tmp_path / "repo")
    dvc(repo, "exp", "run", "-S", "base.seed=7", "-n", "seed7")
    git(repo, "checkout", "--", ".")
    refused = predictflow(repo, "promote", "1", "--to", "production", check=False)
    assert_one_line_error(refused, f"{SPLIT} has md5", "but dvc.lock records")
    dvc(repo, "checkout", "-q")
    predictflow(repo, "promote", "1", "--to", "production", "--reason", "first release")
    predictflow(repo, "promote", "2", "--to", "staging")
    for flags in ((), ("--allow-dirty",)):
        result = predictflow(repo, "promote", "2", "--to", "production", *flags, check=False)
        assert_one_line_error(
            result,
            "version 2 was trained beside held-out split",
            "base.seed 7",
            "base.seed 42",
            "its training rows may be among the gate's rows",
        )
    assert registry.holder(client_of(repo), "production").version == 1
