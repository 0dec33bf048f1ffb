"""YAML read as DVC reads it (params files, `dvc.yaml`, `dvc.lock`), with one-line errors."""

from __future__ import annotations


def read_yaml(text: str) -> object:
    """YAML exactly as DVC reads params files and `dvc.lock`: YAML 1.2 through ruamel's safe
    loader (dvc/utils/serialize/_yaml.py `parse_yaml`), not PyYAML's YAML 1.1.

    The two disagree on spellings a user may well write (`010` is 10 for DVC and 8 for PyYAML,
    `5e-2` a float or a string, `yes` a string or True, `1:30` a string or 90), and a duplicate
    key is an error here as it is for DVC. Raises ruamel's `YAMLError` on invalid YAML.
    """
    from ruamel.yaml import YAML  # imported here: only readers of YAML files pay for it

    return YAML(typ="safe").load(text)


def yaml_problem(err: Exception) -> str:
    """One line for a YAML error: the line and, when the parser says it, what is wrong there
    (`found duplicate key "max_depth"`), without ruamel's multi-line context."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = (getattr(err, "problem", None) or "").split("\n")[0].strip()
    return f"not valid YAML{where}" + (f": {problem}" if problem else "")
