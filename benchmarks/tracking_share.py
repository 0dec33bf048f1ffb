"""How much of a cProfile'd stage went to MLflow and DVCLive.

cProfile keeps, for every caller -> callee edge, the time spent under the callee when called from
that caller. Tracking time is then:

+ every edge from project/library code into MLflow or DVCLive (an *entry*: `mlflow.log_params`,
  `Live.log_metric`, the autolog wrapper around `fit`, XGBoost calling autolog's per-iteration
  callback, the code of `import mlflow` itself);
- the whole time of each *original* function autolog wraps (`XGBClassifier.fit`, `xgboost.train`,
  `LogisticRegression.fit`), when MLflow is what called it (directly or through a decorator):
  that time is training, not tracking. Entries nested in it (XGBoost calling autolog's
  per-iteration callback) were added above, so they stay counted.

Edges from import machinery and built-ins are skipped (they would count nested calls twice); the
`import mlflow` / `import dvclive` statements of the stage are added as their own entries.
"""

from __future__ import annotations

import pstats
from collections import defaultdict
from pathlib import Path

TRACKING_PACKAGES = ("mlflow", "dvclive")
# Functions autolog wraps: the time MLflow spends calling them is the wrapped work itself.
ORIGINAL_WORK = {
    ("xgboost", "training.py", "train"),
    ("xgboost", "sklearn.py", "fit"),
    ("sklearn", "_logistic.py", "fit"),
}


WRAPPER = "mlflow.utils.autologging_utils.safety.safe_patch_function"
READABLE = {
    WRAPPER: "autolog wrapper around `fit` (net of the wrapped fit)",
    "mlflow.utils.autologging_utils.safety.safe_function": (
        "autolog per-round callback (one SQLite `log_batch` per round)"
    ),
    "mlflow.utils.autologging_utils.__init__.wrapper": "`mlflow.*.autolog()` set-up",
    "mlflow.tracking.client.__init__": "`MlflowClient()`: store connect, schema check",
    "mlflow.sklearn.__init__.log_model": "`mlflow.sklearn.log_model`",
    "dvclive.live.next_step": "DVCLive `next_step` (summary + sync each round)",
    "dvclive.live.__init__": "DVCLive `Live()`",
    "dvclive.live.log_metric": "DVCLive `log_metric`",
}


def _package(filename: str) -> str | None:
    parts = Path(filename).parts
    if "site-packages" in parts:
        index = parts.index("site-packages")
        if index + 1 < len(parts):
            return parts[index + 1]
    return None


def _is_tracking(func: tuple[str, int, str]) -> bool:
    return _package(func[0]) in TRACKING_PACKAGES


def _is_machinery(func: tuple[str, int, str]) -> bool:
    filename = func[0]
    return filename == "~" or filename.startswith("<frozen") or filename.startswith("<")


def _is_original(func: tuple[str, int, str]) -> bool:
    return (_package(func[0]), Path(func[0]).name, func[2]) in ORIGINAL_WORK


def _called_by_tracking(raw: dict, callers: dict, depth: int = 2) -> bool:
    """Whether MLflow calls this function, directly or through `depth - 1` decorator frames."""
    for caller in callers:
        if _is_tracking(caller):
            return True
        if depth > 1 and caller in raw and _called_by_tracking(raw, raw[caller][4], depth - 1):
            return True
    return False


def _label(func: tuple[str, int, str]) -> str:
    """`mlflow.tracking.fluent.log_params`-style name of a profiled function."""
    filename, _, name = func
    parts = Path(filename).parts
    if "site-packages" in parts:
        module = ".".join(parts[parts.index("site-packages") + 1 :])
        return f"{module.removesuffix('.py')}.{name}"
    return f"{Path(filename).name}:{name}"


def analyse(profile: Path | str, stage_file: str = "stages/train.py") -> dict[str, object]:
    """Tracking seconds, total seconds and the biggest entries of one profile."""
    stats = pstats.Stats(str(profile))
    raw = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    entries: dict[str, float] = defaultdict(float)
    for callee, (_, _, _, _, callers) in raw.items():
        if not _is_tracking(callee):
            continue
        for caller, (_, _, _, ct) in callers.items():
            if not _is_tracking(caller) and not _is_machinery(caller):
                entries[_label(callee)] += ct
    subtracted = 0.0
    for func, (_, _, _, ct, callers) in raw.items():
        if _is_original(func) and _called_by_tracking(raw, callers):
            subtracted += ct
    # `import mlflow` / `from dvclive import Live` written in the stage itself
    imports = 0.0
    for callee, (_, _, _, _, callers) in raw.items():
        if callee[2] in ("_find_and_load", "_handle_fromlist"):
            for caller, (_, _, _, ct) in callers.items():
                # inside the stage's functions: module-level imports are pandas & co.
                if caller[0].endswith(stage_file) and caller[2] != "<module>":
                    imports += ct
    tracking = sum(entries.values()) - subtracted + imports
    # what each entry cost by itself: the autolog wrapper without the training it wraps
    net = {READABLE.get(name, f"`{name}`"): seconds for name, seconds in entries.items()}
    wrapper = READABLE[WRAPPER]
    if wrapper in net:
        net[wrapper] -= subtracted
    net["`import mlflow` / `dvclive` in the stage"] = imports
    top = sorted(net.items(), key=lambda item: -item[1])[:7]
    top.append(("everything else", tracking - sum(seconds for _, seconds in top)))
    return {
        "total_seconds": round(total, 3),
        "tracking_seconds": round(tracking, 3),
        "share": round(tracking / total, 4) if total else 0.0,
        "import_seconds": round(imports, 3),
        "wrapped_work_seconds": round(subtracted, 3),
        "top_entries": [(name, round(seconds, 3)) for name, seconds in top],
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(analyse(sys.argv[1]), indent=2))
