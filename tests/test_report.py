"""`predictflow report`: one self-contained HTML page, checked as text and in a real browser.

The page is rendered for the session's real pipeline run and read back: versions, lineage
hashes, the stage chain, four embedded figures and no URL but the MLflow UI run links. Headless
Chromium then opens it offline (a Content-Security-Policy blocks any load, so a stray URL would
show as a console message) and, against `mlflow ui` on the same store, checks that the MLflow
UI lists the model. Without Chromium the browser tests skip, except under CI where they fail.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from io import BytesIO
from pathlib import Path

import matplotlib.image
import pytest
from mlflow import MlflowClient

from predictflow.lineage import evidence
from predictflow.ops import report_build, report_facts, report_render

from .conftest import (
    BIN,
    REPO,
    child_env,
    copy_built_repo,
    free_port,
    git,
    predictflow,
    run,
    stop_process_group,
)
from .test_drift import MODEL as DRIFT_MODEL
from .test_drift import drifted_batch

pytestmark = pytest.mark.pipeline

CHAIN = ("data/customers.csv.dvc", "prepare", "featurize", "train", "evaluate", "register")
UI_BASE = "http://127.0.0.1:5000"  # provenance.ui_base() for a local store
HOST = "127.0.0.1"
START_TIMEOUT = 120.0
BROWSER_TIMEOUT = 120.0
SCREENSHOT = REPO / "docs" / "report.png"


# --- the pure parts -----------------------------------------------------------------------------


def view(version: int, aliases: list[str] = (), roc_auc: float = 0.8, **changes) -> dict:
    """A `provenance.facts()`-shaped view with complete lineage unless `changes` say otherwise."""
    base = {
        "model": "churn-predictor",
        "version": version,
        "uri": f"models:/churn-predictor/{version}",
        "aliases": list(aliases),
        "stage": "None",
        "run": {
            "id": f"run{version}",
            "name": f"run-{version}",
            "experiment_id": "1",
            "status": "FINISHED",
            "link": f"{UI_BASE}/#/experiments/1/runs/run{version}",
        },
        "params": {"model.max_depth": str(version)},
        "metrics": {"roc_auc": roc_auc, "log_loss": 1 - roc_auc},
        "code": {"git_commit": "c" * 40, "git_dirty": False, "sealed_commit": None},
        "data": {"path": "data/customers.csv", "md5": "d" * 32},
        "model_md5": f"{version:032d}",
        "dvc_exp_name": None,
        "stages": {},
        "promotions": [],
        "missing_lineage": [],
    }
    return {**base, **changes}


def test_the_stage_graph_is_the_chain_dvc_dag_prints() -> None:
    pipeline = report_facts.read_pipeline(REPO)
    assert pipeline.nodes == CHAIN
    assert pipeline.sources == {"data/customers.csv.dvc": "data/customers.csv"}
    chain_edges = set(itertools.pairwise(CHAIN))
    assert chain_edges <= set(pipeline.edges)
    assert ("prepare", "evaluate") in pipeline.edges  # the held-out split skips two stages


def test_stage_order_follows_the_edges_not_the_file() -> None:
    spec = {
        "stages": {
            "b": {"cmd": "x", "deps": ["mid"], "outs": ["out"]},
            "a": {"cmd": "x", "deps": ["raw.csv"], "outs": [{"mid": {"cache": False}}]},
        }
    }
    pipeline = report_build.pipeline_graph(spec, tracked={"raw.csv"})
    assert pipeline.nodes == ("raw.csv.dvc", "a", "b")
    assert pipeline.edges == (("a", "b"), ("raw.csv.dvc", "a"))


def test_default_version_is_production_then_staging_then_newest() -> None:
    assert (
        report_build.default_version([view(3), view(2, ["staging"]), view(1, ["production"])]) == 1
    )
    assert report_build.default_version([view(3), view(2, ["staging"]), view(1)]) == 2
    assert report_build.default_version([view(3), view(2), view(1)]) == 3


def test_best_values_know_log_loss_is_lower_and_ties_have_no_best() -> None:
    best = report_build.best_values([view(2, roc_auc=0.9), view(1, roc_auc=0.7)])
    assert best == {"roc_auc": 0.9, "log_loss": pytest.approx(0.1)}
    assert report_build.best_values([view(2), view(1)]) == {}


def test_a_version_without_lineage_tags_is_said_plainly() -> None:
    bare = view(
        2,
        code={"git_commit": None, "git_dirty": None, "sealed_commit": None},
        data={"path": None, "md5": None},
        model_md5=None,
        missing_lineage=["git_commit", "git_dirty", "data_md5", "model_md5"],
    )
    built = report_build.Report(
        model="churn-predictor",
        generated="now",
        ui=UI_BASE,
        views=[bare, view(1, ["staging"])],
        registered={2: "", 1: ""},
        selected=2,
        pipeline=report_build.pipeline_graph(
            {"stages": {"prepare": {"cmd": "x", "deps": ["data/customers.csv"]}}},
            tracked={"data/customers.csv"},
        ),
        plots={"roc.png": None},
    )
    page = report_render.render(built)
    warning = page.split('<div class="warning"', 1)[1].split("</div>", 1)[0]
    assert "Version 2 lacks lineage tags: git_commit, git_dirty, data_md5, model_md5" in warning
    assert "cannot be reproduced" in warning
    assert re.search(r"<td[^>]*>\s*</td>", page) is None  # no empty cell: every hole is named
    assert "no data md5 recorded for this version" in page
    assert "evaluation/roc.png was not logged to this run" in page
    assert built.facts()["warnings"] and built.facts()["missing_plots"] == sorted(
        report_build.PLOTS
    )


def test_register_hashes_from_an_earlier_run_are_not_shown_as_this_versions() -> None:
    stages = {
        "train": {"deps": {}, "outs": {"models/model.pkl": "new"}, "params": {}},
        "register": {
            "deps": {"models/model.pkl": "old"},
            "outs": {"models/registration.json": "r"},
            "params": {},
        },
    }
    pipeline = report_build.Pipeline(nodes=("train", "register", "evaluate"), edges=())
    rows = {row.name: row for row in report_build.stage_outs(view(4, stages=stages), pipeline)}
    assert rows["train"].outs == {"models/model.pkl": "new"} and not rows["train"].note
    assert rows["register"].outs == {} and "an earlier run's entry" in rows["register"].note
    assert "registered version 4" in rows["register"].note
    assert rows["evaluate"].outs == {} and "no hashes recorded" in rows["evaluate"].note


def test_the_graph_layout_keeps_the_declared_order_among_ready_stages() -> None:
    """graphlib orders, and of the stages ready at each step the one `dvc.yaml` declares first
    goes next: `c` (no deps) stays after the chain it is declared after."""
    spec = {
        "stages": {
            "a": {"cmd": "x", "deps": ["raw.csv"], "outs": ["mid"]},
            "b": {"cmd": "x", "deps": ["mid"], "outs": ["out"]},
            "c": {"cmd": "x", "outs": ["other"]},
        }
    }
    pipeline = report_build.pipeline_graph(spec, tracked={"raw.csv"})
    assert pipeline.nodes == ("raw.csv.dvc", "a", "b", "c")
    layout = report_render.graph_layout(pipeline)
    assert layout is not None and [box.name for box in layout.boxes] == list(pipeline.nodes)
    assert len(layout.lines) == 2 and layout.arcs == []  # raw -> a -> b, each to its neighbour
    cyclic = {
        "stages": {
            "a": {"cmd": "x", "deps": ["y"], "outs": ["x"]},
            "b": {"cmd": "x", "deps": ["x"], "outs": ["y"]},
        }
    }
    assert report_build.pipeline_graph(cyclic, tracked=set()).nodes == ("a", "b")  # declared order


def test_values_are_escaped_and_an_empty_drift_history_says_how_to_start_one() -> None:
    hostile = view(1, ["staging"], params={"<script>": 'x" onload="y'})
    built = report_build.Report(
        model="churn-predictor",
        generated="now",
        ui=UI_BASE,
        views=[hostile],
        registered={1: "<b>t</b>"},
        selected=1,
        pipeline=report_build.Pipeline(nodes=(), edges=()),
        plots={},
    )
    page = report_render.render(built)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '" onload="' not in page and "&lt;b&gt;t&lt;/b&gt;" in page
    assert "No drift checks recorded yet" in page and built.facts()["drift_checks"] == []
    assert "the stage graph cannot be drawn" in page


def test_drift_checks_keep_the_newest_runs_of_each_version(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("churn-monitoring")
    for number, (version, verdict) in enumerate([("2", "ok")] * 4 + [("1", "drift")]):
        tags = {"model_name": "churn-predictor", "model_version": version, "verdict": verdict}
        if number:  # the first run predates the `drifted` tag
            tags["drifted"] = "Contract,MonthlyCharges" if verdict == "drift" else ""
        run_ = client.create_run(experiment, start_time=1_700_000_000_000 + number, tags=tags)
        client.set_terminated(run_.info.run_id)
    other = client.create_run(experiment, tags={"model_name": "another", "model_version": "9"})
    client.set_terminated(other.info.run_id)

    checks = report_facts.drift_checks(report_facts.drift_runs(client), UI_BASE)
    assert [(c.version, c.verdict) for c in checks] == [(2, "ok")] * 3 + [(1, "drift")]
    assert [c.when for c in checks[:3]] == sorted((c.when for c in checks[:3]), reverse=True)
    assert checks[0].drifted == [] and checks[-1].drifted == ["Contract", "MonthlyCharges"]
    assert all(
        c.run["link"].startswith(f"{UI_BASE}/#/experiments/{experiment}/runs/") for c in checks
    )


# --- the real pipeline run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(pipeline_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`predictflow report --json` of the session's pipeline run: (page, printed facts)."""
    out = tmp_path_factory.mktemp("report") / "lineage.html"
    started = time.monotonic()
    result = predictflow(pipeline_repo, "report", "--output", str(out), "--json")
    facts = json.loads(result.stdout)
    facts["seconds"] = time.monotonic() - started
    return out, facts


def embedded_pngs(page: str) -> list[bytes]:
    return [
        base64.b64decode(data)
        for data in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_report_shows_versions_lineage_stages_and_figures(pipeline_repo: Path, rendered) -> None:
    out, facts = rendered
    page = out.read_text(encoding="utf-8")
    lock = evidence.load_lock(pipeline_repo)
    data_md5 = evidence.pinned_md5(pipeline_repo / "data/customers.csv.dvc")
    model_md5 = lock["train"].outs["models/model.pkl"]
    head = git(pipeline_repo, "rev-parse", "HEAD").stdout.strip()

    assert facts["output"] == str(out) and facts["bytes"] == out.stat().st_size
    # other tests share the repo and register experiment versions; none of them moves staging
    uri = f"sqlite:///{pipeline_repo / 'mlflow_data' / 'mlflow.db'}"
    registered = MlflowClient(uri, uri).search_model_versions("name = 'churn-predictor'")
    assert sorted(facts["versions"]) == sorted(int(v.version) for v in registered)
    assert facts["selected"] == 1
    assert facts["selected_aliases"] == ["staging"]  # nothing holds production: staging wins
    assert facts["stages"] == list(CHAIN)
    assert facts["plots"] == sorted(report_build.PLOTS) and facts["missing_plots"] == []
    assert facts["warnings"] == []
    assert not list(out.parent.glob(".*.tmp"))  # written atomically, nothing left beside it

    assert "version 1 (selected)" in page and '<span class="badge staging">staging</span>' in page
    for text in (data_md5, model_md5, head, "data/customers.csv"):
        assert text in page
    sealed = json.loads(predictflow(pipeline_repo, "lineage", "1", "--json").stdout)["code"]
    assert (sealed["sealed_commit"] or "not sealed: no committed dvc.lock pins it") in page
    assert "roc_auc" in page and "model.max_depth" in page
    for stage in ("prepare", "featurize", "train", "evaluate"):  # each out hash of the version
        for path, md5 in lock[stage].outs.items():
            assert f"<code>{path}</code>" in page and md5 in page
    cards = re.findall(r'<div class="stage"><h3>([^<]+)</h3>', page)
    assert tuple(cards) == CHAIN
    assert "data/customers.csv.dvc \u2192 prepare \u2192 featurize \u2192 train" in page
    # The lock logged at registration holds the register entry of the run before (if any): its
    # hashes are shown only when its deps are this version's model and metrics.
    register = page.split("<h3>register</h3>", 1)[1].split('<div class="stage">', 1)[0]
    assert "<code>models/registration.json</code>" in register or "version 1" in register

    pngs = embedded_pngs(page)
    assert len(pngs) == 4 and all(png.startswith(report_facts.PNG_MAGIC) for png in pngs)
    for png in pngs:
        height, width = matplotlib.image.imread(BytesIO(png)).shape[:2]
        assert height >= 300 and width >= 300


def test_report_shows_a_real_drift_run_of_the_version(built_repo: Path, tmp_path: Path) -> None:
    """`predictflow drift` on a shifted batch, then the report's drift section names that run:
    its verdict, the drifted features and the batch's md5, read back from MLflow."""
    repo = copy_built_repo(built_repo, tmp_path / "repo")
    batch = drifted_batch(tmp_path / "batch.csv")
    result = predictflow(
        repo, "drift", "--input", str(batch), "--model", DRIFT_MODEL, "--json", check=False
    )
    assert result.returncode == 3, result.stderr
    drift = json.loads(result.stdout)
    out = tmp_path / "lineage.html"
    facts = json.loads(predictflow(repo, "report", "--output", str(out), "--json").stdout)
    assert facts["drift_checks"] == [
        {"version": drift["version"], "verdict": "drift", "run_id": drift["run_id"]}
    ]
    section = out.read_text(encoding="utf-8").split("<h2>Drift checks</h2>", 1)[1]
    section = section.split("<h2>", 1)[0]
    assert '<span class="badge drift">drift</span>' in section
    assert f"<td>version {drift['version']}</td>" in section
    assert f"<td>{', '.join(drift['drifted'])}</td>" in section
    assert evidence.file_md5(batch) in section and drift["run_id"] in section


def test_report_needs_no_network_to_view(rendered) -> None:
    out, _ = rendered
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page.replace("url(#arrow)", "")
    assert not re.search(r"""\ssrc=["'](?!data:)""", page)
    urls = re.findall(r"""https?://[^\s"'<>)]+""", page)
    assert urls, "the run links to the MLflow UI are missing"
    for url in urls:
        assert url == UI_BASE or url.startswith(f"{UI_BASE}/#/experiments/"), url
    assert "default-src 'none'" in page  # the browser refuses to load anything else


def test_report_of_a_chosen_version_and_of_an_unknown_one(pipeline_repo: Path, tmp_path) -> None:
    out = tmp_path / "v1.html"
    facts = json.loads(
        predictflow(
            pipeline_repo,
            "report",
            "--version",
            "models:/churn-predictor/1",
            "--output",
            str(out),
            "--json",
        ).stdout
    )
    assert facts["selected"] == 1 and out.exists()
    result = predictflow(
        pipeline_repo, "report", "--version", "7", "--output", str(tmp_path / "x.html"), check=False
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "predictflow: error: model '7' not found in the registry (RESOURCE_DOES_NOT_EXIST)"
    ]
    assert not (tmp_path / "x.html").exists()


@contextmanager
def alias_moved(uri: str, alias: str, version: str) -> Iterator[None]:
    """Point `alias` at `version` for the test only, then put back whatever held it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        previous = client.get_model_version_by_alias("churn-predictor", alias).version
    except MlflowException:
        previous = None
    client.set_registered_model_alias("churn-predictor", alias, version)
    try:
        yield
    finally:
        if previous is None:
            client.delete_registered_model_alias("churn-predictor", alias)
        else:
            client.set_registered_model_alias("churn-predictor", alias, previous)


def test_production_is_shown_with_its_alias(pipeline_repo: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{pipeline_repo / 'mlflow_data' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with alias_moved(uri, "production", "1"):
        built = report_facts.collect(client, pipeline_repo)
    assert built.selected == 1 and built.view["aliases"] == ["production", "staging"]
    assert '<span class="badge production">production</span>' in report_render.render(built)


# --- in a real browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> str:
    # Debian's package is `chromium`; GitHub's Ubuntu runners ship Google Chrome (same flags).
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    found = next(
        (path for path in map(shutil.which, names) if path),
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None,
    )
    if found is None:
        message = "chromium not found (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the browser tests")
        pytest.skip(message)
    return found


def chromium(browser: str, profile: Path, *args: str) -> tuple[int, str, str]:
    """Headless Chromium with a fresh profile and no background traffic; (rc, stdout, stderr).

    Its own process group, so a hang leaves no renderer or GPU process behind."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *args,
    ]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=BROWSER_TIMEOUT)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        pytest.fail(f"chromium did not finish within {BROWSER_TIMEOUT:.0f} s: {args[-1]}")
    return proc.returncode, stdout, stderr


def console_messages(stderr: str) -> list[str]:
    """What the page logged: errors, CSP refusals, uncaught exceptions (the report has no JS)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_console_messages_are_seen(browser: str, tmp_path: Path) -> None:
    """The check below is not vacuous: a blocked URL and a script error do show up."""
    page = tmp_path / "bad.html"
    page.write_text(
        f'<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="{report_render.CSP}">'
        '<img src="http://127.0.0.1:9/x.png"><p>bad</p>',
        encoding="utf-8",
    )
    _, _, stderr = chromium(
        browser,
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={tmp_path / 'bad.png'}",
        page.as_uri(),
    )
    assert any(
        "violates the following Content Security Policy" in m for m in console_messages(stderr)
    ), stderr


def test_report_renders_in_headless_chromium(browser: str, rendered, tmp_path: Path) -> None:
    out, facts = rendered
    shot = tmp_path / "report.png"
    started = time.monotonic()
    code, _, stderr = chromium(
        browser,
        tmp_path / "profile-shot",
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={shot}",
        "--window-size=1400,2000",
        out.as_uri(),
    )
    assert code == 0, stderr[-4000:]
    assert console_messages(stderr) == []
    height, width = matplotlib.image.imread(shot).shape[:2]
    assert (width, height) == (1400, 2000)

    code, dom, stderr = chromium(browser, tmp_path / "profile-dom", "--dump-dom", out.as_uri())
    assert code == 0, stderr[-4000:]
    assert "churn-predictor: lineage report" in dom and "version 1 (selected)" in dom
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) == 4
    assert re.findall(r'<div class="stage"><h3>([^<]+)</h3>', dom) == list(CHAIN)
    print(f"report {facts['seconds']:.1f} s, chromium {time.monotonic() - started:.1f} s")
    if os.environ.get("PREDICTFLOW_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


# --- the MLflow UI over the same store, and the report against it as a server ------------------


@contextmanager
def mlflow_ui(repo: Path, log: Path, plain: bool = False) -> Iterator[str]:
    """`make ui` itself over `repo`'s store on a free loopback port (or, `plain`, MLflow's own
    `mlflow ui` with no project app); yields its address once it answers."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    uri = f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}"
    if plain:
        command = [str(BIN / "mlflow"), "ui", "--host", HOST, "--port", str(port)]
        command += ["--workers", "1", "--backend-store-uri", uri]
    else:
        command = ["make", "--no-print-directory", "-C", str(REPO), "ui"]
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            command,
            cwd=log.parent,
            env=child_env(PORT=str(port), MLFLOW_TRACKING_URI=uri),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"mlflow ui exited {proc.returncode}:\n{log.read_text()[-4000:]}")
                with (
                    suppress(OSError),
                    urllib.request.urlopen(f"{base}/health", timeout=2) as response,
                ):
                    if response.status == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(f"mlflow ui did not answer in time:\n{log.read_text()[-4000:]}")
                time.sleep(0.25)
            yield base
        finally:
            stop_process_group(proc)


def test_mlflow_ui_lists_the_model_and_the_report_works_against_it(
    browser: str, pipeline_repo: Path, rendered, tmp_path: Path
) -> None:
    _, local = rendered
    with mlflow_ui(pipeline_repo, tmp_path / "ui.log") as base:
        code, dom, stderr = chromium(
            browser,
            tmp_path / "profile",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{base}/#/models",
        )
        assert code == 0, stderr[-4000:]
        assert "churn-predictor" in dom, dom[-3000:]

        out = tmp_path / "served.html"
        command = [BIN / "predictflow", "report", "--output", out, "--json"]
        facts = json.loads(run(command, pipeline_repo, MLFLOW_TRACKING_URI=base).stdout)
    keys = ("versions", "selected", "stages", "plots", "missing_plots", "warnings")
    assert {k: facts[k] for k in keys} == {k: local[k] for k in keys}
    page = out.read_text(encoding="utf-8")
    links = re.findall(r'href="(http[^"]+)"', page)
    assert links and all(link.startswith(f"{base}/#/experiments/") for link in links)
    assert len(embedded_pngs(page)) == 4


def test_screenshot_in_docs_is_a_png() -> None:
    """docs/report.md shows docs/report.png: it must exist and be an image."""
    assert SCREENSHOT.read_bytes().startswith(report_facts.PNG_MAGIC)
    assert "](report.png)" in (REPO / "docs/report.md").read_text(encoding="utf-8")


# --- many versions: a sweep registers one per point ---------------------------------------------


def test_columns_are_alias_holders_then_the_newest_and_the_rest_is_summarised() -> None:
    views = [
        view(n, ["production"] if n == 3 else ["staging"] if n == 7 else [])
        for n in range(50, 0, -1)
    ]
    shown = report_render.shown_versions(views, selected=3)
    assert [v["version"] for v in shown] == [3, 7, 50, 49]
    assert report_render.version_ranges([1, 2, 4, 5, 6, 8, 47]) == "v1-v2, v4-v6, v8, v47"
    assert [v["version"] for v in report_render.shown_versions(views, selected=20)] == [
        3,
        7,
        20,
        50,
    ]


def register_many(uri: str, count: int) -> None:
    """`count` versions with runs and complete lineage, straight through MLflow (no training)."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("churn-prediction")
    client.create_registered_model("churn-predictor")
    for number in range(1, count + 1):
        run_ = client.create_run(experiment, run_name=f"sweep-point-{number:02d}")
        client.log_metric(run_.info.run_id, "roc_auc", 0.80 + number / 10_000)
        client.log_param(run_.info.run_id, "model.max_depth", str(3 + number % 6))
        client.set_terminated(run_.info.run_id)
        tags = {
            "git_commit": f"{number:040x}",
            "git_dirty": "false",
            "data_md5": "d" * 32,
            "data_path": "data/customers.csv",
            "model_md5": f"{number:032x}",
            "sealed_commit": f"{number:040x}",
        }
        client.create_model_version(
            "churn-predictor", f"file:///nonexistent/{number}", run_.info.run_id, tags=tags
        )
    client.set_registered_model_alias("churn-predictor", "production", "3")
    client.set_registered_model_alias("churn-predictor", "staging", "7")


# Measures the laid-out page: the production header's right edge against the visible width.
MEASURE = """<script>
const th = [...document.querySelectorAll('thead th')]
  .find(t => /^version 3( |$)/.test(t.textContent));
const scroll = th.closest('.scroll');
document.title = 'measured ' + JSON.stringify({right: th.getBoundingClientRect().right,
  visible: Math.min(window.innerWidth, scroll.getBoundingClientRect().right),
  overflow: scroll.scrollWidth - scroll.clientWidth});
</script>"""


def test_report_over_50_versions_keeps_production_in_view(browser: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    register_many(uri, 50)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    built = report_facts.collect(client, REPO)
    assert built.selected == 3 and len(built.views) == 50
    page = report_render.render(built)
    assert "+ 46 more versions: v1-v2, v4-v6, v8-v48" in page
    out = tmp_path / "lineage.html"
    out.write_text(page, encoding="utf-8")
    code, _, stderr = chromium(
        browser,
        tmp_path / "profile-shot",
        f"--screenshot={tmp_path / 'report-50.png'}",
        "--window-size=1600,1200",
        out.as_uri(),
    )
    assert code == 0, stderr[-4000:]

    # The page allows no script (its CSP); the measuring copy drops the CSP and adds one.
    measured = tmp_path / "measured.html"
    probe = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    measured.write_text(probe.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    code, dom, stderr = chromium(
        browser,
        tmp_path / "profile-dom",
        "--window-size=1600,1200",
        "--dump-dom",
        measured.as_uri(),
    )
    assert code == 0, stderr[-4000:]
    box = json.loads(re.search(r"<title>measured (\{.*?\})</title>", dom)[1])
    assert box["right"] <= box["visible"], box
    assert box["overflow"] <= 0, box  # the shown columns fit: no sideways scrolling
    if os.environ.get("PREDICTFLOW_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "report-50.png", SCREENSHOT.with_name("report-50-versions.png"))
