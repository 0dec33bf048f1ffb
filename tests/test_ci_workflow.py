"""The GitHub Actions workflow can't run here: check what could go stale without anyone noticing.

Jobs and their order, the `make` targets and `dvc`/`predictflow` subcommands it calls, that the
deploy is gated on the `production` alias and runs only on a push to main, and that credentials
come from `secrets`, never from the file. Fast and offline: PyYAML plus `--help` of real commands.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml

from .conftest import BIN, REPO, child_env

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
SECRET_ENV = ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SECRET_EXPR = re.compile(r"^\$\{\{\s*secrets\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}$")


@cache
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def triggers() -> dict[str, Any]:
    doc = workflow()
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    return doc["on"] if "on" in doc else doc[True]


def jobs() -> dict[str, dict[str, Any]]:
    return workflow()["jobs"]


def needs(job: dict[str, Any]) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def steps(job_name: str) -> list[dict[str, Any]]:
    return jobs()[job_name]["steps"]


def runs(job_name: str | None = None) -> list[str]:
    names = [job_name] if job_name else list(jobs())
    return [step["run"] for name in names for step in steps(name) if "run" in step]


def uses(job_name: str) -> list[str]:
    return [step["uses"] for step in steps(job_name) if "uses" in step]


def commands(tool: str) -> set[str]:
    """First word after `tool` wherever a `run:` calls it (`.venv/bin/tool`, in messages too)."""
    pattern = re.compile(rf"(?<![\w.-]){tool}\s+([a-z][a-z-]*)\b")
    return {sub for script in runs() for sub in pattern.findall(script)}


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def normalized(expression: str) -> str:
    return re.sub(r"\s+", " ", expression.replace("${{", "").replace("}}", "")).strip()


def test_triggers_are_push_and_pull_request_to_main() -> None:
    on = triggers()
    assert set(on) == {"push", "pull_request"}
    assert on["push"]["branches"] == ["main"]
    assert on["pull_request"]["branches"] == ["main"]


def test_three_jobs_chained_test_pipeline_deploy() -> None:
    assert set(jobs()) == {"test", "pipeline", "deploy"}
    assert needs(jobs()["test"]) == []
    assert needs(jobs()["pipeline"]) == ["test"]
    assert needs(jobs()["deploy"]) == ["pipeline"]


@pytest.mark.parametrize("job_name", ["test", "pipeline", "deploy"])
def test_every_job_checks_out_and_sets_up_python_311_with_pip_cache(job_name: str) -> None:
    used = uses(job_name)
    assert "actions/checkout@v4" in used
    (setup,) = [step for step in steps(job_name) if step.get("uses") == "actions/setup-python@v5"]
    # quoted in the YAML: an unquoted 3.10 would become the float 3.1
    assert setup["with"]["python-version"] == "3.11"
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["cache-dependency-path"] == "constraints.txt"
    assert used.index("actions/checkout@v4") < used.index("actions/setup-python@v5")


def test_jobs_run_the_readme_commands() -> None:
    assert any(re.search(r"\bmake test\b", script) for script in runs("test"))
    assert any(re.search(r"\bmake repro\b", script) for script in runs("pipeline"))


def test_every_make_target_used_exists_in_the_makefile() -> None:
    used = {
        target
        for script in runs()
        for target in re.findall(r"(?<![\w.-])make\s+([A-Za-z0-9_][A-Za-z0-9_.-]*)", script)
    }
    assert {"test", "repro"} <= used
    missing = used - makefile_targets()
    assert not missing, f"workflow calls make targets the Makefile lacks: {sorted(missing)}"


def test_pipeline_fails_on_a_stale_lock_with_a_hint_and_uploads_the_store() -> None:
    scripts = "\n".join(runs("pipeline"))
    assert "git diff --exit-code dvc.lock metrics/" in scripts
    assert re.search(r"commit dvc\.lock", scripts)
    assert "`dvc repro`" in scripts
    pipeline = steps("pipeline")
    (upload,) = [s for s in pipeline if s.get("uses") == "actions/upload-artifact@v4"]
    (repro,) = [s for s in pipeline if "make repro" in s.get("run", "")]
    assert pipeline.index(upload) > pipeline.index(repro)
    # uploaded even when the lock check failed: that is when the store is worth a look
    assert "cancelled()" in upload.get("if", "") or "always()" in upload.get("if", "")
    paths = {line.strip().rstrip("/") for line in upload["with"]["path"].splitlines()}
    assert {"mlflow_data", "metrics"} <= paths


@pytest.mark.pipeline  # asks the real dvc/predictflow processes for --help
def test_every_dvc_subcommand_used_exists() -> None:
    used = commands("dvc")
    assert "repro" in used  # at least the hint in the stale-lock message
    for sub in sorted(used):
        proc = subprocess.run(
            [str(BIN / "dvc"), sub, "--help"],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=REPO,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"`dvc {sub}` is not a dvc command:\n{proc.stderr}"


@cache
def predictflow_help() -> str:
    proc = subprocess.run(
        [str(BIN / "predictflow"), "--help"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=True,
    )
    return proc.stdout


def listed_subcommands(help_text: str) -> set[str]:
    """Names click lists under its `Commands:` block (`  name   help text`)."""
    commands = help_text.partition("\nCommands:\n")[2]
    return set(re.findall(r"^ {2}([a-z][a-z-]*)\b", commands, flags=re.MULTILINE))


@pytest.mark.pipeline  # asks the real dvc/predictflow processes for --help
def test_every_existing_predictflow_subcommand_used_is_real() -> None:
    available = listed_subcommands(predictflow_help())
    assert "data" in available  # the parser above is sane
    unknown = commands("predictflow") - available
    assert not unknown, f"workflow calls predictflow subcommands that don't exist: {unknown}"


def test_deploy_gate_references_predictflow_lineage_of_the_production_alias() -> None:
    assert "lineage" in commands("predictflow")
    gate = "\n".join(runs("deploy"))
    assert re.search(
        r"(?<![\w.-])(?:\.venv/bin/)?predictflow lineage models:/churn-predictor@production --json",
        gate,
    )
    # fails the job itself when the alias does not resolve, and hands the version on
    assert re.search(r"if ! \S*predictflow lineage .*\n(?:.*\n)*?\s*exit 1", gate)
    assert '"version"' in gate and "GITHUB_OUTPUT" in gate


def test_deploy_runs_only_on_push_to_main_in_the_production_environment() -> None:
    deploy = jobs()["deploy"]
    condition = normalized(deploy["if"])
    assert "github.event_name == 'push'" in condition
    assert "github.ref == 'refs/heads/main'" in condition
    assert "||" not in condition  # both must hold
    environment = deploy["environment"]
    name = environment["name"] if isinstance(environment, dict) else environment
    assert name == "production"
    for other in ("test", "pipeline"):
        assert "environment" not in jobs()[other]


def test_deploy_step_is_a_placeholder_that_reports_the_resolved_version() -> None:
    (gate,) = [s for s in steps("deploy") if "predictflow lineage" in s.get("run", "")]
    later = steps("deploy")[steps("deploy").index(gate) + 1 :]
    deploying = [s for s in later if "echo" in s.get("run", "")]
    assert deploying, "no deploy step after the alias gate"
    references = str(deploying[0].get("env", {})) + deploying[0]["run"]
    assert f"steps.{gate['id']}.outputs.version" in references


def env_blocks() -> list[tuple[str, dict[str, Any]]]:
    doc = workflow()
    blocks = [("workflow", doc.get("env") or {})]
    for job_name, job in jobs().items():
        blocks.append((job_name, job.get("env") or {}))
        blocks.extend(
            (f"{job_name}: {step.get('name', step.get('uses', step.get('run', '')))}", step["env"])
            for step in job["steps"]
            if step.get("env")
        )
    return blocks


def test_credentials_only_come_from_secrets() -> None:
    seen = set()
    for where, env in env_blocks():
        for key, value in env.items():
            if key in SECRET_ENV or key.startswith("AWS_"):
                seen.add(key)
                assert isinstance(value, str) and SECRET_EXPR.match(value.strip()), (
                    f"{where}: {key} must be a ${{{{ secrets.* }}}} expression, not {value!r}"
                )
    deploy_env = jobs()["deploy"].get("env", {})
    assert set(SECRET_ENV) <= set(deploy_env), "deploy needs the team server and S3 credentials"
    assert set(SECRET_ENV) <= seen

    text = WORKFLOW.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # an AWS access key id
    assert not re.search(r"(?i)(https?|postgresql|mysql|databricks)://", text)  # a store URI
    for name in SECRET_ENV:  # nor exported in a script
        assert not re.search(rf"\b(export\s+)?{name}=\S", text), name


def test_test_job_provides_the_services_the_suite_requires() -> None:
    """PostgreSQL where the team-server tests look for it, and skips turned into failures."""
    from urllib.parse import urlsplit

    from .teamserver import POSTGRES

    job = jobs()["test"]
    assert job["env"]["PREDICTFLOW_REQUIRE_SERVICES"] == "1"
    postgres = job["services"]["postgres"]
    wanted = urlsplit(POSTGRES)
    assert postgres["env"]["POSTGRES_USER"] == wanted.username
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"  # the URI has no password
    assert f"{wanted.port}:5432" in postgres["ports"]
    assert "pg_isready" in postgres["options"]  # steps start only once it accepts connections
