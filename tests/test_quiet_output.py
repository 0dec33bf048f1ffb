"""Quiet, readable output: a stage says what it did in a line, `make help` has colour only on a
terminal, `predictflow lineage` prints no placeholder for a missing legacy stage."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest

from predictflow.lineage import provenance

from .conftest import REPO, dvc

NOISE = ("Downloading artifacts", "WARNING", " INFO ", "Traceback")


@pytest.mark.pipeline
def test_each_stage_says_what_it_did_in_one_line(built_repo: Path, tmp_path: Path) -> None:
    """train, evaluate and register into a fresh store: one line each, nothing from MLflow (no
    progress bar, pickle notice or database INFO line; `register_model` prints "Successfully
    registered ..." and "Created version ..." itself, and MLflow announces creating a store)."""
    repo = tmp_path / "repo"
    shutil.copytree(built_repo, repo, symlinks=True)
    shutil.rmtree(repo / "mlflow_data")  # a fresh store
    result = dvc(repo, "repro", "-f", "-s", "train", "evaluate", "register")
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["train", "evaluate", "register"], lines
    assert lines[0].startswith("train: run "), result.stderr
    assert not [line for line in lines if any(noise in line for noise in NOISE)], result.stderr


def make_help(on_terminal: bool) -> str:
    """`make help`'s stdout, through a pipe or a pseudo-terminal."""
    if not on_terminal:
        return subprocess.run(
            ["make", "--no-print-directory", "help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    leader, follower = pty.openpty()
    with subprocess.Popen(
        ["make", "--no-print-directory", "help"], cwd=REPO, stdout=follower, stderr=follower
    ) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: make is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode()


def test_make_help_is_coloured_only_on_a_terminal() -> None:
    piped = make_help(on_terminal=False)
    assert "repro" in piped and "\x1b" not in piped, piped
    assert "\x1b[36m" in make_help(on_terminal=True)


def test_lineage_prints_no_placeholder_for_a_missing_legacy_stage() -> None:
    view = {
        "model": "churn-predictor",
        "version": 3,
        "aliases": ["staging"],
        "stage": "None",  # what MLflow reports for "no legacy stage"
        "run": {"id": "r", "name": "n", "status": "FINISHED", "link": "http://ui/#/r"},
        "dvc_exp_name": None,
        "metrics": {},
        "params": {},
        "code": {"git_commit": "abc", "git_dirty": False, "sealed_commit": None},
        "data": {"path": "data/customers.csv", "md5": "d"},
        "model_md5": "m",
        "missing_lineage": [],
        "stages": {},
        "promotions": [],
    }
    first = provenance.render(view).splitlines()[0]
    assert first == "churn-predictor version 3  aliases: staging", first
    assert "stage: Staging" in provenance.render({**view, "stage": "Staging"})
