"""Real services for the team set-up tests: an S3-compatible server (moto) on 127.0.0.1.

Both the S3 and the PostgreSQL tests skip with the reason when their service can't be had, unless
`PREDICTFLOW_REQUIRE_SERVICES=1` (set by `.ci/run`): then they fail, so CI can't go green by
skipping them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from .conftest import BIN, free_port, stop_process_group

REQUIRE = "PREDICTFLOW_REQUIRE_SERVICES"
KEY, SECRET, REGION = "testing", "testing", "us-east-1"
START_TIMEOUT = 30.0


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when the services are required (CI)."""
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason} ({REQUIRE}=1: this service is required)", pytrace=False)
    pytest.skip(reason)


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    log: Path

    def client(self, service: str = "s3", key: str = KEY, secret: str = SECRET) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def iam_user(self, name: str, actions: list[str], bucket: str) -> tuple[str, str]:
        """A user whose only permissions are `actions` on `bucket`; returns its key pair."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": actions,
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
        iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextmanager
    def authentication(self) -> Iterator[None]:
        """moto accepts any key by default; inside this block it checks keys and IAM policies."""
        import requests

        reset = f"{self.endpoint}/moto-api/reset-auth"
        requests.post(reset, data=b"0", timeout=10).raise_for_status()
        try:
            yield
        finally:
            requests.post(reset, data=b"inf", timeout=10).raise_for_status()


@contextmanager
def moto_server(workdir: Path) -> Iterator[S3Server]:
    """`moto_server` on a free loopback port for the duration of the block."""
    exe = BIN / "moto_server"
    if not exe.exists():
        unavailable(f"{exe} is missing: install the dev extra (`make install`)")
    port = free_port()
    log = workdir / "moto.log"
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                unavailable(
                    f"moto_server exited with {process.returncode}: {log.read_text()[-500:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    unavailable(
                        f"moto_server did not listen on 127.0.0.1:{port} in {START_TIMEOUT}s"
                    )
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}", process, log)
    finally:
        stop_process_group(process)
