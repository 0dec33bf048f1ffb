"""`reproduce`'s verdict for a version trained on Dask: the data and features by their bytes,
the model by its held-out ROC AUC within a stated tolerance (a distributed fit depends on which
worker holds which partition)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from predictflow.ops.reproduce import (
    DASK_AUC_TOLERANCE,
    ReproduceError,
    StageCheck,
    compare_dask_fit,
    recorded_engine,
    render_check,
    reproduce,
)


def rebuilt_scores(clone: Path, roc_auc: float) -> Path:
    (clone / "metrics").mkdir(parents=True)
    (clone / "metrics" / "eval.json").write_text(json.dumps({"roc_auc": roc_auc}))
    return clone


def differing_model() -> StageCheck:
    return StageCheck("train", False, {"models/model.pkl": ("aaaa", "bbbb")})


def test_a_dask_fit_within_the_tolerance_matches_by_auc(tmp_path: Path) -> None:
    clone = rebuilt_scores(tmp_path, 0.8610)
    check = compare_dask_fit(differing_model(), 0.8594, clone)
    assert check.matches and check.compared == "roc_auc"
    assert check.roc_auc == (0.8594, 0.8610)


def test_a_dask_fit_beyond_the_tolerance_or_unscored_differs(tmp_path: Path) -> None:
    clone = rebuilt_scores(tmp_path / "far", 0.8594 + DASK_AUC_TOLERANCE + 0.001)
    assert not compare_dask_fit(differing_model(), 0.8594, clone).matches
    assert not compare_dask_fit(differing_model(), None, clone).matches  # nothing recorded
    unscored = compare_dask_fit(differing_model(), 0.8594, tmp_path / "no-eval")
    assert not unscored.matches and unscored.roc_auc == (0.8594, None)


def test_identical_bytes_stay_the_stronger_verdict(tmp_path: Path) -> None:
    same = StageCheck("train", True)
    assert compare_dask_fit(same, 0.8594, tmp_path) is same


def test_the_engine_is_read_from_the_recorded_prepare_params() -> None:
    dask = {"prepare": {"params": {"base.seed": 42, "scale": {"engine": "dask", "partitions": 4}}}}
    assert recorded_engine(dask) == "dask"
    assert recorded_engine({"prepare": {"params": {"base.seed": 42}}}) == "local"  # before scale


def test_the_verdict_says_what_was_compared() -> None:
    facts = {
        "version": 3,
        "matches": True,
        "stages": {
            "prepare": {"matches": True, "compared": "bytes", "differing": {}},
            "train": {
                "matches": True,
                "compared": "roc_auc",
                "differing": {"models/model.pkl": {"recorded": "aaaa", "rebuilt": "bbbb"}},
                "roc_auc": {"recorded": 0.8594, "rebuilt": 0.861},
                "tolerance": DASK_AUC_TOLERANCE,
            },
        },
    }
    text = render_check(facts)
    assert "compared by held-out roc_auc: recorded 0.8594, rebuilt 0.8610 (tolerance 0.005)" in text
    assert text.endswith(
        "version 3 reproduced: data and features byte for byte, the model by held-out roc_auc"
    )
    facts["matches"] = facts["stages"]["train"]["matches"] = False
    assert render_check(facts).endswith("version 3 did NOT reproduce")


@pytest.mark.parametrize("data_path", ["../../outside", "/tmp/elsewhere"])
def test_a_data_path_outside_the_repository_is_refused_before_anything_is_written(
    tmp_path: Path, data_path: str
) -> None:
    """A version's `data_path` tag names the .dvc file the rebuild pins: one that leads out of
    the temporary clone (a forged tag) is refused, and no file is written there."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "one"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    view = {
        "version": 7,
        "code": {"git_commit": commit},
        "data": {"md5": "0" * 32, "path": data_path},
        "stages": {"prepare": {"params": {}, "outs": {"x": "1"}, "deps": {}}},
    }
    with pytest.raises(ReproduceError, match=r"its data_path .* is outside the repository"):
        reproduce(view, repo)
    assert not list(tmp_path.rglob("*.dvc"))
    assert not Path(f"{data_path}.dvc").exists()
