"""The scores file `predict` writes: pandas' own CSV of the score frame, byte for byte, whatever
the ids hold, while the score columns are formatted once for the file and the record's digest."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictflow.core.cleaning import clean
from predictflow.core.rawfile import read_raw
from predictflow.core.schema import FEATURES, ID, TARGET, TARGET_RULES, DataContractError
from predictflow.core.scoring import score_csv, score_text, write_scores
from predictflow.ops.synth import write_csv

# Ids a client's file can hold: a separator, quotes, a line break inside quotes, padding inside,
# non-ASCII, and one that looks like a number.
AWKWARD_IDS = ("a,b", 'say "hi"', "two\nlines", "in side", "Ærø-ø", "0012", "plain")


class ChargesModel:
    """P(churn) from MonthlyCharges: deterministic, distinct per row, [P(No), P(Yes)] pairs."""

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        yes = rows["MonthlyCharges"].to_numpy() / 137.0
        return np.column_stack([1 - yes, yes])


def score_frame_of(ids: list[str], labelled: bool, shadow: bool) -> pd.DataFrame:
    proba = np.linspace(0.0, 1.0, len(ids)) ** 3  # long reprs, 0.0 and 1.0 included
    frame = pd.DataFrame({ID: ids, "churn_probability": proba, "churn_predicted": proba >= 0.5})
    frame["churn_predicted"] = frame["churn_predicted"].astype("int64")
    if shadow:
        frame["shadow_churn_probability"] = proba[::-1]
        frame["shadow_churn_predicted"] = (proba[::-1] >= 0.5).astype("int64")
    if labelled:
        frame[TARGET] = np.arange(len(ids)) % 2
    return frame


@pytest.mark.parametrize("labelled", [False, True])
@pytest.mark.parametrize("shadow", [False, True])
@pytest.mark.parametrize("ids", ["plain", "quoted", "line break"])
def test_written_scores_are_pandas_csv_and_the_digest_is_of_the_score_columns(
    ids: str, shadow: bool, labelled: bool
) -> None:
    names = [f"{i:04d}-ABCDE" for i in range(50)]
    awkward = [i for i in AWKWARD_IDS if ids == "line break" or "\n" not in i]
    if ids != "plain":
        names[: len(awkward)] = awkward
    scores = score_frame_of(names, labelled, shadow)
    for header in (True, False):
        out = io.StringIO()
        digested = write_scores(out, scores, header)
        assert out.getvalue() == scores.to_csv(index=False, header=header, lineterminator="\n")
        assert digested == score_text(scores)
        assert ID.encode() not in digested and b"ABCDE" not in digested


def test_a_frame_laid_out_otherwise_is_still_written_as_pandas_writes_it() -> None:
    scores = score_frame_of([f"{i:04d}-ABCDE" for i in range(20)], labelled=True, shadow=False)
    for columns in (
        ["churn_probability", ID, "churn_predicted", TARGET],
        [ID, TARGET, "churn_probability", "churn_predicted"],
    ):
        out = io.StringIO()
        assert write_scores(out, scores[columns], True) == score_text(scores[columns])
        assert out.getvalue() == scores[columns].to_csv(index=False, lineterminator="\n")


def test_score_csv_in_chunks_writes_one_header_and_reads_back_the_scored_rows(
    tmp_path: Path,
) -> None:
    source = tmp_path / "batch.csv"
    write_csv(source, rows=257, seed=5)
    raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    raw.loc[: len(AWKWARD_IDS) - 1, ID] = AWKWARD_IDS
    raw.to_csv(source, index=False)
    whole, _ = clean(read_raw(source), str(source), strict_categories=False, require_target=False)
    proba = ChargesModel().predict(whole.loc[:, list(FEATURES)])[:, 1]

    output = tmp_path / "scores.csv"
    report = score_csv(ChargesModel(), source, output, threshold=0.5, chunk_rows=40)

    expected = pd.DataFrame(
        {ID: whole[ID], "churn_probability": proba, "churn_predicted": (proba >= 0.5) * 1}
    )
    if TARGET in whole:
        expected[TARGET] = whole[TARGET]
    assert output.read_text() == expected.to_csv(index=False, lineterminator="\n")
    assert report.rows_scored == len(whole) == 257
    assert report.scores_digest.hexdigest() == hashlib.md5(score_text(expected)).hexdigest()
    assert pd.read_csv(output, dtype={ID: str})[ID].head(len(AWKWARD_IDS)).tolist() == list(
        AWKWARD_IDS
    )


@pytest.mark.parametrize("blank", ["labels stop at a chunk", "labels start at a chunk"])
def test_labels_that_change_at_a_chunk_boundary_fail_as_the_whole_file_does(
    tmp_path: Path, blank: str
) -> None:
    """The lenient clean drops a chunk's all-blank `Churn`: without the file-wide decision, the
    rows after the boundary were written one field short (or long) under the first header."""
    source = tmp_path / "batch.csv"
    write_csv(source, rows=80, seed=5)
    raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    raw.loc[40:, TARGET] = "" if blank == "labels stop at a chunk" else raw.loc[40:, TARGET]
    raw.loc[:39, TARGET] = "" if blank == "labels start at a chunk" else raw.loc[:39, TARGET]
    raw.to_csv(source, index=False)
    first_blank_line = 42 if blank == "labels stop at a chunk" else 2
    rule = TARGET_RULES[True]  # a scored batch's labels: the lenient reading
    expected = f"{source}: column 'Churn', line {first_blank_line}: {rule} (got '')"
    with pytest.raises(DataContractError) as whole:
        score_csv(ChargesModel(), source, tmp_path / "whole.csv", 0.5, chunk_rows=1000)
    with pytest.raises(DataContractError) as chunked:
        score_csv(ChargesModel(), source, tmp_path / "chunked.csv", 0.5, chunk_rows=40)
    assert str(chunked.value) == str(whole.value) == expected
    assert list(tmp_path.iterdir()) == [source]  # nothing written, not even a temp file


def test_a_header_only_file_is_still_the_one_line_of_no_rows(tmp_path: Path) -> None:
    source = tmp_path / "batch.csv"
    write_csv(source, rows=3, seed=5)
    source.write_text(source.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataContractError, match=r"no data rows after the header"):
        score_csv(ChargesModel(), source, tmp_path / "scores.csv", 0.5, chunk_rows=40)
    assert list(tmp_path.iterdir()) == [source]
