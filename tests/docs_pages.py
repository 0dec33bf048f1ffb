"""The README and its docs/ pages as the tests read them: which pages, in which order, which links.

One place for both the README test (which runs the pages' blocks in this order) and the map test
(which checks the links), so the two cannot disagree about what a link is.
"""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark").enable("table")


def links(path: Path) -> list[str]:
    """Every link and image target in a Markdown file, in order (code spans and blocks excluded)."""
    found: list[str] = []
    for token in _MD.parse(path.read_text(encoding="utf-8")):
        for child in token.children or []:
            target = child.attrGet("href") if child.type == "link_open" else child.attrGet("src")
            if child.type in ("link_open", "image") and isinstance(target, str):
                found.append(target)
    return found


def local_target(source: Path, target: str) -> Path | None:
    """The file a relative link points at, or None for a URL, a mail address or an anchor."""
    if "://" in target or target.startswith(("mailto:", "#")):
        return None
    return (source.parent / target.split("#", 1)[0]).resolve()


def doc_pages(root: Path) -> list[Path]:
    """docs/*.md in the order README.md first links them, then any page it does not link (so no
    page's blocks are left out; tests/test_docs_map.py fails on such a page)."""
    readme = root / "README.md"
    pages = sorted(p.resolve() for p in (root / "docs").glob("*.md"))
    linked = [local_target(readme, target) for target in links(readme)]
    ordered = [p for p in dict.fromkeys(linked) if p in pages]
    return ordered + [p for p in pages if p not in ordered]
