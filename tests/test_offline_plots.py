"""`dvc plots show` renders offline: DVC's page takes Vega from the installed npm packages.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so behind a firewall it is
blank. `.dvc/config` names `.dvc/plots.html` (built by `make install` from package-lock.json) as
`plots.html_template`. Headless Chromium opens the page with every network request refused and
counts the drawn plots; the feature-importance chart gets a row per feature.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import REPO, dvc
from .test_report import browser, chromium  # noqa: F401 (fixture)

pytestmark = pytest.mark.pipeline

PLOTS = (
    "Training_curve__logloss_per_boosting_round_",
    "ROC",
    "Precision-recall",
    "Confusion_matrix",
    "Reliability__calibration_",
    "Feature_importance",
)
OFFLINE = ("--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND")
MIN_ROW_PX = 12  # Vega's axis labels are 10 px high


def drawn_canvases(dom: str) -> dict[str, tuple[int, int]]:
    """Each vega-embed plot's id and the (width, height) of the canvas Vega drew into it."""
    found = re.findall(
        r'<div id="([^"]+)" class="vega-embed[^"]*">(?:(?!<div id=).)*?'
        r'<canvas width="(\d+)" height="(\d+)"',
        dom,
        flags=re.S,
    )
    return {name: (int(width), int(height)) for name, width, height in found}


def test_the_offline_template_is_installed_and_named_in_dvc_config() -> None:
    assert "html_template = plots.html" in (REPO / ".dvc/config").read_text()
    page = (REPO / ".dvc/plots.html").read_text(encoding="utf-8")  # `make install` built it
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert not re.search(r"<script[^>]+src=", page), "the template must load nothing"


def test_dvc_plots_render_offline_with_readable_importance_labels(
    browser: str,  # noqa: F811
    pipeline_repo: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "plots"
    dvc(pipeline_repo, "plots", "show", "-o", str(out))
    page = out / "index.html"
    code, dom, stderr = chromium(
        browser,
        tmp_path / "profile",
        *OFFLINE,
        "--virtual-time-budget=15000",
        "--dump-dom",
        page.as_uri(),
    )
    assert code == 0, stderr[-4000:]
    canvases = drawn_canvases(dom)
    assert sorted(canvases) == sorted(PLOTS), dom[-3000:]

    features = len((pipeline_repo / "metrics/eval_plots/importance.csv").read_text().splitlines())
    _, height = canvases["Feature_importance"]
    assert height >= MIN_ROW_PX * (features - 1), f"{height} px for {features - 1} labels"
    chromium(
        browser,
        tmp_path / "profile-shot",
        *OFFLINE,
        "--virtual-time-budget=15000",
        "--window-size=1400,2600",
        f"--screenshot={tmp_path / 'plots.png'}",
        page.as_uri(),
    )
    assert (tmp_path / "plots.png").stat().st_size > 10_000
