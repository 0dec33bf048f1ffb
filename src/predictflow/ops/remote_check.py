"""Can this machine use a DVC remote? List it, write, read and delete a probe object; say why not.

`dvc push` on a misconfigured S3 remote fails with a botocore message that names neither the
remote nor the fix. `check_remote` goes through DVC's own configuration (`.dvc/config`,
`.dvc/config.local`, the AWS_* environment) and the remote's filesystem, exactly as `dvc push`
would, and turns the first failure into one `RemoteCheck`: which remote, which operation, what
went wrong, and what to do about it. Nothing is left behind on the remote.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROBE_PREFIX = ".predictflow-probe-"
PROBE_BYTES = b"predictflow remote check\n"
CONNECT_TIMEOUT = 3.0

# S3 error codes (also what s3fs maps to PermissionError), grouped by what the user has to fix.
BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
}
DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
# The IAM action each probe operation needs on an S3 remote.
S3_ACTIONS = {
    "list": "s3:ListBucket",
    "write": "s3:PutObject",
    "read": "s3:GetObject",
    "delete": "s3:DeleteObject",
}


@dataclass(frozen=True)
class RemoteCheck:
    """The outcome for one remote; `operation`, `problem` and `fix` are set when `ok` is false."""

    remote: str
    url: str
    ok: bool
    operation: str | None = None  # e.g. "list s3://predictflow-dvc-cache"
    problem: str | None = None
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self) -> str:
        """One line for a person: `remote 's3remote' (s3://...): ok` or what failed and why."""
        head = f"remote {self.remote!r} ({self.url or 'no url'})"
        if self.ok:
            return f"{head}: ok (list, write, read, delete)"
        return f"{head}: {self.operation} failed: {self.problem}; fix: {self.fix}"


class _Failed(Exception):
    def __init__(self, operation: str, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.operation, self.problem, self.fix = operation, problem, fix


def check_remote(repo_root: Path, remote: str | None = None) -> RemoteCheck:
    """Probe `remote` (default: the repository's default remote) the way `dvc push` reaches it."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    name, url = remote or "(default)", ""
    try:
        with Repo(str(repo_root)) as repo:
            name = remote or repo.config["core"].get("remote") or "(default)"
            try:
                found = repo.cloud.get_remote(remote)
            except DvcException as err:
                return RemoteCheck(
                    remote=name,
                    url="",
                    ok=False,
                    operation="configure",
                    problem=_first_line(err),
                    fix=_configure_fix(repo, remote),
                )
            config = dict(repo.config["remote"].get(found.name, {}))
            url = found.fs.unstrip_protocol(found.path)
            _probe(found.name, found.fs, found.path, url, config)
    except _Failed as failed:
        return RemoteCheck(name, url, False, failed.operation, failed.problem, failed.fix)
    except DvcException as err:  # not a DVC repository, unreadable config
        return RemoteCheck(name, url, False, "configure", _first_line(err), "run it in a DVC repo")
    return RemoteCheck(remote=name, url=url, ok=True)


def _configure_fix(repo: Any, remote: str | None) -> str:
    known = sorted(repo.config["remote"])
    listed = f" (configured: {', '.join(known)})" if known else " (none configured)"
    if remote:
        return f"use one of the remotes in .dvc/config{listed}, or `dvc remote add {remote} URL`"
    return f"`dvc remote default NAME`{listed}, or pass the remote's name"


def _probe(name: str, fs: Any, path: str, url: str, config: dict[str, Any]) -> None:
    s3 = str(config.get("url", "")).startswith(("s3://", "s3a://"))
    if s3:
        _check_endpoint(name, config)
    bucket = path.split("/", 1)[0]
    probe = fs.join(path, f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}")
    probe_url = fs.unstrip_protocol(probe)

    operation = f"list {url}"
    try:
        fs.ls(path, detail=False)
    except FileNotFoundError as err:
        # An S3 prefix that holds nothing yet "does not exist"; the bucket itself must. A local
        # remote's directory is created by the first `dvc push` (and by the write below).
        if s3 and (_error_code(err) == "NoSuchBucket" or path == bucket):
            raise _classify(name, "list", operation, err, bucket, config) from None
        if s3:
            try:
                fs.ls(bucket, detail=False)
            except Exception as bucket_err:
                raise _classify(name, "list", operation, bucket_err, bucket, config) from None
    except Exception as err:  # every failure is classified for the user
        raise _classify(name, "list", operation, err, bucket, config) from None

    steps = (
        ("write", lambda: fs.pipe_file(probe, PROBE_BYTES)),
        ("read", lambda: fs.cat_file(probe)),
        ("delete", lambda: fs.rm_file(probe)),
    )
    left_behind = False
    made_dir = fs.protocol == "local" and not fs.exists(path)
    try:
        for verb, step in steps:
            operation = f"{verb} {probe_url}"
            try:
                if verb == "write" and fs.protocol == "local":
                    fs.makedirs(path, exist_ok=True)
                got = step()
            except Exception as err:
                raise _classify(name, verb, operation, err, bucket, config) from None
            left_behind = verb != "delete"
            if verb == "read" and got != PROBE_BYTES:
                raise _Failed(
                    operation,
                    f"read back {len(got)} bytes that differ from the {len(PROBE_BYTES)} written",
                    "check the remote's storage (a proxy or gateway rewriting objects?)",
                )
    finally:
        if left_behind:  # a read failed after the write: don't leave the probe there
            with contextlib.suppress(Exception):
                fs.rm_file(probe)
        if made_dir:  # `dvc push` creates a local remote's directory; the check leaves none
            with contextlib.suppress(OSError):
                os.rmdir(path)


def _endpoint(config: dict[str, Any]) -> str | None:
    return (
        config.get("endpointurl")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


def _check_endpoint(name: str, config: dict[str, Any]) -> None:
    """Fail in seconds, not after botocore's retries, when an explicit endpoint is down."""
    endpoint = _endpoint(config)
    if not endpoint:
        return
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as err:
        raise _Failed(
            f"connect {endpoint}",
            f"endpoint {endpoint} is unreachable ({_socket_reason(err)})",
            _unreachable_fix(name, endpoint),
        ) from None


def _socket_reason(err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, TimeoutError | socket.timeout):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(err, socket.gaierror):
        return "host name not found"
    return err.strerror or type(err).__name__


def _unreachable_fix(name: str, endpoint: str) -> str:
    return (
        f"start the S3 server at {endpoint} or correct the endpoint: "
        f"`dvc remote modify --local {name} endpointurl URL`"
    )


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _error_code(err: BaseException) -> str | None:
    """The S3 error code (`AccessDenied`, `NoSuchBucket`, `403`) behind an s3fs exception."""
    for link in _chain(err):
        response = getattr(link, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
    return None


def _server_message(err: BaseException) -> str:
    for link in _chain(err):
        response = getattr(link, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Message"):
            return str(response["Error"]["Message"])
    return _first_line(err)


def _credentials_fix(name: str) -> str:
    return (
        f"set credentials that are valid for {name!r}: `dvc remote modify --local {name} "
        f"access_key_id ...` and `dvc remote modify --local {name} secret_access_key ...` "
        "(stored in .dvc/config.local, never in .dvc/config), or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY in the environment"
    )


def _classify(
    name: str, verb: str, operation: str, err: BaseException, bucket: str, config: dict[str, Any]
) -> _Failed:
    from botocore.exceptions import (
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    code = _error_code(err)
    chain = _chain(err)
    s3 = str(config.get("url", "")).startswith(("s3://", "s3a://"))
    if any(isinstance(e, NoCredentialsError | PartialCredentialsError) for e in chain):
        return _Failed(operation, "no credentials found", _credentials_fix(name))
    if code in BAD_CREDENTIALS:
        return _Failed(
            operation,
            f"access denied: the server rejects the credentials (403 {code}: "
            f"{_server_message(err).rstrip('.')})",
            _credentials_fix(name),
        )
    if code == "NoSuchBucket" or (s3 and verb == "list" and isinstance(err, FileNotFoundError)):
        endpoint = _endpoint(config)
        where, flag = (f" at {endpoint}", f" --endpoint-url {endpoint}") if endpoint else ("", "")
        return _Failed(
            operation,
            f"bucket {bucket!r} does not exist{where}",
            f"create it (`aws s3 mb s3://{bucket}{flag}`, or ask whoever runs the storage), "
            f"or point the remote at an existing bucket: `dvc remote modify {name} url "
            "s3://BUCKET/PATH`",
        )
    if code in DENIED or isinstance(err, PermissionError):
        detail = f"403 {code}: {_server_message(err).rstrip('.')}" if code else _first_line(err)
        if not s3:
            return _Failed(
                operation,
                f"access denied ({detail})",
                f"give this user {verb} permission on {operation.split(' ', 1)[1]}",
            )
        resource = f"arn:aws:s3:::{bucket}" + ("" if verb == "list" else "/*")
        return _Failed(
            operation,
            f"access denied ({detail})",
            f"grant {S3_ACTIONS[verb]} on {resource} to the credentials DVC uses for "
            f"{name!r}, or switch to credentials that have it (`dvc remote modify --local "
            f"{name} access_key_id ...` / `secret_access_key ...`, or AWS_* environment)",
        )
    if any(isinstance(e, EndpointConnectionError | ConnectionError) for e in chain):
        endpoint = _endpoint(config) or "the S3 endpoint"
        return _Failed(
            operation,
            f"endpoint {endpoint} is unreachable ({_first_line(err)})",
            _unreachable_fix(name, endpoint),
        )
    what = code or type(err).__name__
    detail = f"{what}: {_server_message(err) if code else _first_line(err)}"
    return _Failed(
        operation, detail, f"run `dvc push -r {name} -v` for the full error and check the remote"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
