"""Model references as users write them: `models:/name@alias`, `models:/name/3`, `3`, ...

Parsing only, no store: the registry (writes, through MlflowClient) and the fast store readers
(`registry_read`) both resolve what this returns.
"""

from __future__ import annotations

import re

from predictflow.base.errors import RegistryError

# What a model reference may be (`models:/` forms after the first comma).
REF_FORMS = (
    "a version number (3), models:/NAME@ALIAS, models:/NAME/N, models:/NAME/latest or "
    "models:/m-<id>"
)
LOGGED_MODEL = re.compile(r"m-[0-9a-f]{32}")  # MLflow 3's logged model id


def parse_ref(ref: str | None, default_name: str) -> tuple[str, str | None]:
    """(model name, selector) of `models:/name@alias`, `models:/name/3`, `models:/name/Stage`,
    `models:/name/latest`, `3` or None (the newest: what MLflow's `latest` means too); an `@`
    starts an alias selector. A logged model's `models:/m-<id>` gives (None, "m-<id>")."""
    if ref is not None and not ref.strip():  # `promote ""`: not a name to look up
        raise RegistryError(f"the model version is empty: give {REF_FORMS}")
    if ref is None or not ref.startswith("models:/"):
        return default_name, ref
    body = ref.removeprefix("models:/")
    if LOGGED_MODEL.fullmatch(body):
        return None, body
    name, sep, selector = body.partition("@") if "@" in body else body.partition("/")
    if not name or not selector:
        raise RegistryError(f"model URI {ref!r}: expected {REF_FORMS.partition(', ')[2]}")
    if sep != "@" and selector.lower() == "latest":
        return name, None
    return name, f"@{selector}" if sep == "@" else selector
