"""Decisions with uncertainty, unit level: the bootstrap statistics, calibration, lift, segments,
the paired production gate's rule and the model card, on small inline data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from predictflow.core import evaluation as ev
from predictflow.lineage import modelcard
from predictflow.lineage.promotion import Challenge, champion_gate
from predictflow.lineage.tracking import METRIC_KEYS


def toy(rows: int = 600, seed: int = 0, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(int)
    proba = np.clip(0.35 * y + 0.65 * rng.random(rows), 0.0, 1.0)
    return y, (np.round(proba, 1) if ties else proba)


@pytest.mark.parametrize("ties", [False, True])
def test_resampled_aucs_equal_sklearn_with_the_same_weights(ties: bool) -> None:
    y, proba = toy(ties=ties)
    counts = next(ev.bootstrap_counts(len(y), 7, seed=3))
    assert counts.shape == (7, len(y)) and (counts.sum(axis=1) == len(y)).all()
    auc, ap = ev.weighted_auc(counts, y, proba)
    for i in range(7):
        assert auc[i] == pytest.approx(metrics.roc_auc_score(y, proba, sample_weight=counts[i]))
        expected = metrics.average_precision_score(y, proba, sample_weight=counts[i])
        assert ap[i] == pytest.approx(expected)


def test_a_resample_without_both_classes_is_left_out() -> None:
    y, proba = np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9])
    auc, ap = ev.weighted_auc(np.array([[3, 0, 0], [1, 1, 1]]), y, proba)
    assert np.isnan(auc[0]) and np.isnan(ap[0]) and auc[1] == 1.0 and ap[1] == 1.0


def test_blocks_give_the_same_resamples_as_one_matrix(monkeypatch) -> None:
    """A large split is resampled in blocks (memory stays near 2 MB): same draws, same seed."""
    whole = np.vstack(list(ev.bootstrap_counts(50, 40, seed=9)))
    monkeypatch.setattr(ev, "_CELLS_PER_BLOCK", 50 * 7)  # blocks of 7 resamples
    blocks = list(ev.bootstrap_counts(50, 40, seed=9))
    assert [len(b) for b in blocks] == [7] * 5 + [5]
    assert (np.vstack(blocks) == whole).all()  # memory bounded, results unchanged


@pytest.mark.parametrize("ties", [False, True])
def test_intervals_are_the_same_bits_whatever_the_block_size(monkeypatch, ties: bool) -> None:
    """Blocks of one resample (a large split) and one block of all: the same floats, exactly
    (metrics/eval.json keeps its bytes when the block size moves)."""
    y, proba = toy(ties=ties)
    whole = ev.confidence_intervals(y, proba, 60, seed=5, confidence=0.9)
    monkeypatch.setattr(ev, "_CELLS_PER_BLOCK", len(y))  # one resample a block
    assert ev.confidence_intervals(y, proba, 60, seed=5, confidence=0.9) == whole
    monkeypatch.setattr(ev, "_CELLS_PER_BLOCK", len(y) * 7)  # blocks of 7 resamples
    assert ev.confidence_intervals(y, proba, 60, seed=5, confidence=0.9) == whole


def test_intervals_are_seeded_and_hold_the_point_estimate() -> None:
    y, proba = toy()
    first = ev.confidence_intervals(y, proba, 500, seed=42, confidence=0.95)
    assert first == ev.confidence_intervals(y, proba, 500, seed=42, confidence=0.95)
    assert first != ev.confidence_intervals(y, proba, 500, seed=43, confidence=0.95)
    assert first["roc_auc_ci_low"] < metrics.roc_auc_score(y, proba) < first["roc_auc_ci_high"]
    ap = metrics.average_precision_score(y, proba)
    assert first["pr_auc_ci_low"] < ap < first["pr_auc_ci_high"]
    narrow = ev.confidence_intervals(y, proba, 500, seed=42, confidence=0.5)
    assert first["roc_auc_ci_low"] < narrow["roc_auc_ci_low"] < narrow["roc_auc_ci_high"]


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    y, proba = toy()
    same = ev.paired_auc_difference(y, proba, proba.copy(), 300, 1, 0.95)
    assert (same.difference, same.low, same.high, same.rows) == (0.0, 0.0, 0.0, len(y))


def test_paired_interval_is_narrower_than_two_independent_ones() -> None:
    """The point of pairing: most of each AUC's sampling noise is shared and cancels."""
    y, proba = toy(rows=1500)
    rng = np.random.default_rng(5)
    other = np.clip(proba + rng.normal(0, 0.03, len(y)), 0, 1)
    paired = ev.paired_auc_difference(y, other, proba, 1000, 2, 0.95)
    single = ev.confidence_intervals(y, proba, 1000, 2, 0.95)
    assert paired.high - paired.low < (single["roc_auc_ci_high"] - single["roc_auc_ci_low"]) / 2
    expected = metrics.roc_auc_score(y, other) - metrics.roc_auc_score(y, proba)
    assert paired.difference == pytest.approx(expected)


def test_calibration_of_a_perfectly_calibrated_and_a_constant_score() -> None:
    y = np.array([0, 0, 0, 1] * 25)
    constant = np.full(100, 0.25)
    table = ev.reliability(y, constant, bins=10)
    assert table.to_dict("records") == [
        {"bin": 2, "mean_predicted": 0.25, "fraction_churned": 0.25, "rows": 100}
    ]
    calibrated = ev.calibration_metrics(y, constant, bins=10)
    assert calibrated["ece"] == 0.0 and calibrated["brier"] == pytest.approx(0.1875)
    assert ev.calibration_metrics(y, np.full(100, 0.75), bins=10)["ece"] == pytest.approx(0.5)
    # a probability of exactly 1.0 falls in the last bin, not past it
    assert ev.reliability(np.array([1]), np.array([1.0]), bins=10)["bin"].tolist() == [9]


def test_top_decile_lift() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0] * 2)  # 20 rows, 20 % churn
    proba = np.linspace(1.0, 0.0, 20)  # the two highest scored churn
    assert ev.top_decile_lift(y, proba) == pytest.approx(5.0)
    assert ev.top_decile_lift(y, proba[::-1]) == 0.0


def test_segments_cover_contract_tenure_band_and_senior_citizen() -> None:
    rows = pd.DataFrame(
        {
            "Contract": ["Month-to-month", "Month-to-month", "Two year", "Two year"],
            "tenure": [0, 11, 12, 72],
            "SeniorCitizen": [0, 1, 0, 0],
        }
    )
    y, proba = np.array([1, 0, 0, 0]), np.array([0.9, 0.2, 0.1, 0.3])
    table = {(s["segment"], s["value"]): s for s in ev.segment_metrics(rows, y, proba)}
    assert set(table) == {
        ("Contract", "Month-to-month"),
        ("Contract", "Two year"),
        ("tenure band", "0-11 months"),
        ("tenure band", "12-23 months"),
        ("tenure band", "48+ months"),
        ("SeniorCitizen", "0"),
        ("SeniorCitizen", "1"),
    }
    assert table[("Contract", "Month-to-month")] | {"brier": None} == {
        "segment": "Contract",
        "value": "Month-to-month",
        "rows": 2,
        "churn_rate": 0.5,
        "mean_score": 0.55,
        "roc_auc": 1.0,
        "brier": None,
    }
    assert table[("Contract", "Two year")]["roc_auc"] is None  # one class: undefined, not 0.5


def duel(low: float, high: float, difference: float) -> Challenge:
    return Challenge(
        "roc_auc",
        0.84,
        "3",
        0.84 - difference,
        ev.PairedDifference(difference, low, high, 0.95, 1409),
    )


@pytest.mark.parametrize(
    ("low", "high", "difference", "margin", "passed"),
    [
        (-0.030, -0.010, -0.020, 0.01, False),  # really worse beyond the margin
        (0.010, 0.040, 0.025, 0.01, True),  # a real improvement
        (-0.008, 0.006, -0.001, 0.01, True),  # a tie within the margin: not worse beyond it
        (-0.004, 0.012, 0.004, 0.0, False),  # a noise-level "improvement" with no margin given
        (-0.010, 0.000, -0.005, 0.01, True),  # the low end exactly at -margin
    ],
)
def test_champion_gate_reads_the_interval_not_the_point(
    low: float, high: float, difference: float, margin: float, passed: bool
) -> None:
    gate = champion_gate(duel(low, high, difference), margin)
    assert gate.passed is passed
    assert f"difference {difference:+.4f}" in gate.detail
    assert f"95% paired-bootstrap interval [{low:+.4f}, {high:+.4f}]" in gate.detail
    floor = "+0.0000" if margin == 0 else f"{-margin:+.4f}"  # never "-0.0000"
    assert f"must be >= {floor}," in gate.detail


def test_champion_gate_without_a_champion() -> None:
    gate = champion_gate(Challenge("roc_auc", 0.8), 0.01)
    assert gate.passed and gate.detail == "no version holds production yet"


def card_facts(**change) -> modelcard.CardFacts:
    scores = {k: 0.5 for k in METRIC_KEYS} | {
        "roc_auc": 0.812345,
        "roc_auc_ci_low": 0.79,
        "roc_auc_ci_high": 0.83,
        "pr_auc_ci_low": 0.45,
        "pr_auc_ci_high": 0.55,
        "brier": 0.14,
        "ece": 0.08,
        "top_decile_lift": 2.5,
    }
    facts = {
        "model": "churn-predictor",
        "version": "4",
        "run_id": "abc",
        "tags": {"data_md5": "d" * 32, "git_commit": "c" * 40, "git_dirty": "false"},
        "data": {
            "rows_raw": 100,
            "rows_dropped": 0,
            "rows_train": 80,
            "rows_test": 20,
            "churn_rate_train": 0.25,
            "churn_rate_test": 0.25,
        },
        "scores": scores,
        "segments": [
            {
                "segment": "Contract",
                "value": "Two year",
                "rows": 40,
                "churn_rate": 0.0,
                "mean_score": 0.03,
                "roc_auc": None,
                "brier": 0.01,
            }
        ],
        "threshold": 0.5,
        "confidence": 0.9,
        "resamples": 1000,
        "bins": 10,
    }
    return modelcard.CardFacts(**(facts | change))


def test_model_card_states_the_numbers_it_was_given() -> None:
    card = modelcard.render(card_facts())
    assert card.startswith("# Model card: churn-predictor version 4\n")
    for heading in ("Intended use", "Data", "Held-out metrics", "Calibration", "Known limits"):
        assert f"\n## {heading}" in card
    assert "| roc_auc | 0.812345 | 0.79 - 0.83 |" in card
    assert "| 90% interval |" in card and "| ece | 0.08 |" in card
    assert "| Contract | Two year | 40 | 0.0 | 0.03 | n/a (one class) | 0.01 |" in card
    assert f"md5 `{'d' * 32}`" in card and "(uncommitted changes)" not in card
    assert "- Contract = Two year: only 40 held-out rows" in card
    assert "not well calibrated (ece 0.08)" in card


def test_model_card_without_lineage_tags_says_so() -> None:
    card = modelcard.render(card_facts(tags={}))
    assert "| git commit | `not recorded` |" in card


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("ties", [False, True])
def test_each_resample_equals_sklearn_on_the_materialised_rows(seed: int, ties: bool) -> None:
    """Sorted once, tallied per resample: the same numbers as sklearn on the resampled rows."""
    y, proba = toy(rows=400, seed=seed, ties=ties)
    drawn = next(ev.bootstrap_draws(len(y), 6, seed=seed))
    auc, ap = ev.Ranking.of(y, proba).aucs(drawn)
    for i, rows in enumerate(drawn):
        assert abs(auc[i] - metrics.roc_auc_score(y[rows], proba[rows])) <= 1e-12
        assert abs(ap[i] - metrics.average_precision_score(y[rows], proba[rows])) <= 1e-12


def test_draws_and_counts_are_the_same_resamples() -> None:
    drawn = np.vstack(list(ev.bootstrap_draws(50, 9, seed=4)))
    counts = np.vstack(list(ev.bootstrap_counts(50, 9, seed=4)))
    assert (np.vstack([np.bincount(row, minlength=50) for row in drawn]) == counts).all()


def test_churn_scores_in_chunks_equal_one_call() -> None:
    from sklearn.linear_model import LogisticRegression

    y, proba = toy(rows=50)
    rows = pd.DataFrame({"a": proba, "b": np.arange(50) % 7})
    model = LogisticRegression().fit(rows, y)
    whole = model.predict_proba(rows)[:, 1]
    # a linear model's matrix product may round its last bit differently by chunk size
    np.testing.assert_allclose(ev.churn_scores(model, rows, chunk_rows=7), whole, rtol=1e-12)
    assert len(ev.churn_scores(model, rows.iloc[:0], chunk_rows=7)) == 0
