"""Credentials are masked in what the CLI prints (src/predictflow/base/redact.py)."""

from __future__ import annotations

import logging

import pytest

from predictflow.base import redact as r

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "server http://bob:s3cr3t!@10.0.0.1:5001 down",
            "server http://bob:***@10.0.0.1:5001 down",
        ),
        ("https://bob:p%40ss@host/path?x=1", "https://bob:***@host/path?x=1"),
        ("postgresql://u:pa@ss@db:5432/x", "postgresql://u:***@db:5432/x"),  # an unescaped @
        ("postgresql+psycopg2://u:pw@h/db", "postgresql+psycopg2://u:***@h/db"),
        ("(at 'http://a:b@h:1')", "(at 'http://a:***@h:1')"),
        ("http://u:@h", "http://u:***@h"),
        ("two: http://a:x1@h and s3://k:y2@b/p", "two: http://a:***@h and s3://k:***@b/p"),
    ],
)
def test_the_password_of_any_uri_is_masked(text: str, shown: str) -> None:
    assert r.redact(text, secrets=()) == shown


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:5001/api/2.0/mlflow/runs",  # no userinfo
        "http://bob@host:5001",  # a user name alone is not a secret
        "mail ann@example.com about models:/churn-predictor@production",
        "runs:/abc/model and a@b:c",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert r.redact(text, secrets=()) == text


def test_secret_values_of_the_environment_are_masked_anywhere() -> None:
    env = {
        "MLFLOW_TRACKING_PASSWORD": "hunter2-long",
        "AWS_SECRET_ACCESS_KEY": "AKIAsecretvalue",
        "MLFLOW_TRACKING_TOKEN": "tok-123456",
        "PREDICTFLOW_DB_URI": "postgresql://root:db%2Fpw@127.0.0.1/predictflow",
        "MLFLOW_TRACKING_USERNAME": "bob",  # not a secret
        "HOME": "/home/bob",
        "PGPASSWORD": "abc",  # shorter than MIN_SECRET: masking it would garble words
    }
    found = r.secrets_in(env)
    assert {"hunter2-long", "AKIAsecretvalue", "tok-123456", "db%2Fpw", "db/pw"} <= found
    assert not found & {"bob", "/home/bob", "abc"}
    text = "refused hunter2-long (token tok-123456, key AKIAsecretvalue, db db/pw) for bob"
    assert r.redact(text, found) == "refused *** (token ***, key ***, db ***) for bob"


def test_redact_reads_the_environment_at_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "late-secret-value")
    assert r.redact("basic late-secret-value") == "basic ***"


def test_the_cli_masks_its_error_line_and_its_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from predictflow import cli
    from predictflow.base.errors import UserError
    from predictflow.commands.common import emit

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-in-the-env")

    @cli.cli.command("leaky-test")
    def leaky() -> None:
        emit({"uri": "http://u:pw-in-uri@h"}, True, "")
        logging.getLogger("predictflow").warning("retrying with %s", "pw-in-the-env")
        raise UserError("server http://u:pw-in-uri@h refused pw-in-the-env")

    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(["leaky-test"])
    finally:
        cli.cli.commands.pop("leaky-test")
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert "pw-in" not in out + err
    assert '"uri": "http://u:***@h"' in out
    assert err.strip().splitlines()[-1] == "predictflow: error: server http://u:***@h refused ***"


def test_the_log_filter_masks_a_record() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "to %s", ("http://a:b1@h",), None)
    assert r.RedactingFilter().filter(record)
    assert record.getMessage() == "to http://a:***@h"
