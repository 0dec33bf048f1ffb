"""The README is a first screen and a map: short, the two commands early, every docs/ page linked,
and no relative link in the README or docs/ pointing at nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import REPO
from .docs_pages import doc_pages, links, local_target

MAX_LINES = 150
FIRST_SCREEN = 70


def markdown_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def broken_links(root: Path) -> list[str]:
    """`file: target` for each relative link whose file is missing."""
    root = root.resolve()
    broken = []
    for source in markdown_files(root):
        for target in links(source):
            path = local_target(source, target)
            if path is not None and not path.exists():
                broken.append(f"{source.relative_to(root)}: {target}")
    return broken


def test_readme_is_a_first_screen() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines, at most {MAX_LINES}"
    head = "\n".join(lines[:FIRST_SCREEN])
    for needed in ("make repro", "make test", "## A short tour", "Which experiment", "Which data"):
        assert needed in head, f"{needed!r} is not in README.md's first {FIRST_SCREEN} lines"


def test_readme_shows_the_mlflow_ui() -> None:
    images = [t for t in links(REPO / "README.md") if t.endswith(".png")]
    assert any(Path(t).name.startswith("mlflow-") for t in images), images


def test_readme_links_every_docs_page() -> None:
    linked = {local_target(REPO / "README.md", t) for t in links(REPO / "README.md")}
    unlinked = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs/ pages the README does not link: {unlinked}"


def test_every_relative_link_resolves() -> None:
    assert not broken_links(REPO)


def test_the_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    """A dead link, image or anchor's file fails; URLs, same-page anchors and code do not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "[ok](../README.md) [up](../missing.md#x) ![img](gone.png) [web](https://example.org)\n"
        "`[in code](nowhere.md)`\n"
    )
    (tmp_path / "README.md").write_text("[a](docs/a.md#top) [b](docs/b.md) [anchor](#here)\n")
    assert broken_links(tmp_path) == [
        "README.md: docs/b.md",
        "docs/a.md: ../missing.md#x",
        "docs/a.md: gone.png",
    ]


@pytest.mark.parametrize("page", ["README.md", *(p.name for p in doc_pages(REPO))])
def test_page_starts_with_a_title(page: str) -> None:
    path = REPO / ("" if page == "README.md" else "docs") / page
    assert path.read_text(encoding="utf-8").startswith("# "), f"{page} has no '# ' title line"
