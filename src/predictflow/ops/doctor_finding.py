"""A finding of `predictflow doctor` (ok / warning / problem, a detail and a fix) and the
table it prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["ok", "warning", "problem"]


@dataclass
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""
    fixed: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
