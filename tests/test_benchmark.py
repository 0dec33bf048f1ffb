"""`make bench` in miniature: figures are computed from real runs and land in the table.

Only shapes and arithmetic are checked, never a timing: timings belong to docs/benchmarks.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import report

from .conftest import REPO, copy_built_repo, run


def timing(median: float, rss: int = 10**8) -> dict:
    return {"median": median, "min": median, "max": median, "n": 1, "peak_rss": rss}


def test_every_figure_is_a_ratio_against_its_goal(tmp_path: Path) -> None:
    results = {
        "peer": timing(5.0),
        "cold": {"rows": 7043, "ours": timing(15.0), "stages": {}},
        "iteration": {"ours": timing(7.0), "stages": {"train": {"seconds": 3.0, "peak_rss": 1}}},
        "lineage": {"ours": timing(1.2), "bare": timing(1.0)},
        "tune": {"ours": timing(60.0), "points": 12},
        "tracking": {"rows": 10**6, "ours": timing(20.0), "bare": timing(19.5)},
        "drift": {"rows": 10**6, "ours": timing(20.0), "bare": timing(10.0)},
        "scale": {"7043": {"rows": 7043, "ours": timing(15.0), "bare": timing(3.0), "stages": {}}},
        "skipped": {"fresh clone": "--quick"},
    }
    rows = {row[0]: row for row in report.table(results, [])}
    assert rows["Cold `dvc repro -f`, 7,043 rows"][3:] == ("3.00x", "<= 2.0x", "**no**")
    assert rows["One iteration, `dvc exp run -S model.n_estimators=N`"][3:] == (
        "1.40x",
        "<= 1.5x",
        "yes",
    )
    assert rows["`predictflow lineage`"][3:] == ("1.20x", "<= 1.5x", "yes")
    assert rows["`predictflow tune`, 12 points"][1:4] == (
        "12 x one iteration 84 s",
        "60 s",
        "0.71x",
    )
    assert rows["Tracking share of `train`, 1,000,000 rows"][3:] == ("2.5%", "<= 5%", "yes")
    # a goal set at 1M rows is shown, not judged, on the pinned 7,043 rows
    assert rows["End to end, 7,043 rows"][3:] == ("5.00x", "<= 1.25x", "— (set at 1M)")
    assert rows["`predictflow drift` throughput, 1,000,000 rows"][2:4] == ("50,000 rows/s", "0.50x")

    results |= {"machine": {"cpu": "x", "cores": 2, "python": "3.11", "versions": {}}}
    results |= {"load_before": [1, 1, 1], "load_after": [1, 1, 1], "project_commit": "abc"}
    results |= {"argv": ["--quick"], "finished": "now", "bench_seconds": 60}
    out = tmp_path / "benchmarks.md"
    report.write(results, out, [])
    text = out.read_text()
    assert "| figure | baseline | ours | ratio | goal | met? |" in text
    assert "| `train` | 3.00 | " in text  # the iteration section, generated
    assert "fresh clone (--quick)" in text


def scale_point(rows: int, seconds: float, rss: int) -> dict:
    return {"rows": rows, "ours": timing(seconds, rss), "bare": timing(seconds, 8 * rss)}


@pytest.mark.parametrize(
    ("seconds", "rss", "met"),
    [
        (440.0, 3 * 10**9, "yes (ran; 3.00 GB; time 2.20x)"),  # 2x rows in 2.2x time: linear
        (442.0, 3 * 10**9, "**no** (ran; 3.00 GB; time 2.21x)"),  # slower than linear
        (300.0, 24 * 10**9, "**no** (ran; 24.00 GB; time 1.50x)"),  # not under the 24 GB
    ],
)
def test_ten_million_rows_are_judged_on_running_linear_in_time(
    seconds: float, rss: int, met: str
) -> None:
    """Past 5M rows the goal is issue 13's: ran, under 24 GB, time linear against 5M; 5M keeps
    <= 2.5 GB."""
    results = {"scale": {"1000000": scale_point(10**6, 50.0, 10**9)}}
    extra = [
        {"scale": {"5000000": scale_point(5 * 10**6, 200.0, 2 * 10**9)}},
        {"scale": {"10000000": scale_point(10**7, seconds, rss)}},
    ]
    rows = [row for row in report.table(results, extra) if row[0].startswith("Peak RSS")]
    assert [row[0] for row in rows] == [
        f"Peak RSS, {n} rows (largest process)" for n in ("1,000,000", "5,000,000", "10,000,000")
    ]
    assert rows[1][4:] == ("<= 2.5 GB", "yes")
    assert rows[2][2:] == (
        report.gb(rss),
        "0.12x",
        "runs, peak < 24 GB, time <= 2.2x the 5,000,000-row run (2.0x rows: linear)",
        met,
    )
    without_5m = report.table(results, extra[1:])
    assert without_5m[-1][5] == "— (no 5,000,000-row run)"


@pytest.mark.slow
def test_quick_bench_measures_the_peer_and_lineage(built_repo: Path, tmp_path: Path) -> None:
    repo = copy_built_repo(built_repo, tmp_path / "repo")
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    argv = ["--quick", "--only", "peer,lineage", "--repo", repo, "--out", out, "--json", raw]
    run([sys.executable, "-m", "benchmarks.run", *argv, "--workdir", tmp_path], REPO)

    results = json.loads(raw.read_text())
    assert results["peer"]["facts"]["rows"] == 7043  # the peer trained on the repo's data
    assert 0.8 < results["peer"]["facts"]["roc_auc"] < 0.9
    assert results["peer"]["facts"]["version"] == 1  # registered in its own new store
    table = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert any(line.startswith("| The peer") for line in table)
    lineage = next(line for line in table if line.startswith("| `predictflow lineage`"))
    assert lineage.count(" | ") == 5 and lineage.endswith(("yes |", "**no** |"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("predictflow-bench-")]


@pytest.mark.parametrize("script", ["bare", "peer", "run", "measure", "report"])
def test_every_benchmark_script_imports(script: str) -> None:
    """`make bench` runs these as scripts; an import a package move left behind fails here,
    in seconds, rather than at the next benchmark run (benchmarks/bare.py once did)."""
    import importlib

    module = importlib.import_module(f"benchmarks.{script}")
    assert module.__file__ and Path(module.__file__).parent == REPO / "benchmarks"
