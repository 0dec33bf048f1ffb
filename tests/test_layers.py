"""The house's shape, held: no module of predictflow reaches down through more than 9 modules.

`lint-imports` (pyproject.toml) holds the direction of every import and the absence of cycles;
this holds the depth: the longest chain of imports, those inside functions counted (the CLI
imports late), those under TYPE_CHECKING not, as grimp (import-linter's graph) sees them.
"""

from __future__ import annotations

import functools

import grimp

MAX_CHAIN = 9


def longest_chain() -> tuple[str, ...]:
    graph = grimp.build_graph("predictflow", exclude_type_checking_imports=True)
    modules = graph.modules - {"predictflow"}

    @functools.cache
    def longest_from(module: str) -> tuple[str, ...]:
        below = graph.find_modules_directly_imported_by(module) & modules
        return max(((module, *longest_from(m)) for m in below), key=len, default=(module,))

    return max((longest_from(m) for m in modules), key=len)


def test_the_longest_import_chain_is_at_most_nine_modules() -> None:
    chain = longest_chain()
    assert len(chain) <= MAX_CHAIN, " -> ".join(chain)
    assert chain[0] in {"predictflow.cli", "predictflow.ui_app"}  # the top is an entry point
