"""The `s3remote` DVC remote against a real S3-compatible server (moto on 127.0.0.1).

Round trip on a copy of the project: endpoint and keys go to `.dvc/config.local` only, `dvc push`,
wipe the cache and the data, `dvc pull`, the md5 is the pin, `dvc status -c` is clean. Then what
users hit, through `predictflow.ops.remote_check.check_remote` (what `predictflow doctor` reports):
rejected keys and missing permissions (403, with moto's IAM checks switched on), a missing
bucket, an endpoint nobody listens on, no credentials at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from predictflow.lineage import evidence
from predictflow.ops.remote_check import RemoteCheck, check_remote

from .conftest import copy_project, dvc, git, predictflow
from .s3server import KEY, SECRET, S3Server, free_port, moto_server

pytestmark = pytest.mark.services

BUCKET = "predictflow-dvc-cache"
DATA = "data/customers.csv"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        server.create_bucket(BUCKET)
        yield server


def configure(repo: Path, name: str, endpoint: str, key: str | None, secret: str | None) -> None:
    """What the README tells a developer: everything machine- or person-specific is --local."""
    settings = {"endpointurl": endpoint, "access_key_id": key, "secret_access_key": secret}
    for option, value in settings.items():
        if value is not None:
            dvc(repo, "remote", "modify", "--local", name, option, value)


def add_local_remote(repo: Path, name: str, url: str) -> None:
    dvc(repo, "remote", "add", "--local", "--force", name, url)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Path:
    repo = copy_project(tmp_path_factory.mktemp("s3") / "repo")
    predictflow(repo, "data", "ensure")
    # `data ensure` may regenerate the file: put it in the cache (the .dvc pin is unchanged)
    dvc(repo, "commit", "-f", "-q", f"{DATA}.dvc")
    configure(repo, "s3remote", s3.endpoint, KEY, SECRET)
    return repo


def test_push_wipe_pull_round_trip_through_s3remote(repo: Path, s3: S3Server) -> None:
    tracked = (repo / ".dvc" / "config").read_text()
    assert "s3://predictflow-dvc-cache" in tracked
    for secret in (s3.endpoint, "endpointurl", "access_key_id", "secret_access_key"):
        assert secret not in tracked
    local = (repo / ".dvc" / "config.local").read_text()
    assert s3.endpoint in local and "secret_access_key" in local
    assert git(repo, "status", "--porcelain").stdout == ""  # config.local is git-ignored

    pinned = evidence.pinned_md5(repo / f"{DATA}.dvc")
    pushed = dvc(repo, "push", "-r", "s3remote", f"{DATA}.dvc")
    assert "1 file pushed" in pushed.stdout
    assert s3.keys(BUCKET) == [f"files/md5/{pinned[:2]}/{pinned[2:]}"]

    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / DATA).unlink()
    pulled = dvc(repo, "pull", "-r", "s3remote", f"{DATA}.dvc")
    assert "1 file" in pulled.stdout
    assert evidence.file_md5(repo / DATA) == pinned

    status = dvc(repo, "status", "-c", "-r", "s3remote", "--json", f"{DATA}.dvc")
    assert status.stdout.strip() == "{}"
    text = dvc(repo, "status", "-c", "-r", "s3remote", f"{DATA}.dvc").stdout
    assert "Cache and remote 's3remote' are in sync." in text
    assert git(repo, "status", "--porcelain").stdout == ""


def test_check_remote_ok_leaves_nothing_behind(repo: Path, s3: S3Server) -> None:
    before = s3.keys(BUCKET)
    result = check_remote(repo, "s3remote")
    assert result == RemoteCheck("s3remote", "s3://predictflow-dvc-cache", True)
    assert result.message() == (
        "remote 's3remote' (s3://predictflow-dvc-cache): ok (list, write, read, delete)"
    )
    assert s3.keys(BUCKET) == before


CREDENTIALS_FIX = (
    "set credentials that are valid for 's3remote': `dvc remote modify --local s3remote "
    "access_key_id ...` and `dvc remote modify --local s3remote secret_access_key ...` "
    "(stored in .dvc/config.local, never in .dvc/config), or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY in the environment"
)


def test_rejected_credentials_are_a_403_naming_remote_operation_and_fix(
    repo: Path, s3: S3Server
) -> None:
    # With moto's IAM checks on, the configured key "testing" is unknown: real AWS says the same.
    with s3.authentication():
        result = check_remote(repo, "s3remote")
        push = dvc(repo, "push", "-r", "s3remote", f"{DATA}.dvc", check=False)
    assert result == RemoteCheck(
        remote="s3remote",
        url="s3://predictflow-dvc-cache",
        ok=False,
        operation="list s3://predictflow-dvc-cache",
        problem="access denied: the server rejects the credentials (403 InvalidAccessKeyId: "
        "The AWS Access Key Id you provided does not exist in our records)",
        fix=CREDENTIALS_FIX,
    )
    assert push.returncode != 0  # what the user saw before asking `predictflow doctor`


@pytest.mark.parametrize(
    ("allowed", "operation", "needed", "resource"),
    [
        (["s3:GetObject"], "list s3://predictflow-dvc-cache", "s3:ListBucket", ""),
        (
            ["s3:ListBucket", "s3:GetObject"],
            "write s3://predictflow-dvc-cache/.predictflow-probe-",
            "s3:PutObject",
            "/*",
        ),
    ],
    ids=["no-list", "read-only"],
)
def test_missing_permission_is_a_403_naming_the_iam_action(
    repo: Path, s3: S3Server, allowed: list[str], operation: str, needed: str, resource: str
) -> None:
    name = f"user-{needed.split(':')[1].lower()}"
    key, secret = s3.iam_user(name, allowed, BUCKET)
    add_local_remote(repo, name, f"s3://{BUCKET}")
    configure(repo, name, s3.endpoint, key, secret)
    with s3.authentication():
        result = check_remote(repo, name)
    assert not result.ok
    assert result.operation.startswith(operation)
    assert result.problem == "access denied (403 AccessDenied: Access Denied)"
    assert result.fix == (
        f"grant {needed} on arn:aws:s3:::{BUCKET}{resource} to the credentials DVC uses for "
        f"'{name}', or switch to credentials that have it (`dvc remote modify --local {name} "
        "access_key_id ...` / `secret_access_key ...`, or AWS_* environment)"
    )
    assert not [key for key in s3.keys(BUCKET) if "predictflow-probe" in key]


def test_missing_bucket_says_how_to_create_it(repo: Path, s3: S3Server) -> None:
    add_local_remote(repo, "gone", "s3://predictflow-no-such-bucket/dvc")
    configure(repo, "gone", s3.endpoint, KEY, SECRET)
    result = check_remote(repo, "gone")
    assert result == RemoteCheck(
        remote="gone",
        url="s3://predictflow-no-such-bucket/dvc",
        ok=False,
        operation="list s3://predictflow-no-such-bucket/dvc",
        problem=f"bucket 'predictflow-no-such-bucket' does not exist at {s3.endpoint}",
        fix="create it (`aws s3 mb s3://predictflow-no-such-bucket --endpoint-url "
        f"{s3.endpoint}`, or ask whoever runs the storage), or point the remote at an existing "
        "bucket: `dvc remote modify gone url s3://BUCKET/PATH`",
    )


def test_empty_prefix_in_an_existing_bucket_is_fine(repo: Path, s3: S3Server) -> None:
    add_local_remote(repo, "fresh", f"s3://{BUCKET}/not/pushed/yet")
    configure(repo, "fresh", s3.endpoint, KEY, SECRET)
    assert check_remote(repo, "fresh").ok


def test_unreachable_endpoint_fails_fast(repo: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    add_local_remote(repo, "down", f"s3://{BUCKET}")
    configure(repo, "down", endpoint, KEY, SECRET)
    result = check_remote(repo, "down")
    assert result == RemoteCheck(
        remote="down",
        url="s3://predictflow-dvc-cache",
        ok=False,
        operation=f"connect {endpoint}",
        problem=f"endpoint {endpoint} is unreachable (connection refused)",
        fix=f"start the S3 server at {endpoint} or correct the endpoint: "
        "`dvc remote modify --local down endpointurl URL`",
    )


def test_no_credentials_anywhere(
    repo: Path, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    add_local_remote(repo, "anonymous", f"s3://{BUCKET}")
    configure(repo, "anonymous", s3.endpoint, None, None)
    result = check_remote(repo, "anonymous")
    assert (result.ok, result.operation, result.problem) == (
        False,
        "list s3://predictflow-dvc-cache",
        "no credentials found",
    )
    assert result.fix == CREDENTIALS_FIX.replace("s3remote", "anonymous")


def test_unknown_remote_lists_the_configured_ones(repo: Path) -> None:
    result = check_remote(repo, "nope")
    assert (result.ok, result.operation) == (False, "configure")
    assert result.problem == "config file error: remote 'nope' doesn't exist"
    assert result.fix.startswith("use one of the remotes in .dvc/config (configured: ")
    assert "local" in result.fix and "s3remote" in result.fix


def test_default_remote_is_the_local_directory_and_stays_untouched(repo: Path) -> None:
    directory = (repo.parent / "predictflow-dvc-remote").resolve()
    existed = directory.exists()
    result = check_remote(repo)
    assert (result.remote, result.url, result.ok) == ("local", str(directory), True)
    assert directory.exists() == existed
