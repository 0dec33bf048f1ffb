"""The README runs as written: its ```bash and ```python blocks, in order, in a copy of the project,
followed by the blocks of every docs/ page, a page at a time in the order the README first links
it (the pages hold what the README held before it was cut to a first screen, so each block runs
in the state the ones before it leave; a page the README does not link runs last).

The copy starts where the README's reader is after `make repro` (the session's `built_repo`,
with its data, DVC cache and MLflow store), and `make repro` itself runs again there. Its `.venv`
is a real venv whose packages are this checkout's (a `.pth` file), so `make`, the activation
hook and `source .venv/bin/activate` behave as in a fresh clone without a second install.
Servers (`make ui`, `mlflow models serve`) start in the background on free ports, must answer,
and are stopped. A block the test must not run carries a visible marker just before it:
`<!-- readme-test: skip (why) -->`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import BIN, REPO, child_env, copy_built_repo, free_port, stop_process_group
from .docs_pages import doc_pages

FENCE = re.compile(
    r"(?:<!-- readme-test: skip \((?P<skip>[^)]+)\) -->\n)?"
    r"```(?P<lang>bash|python)\n(?P<code>.*?)```",
    re.S,
)
SKIP_MARKER = "<!-- readme-test: skip"
ENTRY_POINTS = ("dvc", "mlflow", "predictflow")
# Six trainings (an experiment, a grid of two, a sweep of two, reproduce) and two servers: about
# 5 min alone on 2 cores, three times that when the machine is shared.
TIMEOUT = 2400.0

# Started in the background by `serve URL COMMAND...`: polled until URL answers, then stopped.
PRELUDE = r"""set -eo pipefail
serve() {
    local url=$1; shift
    setsid "$@" > "$LOGS/server-$SERVER_N.log" 2>&1 &
    local pid=$!
    for _ in $(seq 240); do
        if python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "$url" 2>/dev/null; then
            kill -- "-$pid"; wait "$pid" || true; SERVER_N=$((SERVER_N + 1)); return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$LOGS/server-$SERVER_N.log" >&2; return 1; }
        sleep 1
    done
    kill -- "-$pid"; cat "$LOGS/server-$SERVER_N.log" >&2; return 1
}
SERVER_N=0
"""


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    skip: str | None  # the marker's reason, when the README says not to run it


def readme_blocks(text: str) -> list[Block]:
    """Every ```bash / ```python block in order, with its skip marker if it has one."""
    return [Block(m["lang"], m["code"], m["skip"]) for m in FENCE.finditer(text)]


def documented_blocks(root: Path) -> list[Block]:
    """The README's blocks, then each docs/ page's, in the order the test runs them."""
    texts = [root / "README.md", *doc_pages(root)]
    return [b for path in texts for b in readme_blocks(path.read_text(encoding="utf-8"))]


def as_script_line(line: str, ports: dict[str, int]) -> str:
    """A README line as the test runs it: servers in the background on a free port."""
    if re.match(r"make ui\b", line):
        port = ports["ui"]
        return f"PORT={port} serve http://127.0.0.1:{port}/health {line}"
    if re.match(r"mlflow models serve\b", line):
        port = ports["serve"]
        line = re.sub(r"(-p|--port) \d+", f"\\1 {port}", line)
        return f"serve http://127.0.0.1:{port}/ping {line}"
    return line


def script(blocks: list[Block], workdir: Path, ports: dict[str, int]) -> str:
    """One bash script running the blocks in order; python blocks run as files."""
    parts = [PRELUDE, f"LOGS={workdir}"]
    for number, block in enumerate(blocks):
        if block.skip:
            continue
        if block.lang == "python":
            path = workdir / f"readme_block_{number}.py"
            path.write_text(block.code, encoding="utf-8")
            parts.append(f"python {path}")
        else:
            parts += [as_script_line(line, ports) for line in block.code.splitlines()]
    return "\n".join(parts) + "\n"


def linked_venv(repo: Path) -> None:
    """`.venv` as `make install` leaves it, its packages borrowed from this checkout's venv."""
    venv = repo / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    shared = next((BIN.parent / "lib").glob("python3*/site-packages"))
    pth = f"import site; site.addsitedir({str(shared)!r})\n"
    (site / "_predictflow_shared.pth").write_text(pth)
    for name in ENTRY_POINTS:
        (venv / "bin" / name).symlink_to(BIN / name)
    (venv / ".installed").touch()  # newer than pyproject.toml and constraints.txt


@pytest.mark.parametrize("name", ["README.md", *(p.name for p in doc_pages(REPO))])
def test_readme_blocks_are_found_and_skips_are_marked(name: str) -> None:
    """Every fence the regex misses would silently not run; every marker must sit on a block."""
    path = REPO / ("" if name == "README.md" else "docs") / name
    text = path.read_text(encoding="utf-8")
    blocks = readme_blocks(text)
    assert text.count("```bash") + text.count("```python") == len(blocks)
    assert text.count(SKIP_MARKER) == sum(1 for b in blocks if b.skip)


def test_readme_and_docs_blocks_run_in_the_readmes_order() -> None:
    readme = readme_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert readme[0].code.startswith("make repro") and not readme[0].skip
    assert [b.lang for b in readme].count("python") >= 1
    blocks = documented_blocks(REPO)
    assert blocks[: len(readme)] == readme
    names = [p.name for p in doc_pages(REPO)]
    # promotion puts a version on @production before monitoring's predict scores with it
    assert names.index("promotion.md") < names.index("monitoring.md") < names.index("tuning.md")
    codes = [b.code for b in blocks if not b.skip]
    first = next(i for i, c in enumerate(codes) if "--to production" in c)
    assert all("--shadow" not in c for c in codes[:first])


def test_doc_pages_follow_the_readmes_links_then_the_rest(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    for name in ("a.md", "b.md", "c.md", "z.md"):
        (tmp_path / "docs" / name).write_text("# page\n")
    (tmp_path / "README.md").write_text(
        "[c](docs/c.md) [gone](docs/gone.md) [a](docs/a.md#part) [c again](docs/c.md)\n"
    )
    assert [p.name for p in doc_pages(tmp_path)] == ["c.md", "a.md", "b.md", "z.md"]


def activated(venv_root: Path, commands: str, **env: str) -> str:
    """stdout of `commands` in bash after `source .venv/bin/activate`."""
    return subprocess.run(
        ["bash", "-c", f"source .venv/bin/activate && {commands}"],
        cwd=venv_root,
        env=child_env(**env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_activation_points_mlflow_at_the_project_store(tmp_path: Path) -> None:
    """`make install`'s hook: the store after activation, gone after deactivate, a user's URI
    left alone; the URI is the one `predictflow` takes for its own local store."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    for name in ("Makefile", "scripts/activate-mlflow.sh"):
        shutil.copy2(REPO / name, root / name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / ".venv"], check=True)
    subprocess.run(["make", "--no-print-directory", "activate-hook"], cwd=root, check=True)
    subprocess.run(["make", "--no-print-directory", "activate-hook"], cwd=root, check=True)

    store = f"sqlite:///{root.resolve()}/mlflow_data/mlflow.db"
    show = 'echo "$MLFLOW_TRACKING_URI|$MLFLOW_BACKEND_STORE_URI"'
    assert activated(root, show).strip() == f"{store}|{store}"
    assert activated(root, f"deactivate && {show}").strip() == "|"
    mine = "http://127.0.0.1:5001"
    assert activated(root, show, MLFLOW_TRACKING_URI=mine).strip() == f"{mine}|"
    assert activated(root, f"deactivate && {show}", MLFLOW_TRACKING_URI=mine).strip() == f"{mine}|"
    assert (root / ".venv/bin/activate").read_text().count("_PREDICTFLOW_STORE=") == 1

    from predictflow.lineage import tracking

    assert tracking.default_uri(root.resolve()) == store


@pytest.mark.pipeline
def test_readme_runs_as_written(built_repo: Path, tmp_path: Path) -> None:
    repo = copy_built_repo(built_repo, tmp_path / "repo")
    if (REPO / "node_modules").is_dir():  # `make install` built .dvc/plots.html from it
        (repo / "node_modules").symlink_to(REPO / "node_modules")
    linked_venv(repo)
    blocks = documented_blocks(REPO)
    ports = {"ui": free_port(), "serve": free_port()}
    (tmp_path / "readme.sh").write_text(script(blocks, tmp_path, ports), encoding="utf-8")

    with subprocess.Popen(
        ["bash", str(tmp_path / "readme.sh")],
        cwd=repo,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a timeout stops DVC's queue workers and servers with it
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_process_group(proc)
            pytest.fail(f"the README's commands did not finish within {TIMEOUT:.0f} s")
    assert proc.returncode == 0, f"{stdout[-3000:]}\n--- stderr\n{stderr[-5000:]}"
    assert "churn-predictor version" in stdout  # lineage printed its view
    assert not (repo / "mlflow.db").exists() and not (repo / "mlruns").exists()
    assert not (repo / "mlartifacts").exists()
    ui_log = (tmp_path / "server-0.log").read_text()  # `make ui`, the first server started
    assert "GET /health" in ui_log and "Deprecat" not in ui_log, ui_log
