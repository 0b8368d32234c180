"""Kendall tau-b per prompt between two judges' scores of the same responses and its mean over prompts
(storage/analysis/ranking_consistency.py), against scipy.stats.kendalltau and a cluster bootstrap by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import kendalltau

from storage.analysis.ranking_consistency import kendall_tau_b, ranking_consistency
from storage.db import Database
from tests.builders import judge, make_prompt, make_responses, make_study


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["prompt_id", "response_id", "judge", "score"], orient="row")


def test_tau_b_matches_scipy_with_and_without_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(2, 9))
        a, b = rng.integers(1, 5, n).astype(float), rng.integers(1, 5, n).astype(float)  # many ties
        ref = kendalltau(a, b, variant="b").statistic
        got = kendall_tau_b(a, b)
        assert (math.isnan(got) and math.isnan(ref)) or got == pytest.approx(ref, abs=1e-12)


def test_per_prompt_taus_their_mean_and_the_bootstrap_interval() -> None:
    rng = np.random.default_rng(3)
    rows, ref = [], {}
    for p in range(40):
        a = rng.normal(size=5)
        b = a + rng.normal(scale=1.0, size=5)  # the second judge mostly agrees
        ref[p] = kendalltau(a, b, variant="b").statistic
        rows += [(p, 10 * p + r, "it0", float(a[r])) for r in range(5)]
        rows += [(p, 10 * p + r, "it1", float(b[r])) for r in range(5)]
    rows.append((0, 999, "other", 1.0))  # a third judge's rows are ignored
    out = ranking_consistency(_frame(rows), "it0", "it1", n_boot=500, seed=11)
    assert [p["prompt_id"] for p in out["per_prompt"]] == list(range(40))
    assert [p["tau_b"] for p in out["per_prompt"]] == pytest.approx([ref[p] for p in range(40)], abs=1e-12)
    taus = np.array([ref[p] for p in range(40)])
    m = out["mean_tau_b"]
    assert m["estimate"] == pytest.approx(taus.mean(), abs=1e-12)
    # The interval by hand: resample the 40 prompts with replacement (numpy's default_rng(seed) integer draws
    # bootstrap.py documents), mean of each resample, 2.5% and 97.5% quantiles.
    draws = np.random.default_rng(11).integers(0, 40, size=(500, 40), dtype=np.int32)
    lo, hi = np.quantile(taus[draws].mean(axis=1), [0.025, 0.975])
    assert (m["low"], m["high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert m["low"] < m["estimate"] < m["high"] and out["n_prompts"] == 40 and out["skipped"] == {}


def test_prompts_without_a_defined_tau_are_counted_not_averaged() -> None:
    rows = [(1, 1, "a", 1.0), (1, 2, "a", 2.0), (1, 1, "b", 1.0), (1, 2, "b", 3.0),  # tau 1
            (2, 3, "a", 1.0), (2, 4, "a", 1.0), (2, 3, "b", 1.0), (2, 4, "b", 2.0),  # a ties all: undefined
            (3, 5, "a", 1.0), (3, 6, "a", 2.0), (3, 5, "b", 4.0),                    # one common response
            (4, 7, "a", 1.0), (4, 8, "a", 2.0)]                                      # b never scored it
    out = ranking_consistency(_frame(rows), "a", "b", n_boot=50)
    assert [(p["prompt_id"], p["tau_b"], p["n_responses"]) for p in out["per_prompt"]] == [(1, 1.0, 2)]
    assert out["skipped"] == {"all_tied": 1, "fewer_than_two_common": 2}
    assert ranking_consistency(_frame(rows[12:]), "a", "b")["mean_tau_b"] is None


def test_bad_input_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="two different judges"):
        ranking_consistency(_frame([(1, 1, "a", 1.0)]), "a", "a")
    with pytest.raises(ValueError, match="response 1 of prompt 1 by 'a'"):
        ranking_consistency(_frame([(1, 1, "a", 1.0), (1, 1, "a", 2.0)]), "a", "b")
    with pytest.raises(ValueError, match="missing column"):
        ranking_consistency(pl.DataFrame({"prompt_id": [1]}), "a", "b")


def test_scores_read_back_from_a_real_database(db: Database) -> None:
    """Two model judges' judge_score verdicts as critlab stores them, read with the query the report would use."""
    sid = make_study(db).id
    expected = []
    for ext, it0, it1 in (("p1", [9, 5, 1], [8, 6, 2]), ("p2", [1, 2, 3], [3, 2, 1]), ("p3", [4, 4, 1], [2, 5, 1])):
        pid = make_prompt(db, sid, ext)
        rids = make_responses(db, pid, ["x", "y", "z"])
        for name, scores in (("it0", it0), ("it1", it1)):
            for rid, v in zip(rids, scores):
                judge(db, sid, pid, name, "judge_score", response_id=rid, value=v, judge_kind="model")
        expected.append(kendalltau(it0, it1, variant="b").statistic)
    frame = pl.DataFrame(db.fetchdicts(
        """SELECT prompt_id, response_id, judge, value AS score FROM judgment WHERE judge_kind = 'model'
           AND method = 'judge_score' AND superseded_at IS NULL ORDER BY prompt_id, response_id"""))
    out = ranking_consistency(frame, "it0", "it1", n_boot=200)
    assert [p["tau_b"] for p in out["per_prompt"]] == pytest.approx(expected, abs=1e-12)
    assert expected[:2] == pytest.approx([1.0, -1.0])
    assert out["mean_tau_b"]["estimate"] == pytest.approx(float(np.mean(expected)), abs=1e-12)
