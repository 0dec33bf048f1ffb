"""`make bench` in miniature: the benchmark runs end to end and writes its table and plot.

Only the shape of the output is checked, never a timing: timings belong to docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, child_env

pytestmark = pytest.mark.pipeline

FIGURE_ROWS = ("| 1. ", "| 2. ", "| 3a. ", "| 3b. ", "| 4a. ", "| 4b. ", "| 5. ", "| 6. ")


def test_quick_benchmark_writes_every_figure_and_the_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "benchmarks.md", tmp_path / "scaling.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--out",
            str(out),
            "--plot",
            str(plot),
            "--json",
            str(tmp_path / "raw.json"),
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"

    text = out.read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| figure | baseline | ours | ratio | goal | met? |")
    for prefix in FIGURE_ROWS:
        rows = [line for line in table if line.startswith(prefix)]
        assert len(rows) == 1, f"no single table row for figure {prefix!r} in:\n{text}"
        assert rows[0].count(" | ") == 5, rows[0]
    assert "skipped (--quick)" in next(line for line in table if line.startswith("| 6. "))
    for section in ("## What limits the rest", "## Scale", "## Machine and versions"):
        assert section in text
    assert f"]({plot.name})" in text

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 5_000
    # the throw-away repositories are gone
    leftovers = [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("predictflow-")]
    assert not leftovers
