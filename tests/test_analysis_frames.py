"""The input checks and small helpers every metric rests on (storage.analysis._frames), and the checklist
figures, against scipy / scikit-learn or values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats
from sklearn import metrics as skm

from storage import analysis as A
from storage.analysis import _frames as F


def test_frame_reads_tables_and_names_what_is_wrong():
    lazy = pl.LazyFrame({"a": [1, 2], "b": ["x", None]})
    assert F.frame(lazy, ["a"], "t").shape == (2, 2)
    assert F.frame({"a": [1], "b": [2]}, ["a", "b"], "t").rows() == [(1, 2)]
    assert F.frame([{"a": 1}], ["a"], "t").rows() == [(1,)]
    with pytest.raises(ValueError, match="t: cannot read as a table \\(int\\)"):
        F.frame(5, ["a"], "t")
    with pytest.raises(ValueError, match="t: missing column\\(s\\) \\['c'\\]; got \\['a', 'b'\\]"):
        F.frame(lazy, ["a", "c"], "t")
    with pytest.raises(ValueError, match="t: column 'b' has 1 null value\\(s\\)"):
        F.frame(lazy, ["a", "b"], "t")
    # not_null narrows the null check to the columns named
    assert F.frame(lazy, ["a", "b"], "t", not_null=["a"]).height == 2
    assert F.frame(lazy, ["a", "b"], "t", not_null=[]).height == 2


def test_check_labels_and_check_unique():
    df = pl.DataFrame({"k": [1, 2, 2, 3], "j": ["a", "a", "b", "a"], "v": ["x", "q", "q", "z"]})
    F.check_labels(df, "v", ["x", "q", "z"], "t")
    with pytest.raises(ValueError, match="t: 3 row\\(s\\) with v outside \\['x'\\], e.g. \\['q', 'z'\\]"):
        F.check_labels(df, "v", ["x"], "t")
    F.check_unique(df, ["k", "j"], "t")
    F.check_unique(df.head(1), ["k"], "t")
    with pytest.raises(ValueError, match="t: 1 duplicated \\('k',\\) key\\(s\\), e.g. \\{'k': 2, 'len': 2\\}; once"):
        F.check_unique(df, ["k"], "t", "once")
    with pytest.raises(ValueError, match="duplicated \\('j',\\) key\\(s\\), e.g. \\{'j': 'a', 'len': 3\\}$"):
        F.check_unique(df, ["j"], "t")
    # two duplicated keys: the message counts both and shows one
    with pytest.raises(ValueError, match="^t: 2 duplicated \\('k',\\) key\\(s\\), e.g. \\{'k': [12], 'len': 2\\}$"):
        F.check_unique(pl.DataFrame({"k": [1, 2, 2, 1, 3]}), ["k"], "t")
    # the examples of bad labels are the first five in frame order
    bad = pl.DataFrame({"v": [f"b{i}" for i in range(50)] + ["x"]})
    with pytest.raises(ValueError, match="^t: 50 row\\(s\\) with v outside \\['x'\\], e.g. "
                                         "\\['b0', 'b1', 'b2', 'b3', 'b4'\\]$"):
        F.check_labels(bad, "v", ["x"], "t")


def test_index_of_and_codes():
    df = pl.DataFrame({"p": [2, 1, 2, 1, 3], "u": ["a", "b", "a", "a", "a"]})
    distinct, idx = F.index_of(df, ["p", "u"], "_i")
    # distinct keys in order of first appearance: (2,a) (1,b) (1,a) (3,a)
    assert distinct.rows() == [(0, 2, "a"), (1, 1, "b"), (2, 1, "a"), (3, 3, "a")]
    assert idx.tolist() == [0, 1, 0, 2, 3] and idx.dtype == np.int64
    assert F.codes(pl.Series(["tie", "first", "second", "tie"]), ("first", "second", "tie")).tolist() == [2, 0, 1, 2]
    assert F.codes(pl.Series([5, 3]), (3, 4, 5)).tolist() == [2, 0]
    # categorical labels: looked up in their own type
    assert F.codes(pl.Series(["tie", "first"], dtype=pl.Categorical), ("first", "second", "tie")).tolist() == [2, 0]
    enum = pl.Enum(["first", "second", "tie"])
    assert F.codes(pl.Series(["second", "tie"], dtype=enum), ("first", "second", "tie")).tolist() == [1, 2]
    v = pl.DataFrame({"prompt_id": 1, "unit": ["a", "a", "a"], "judge": ["x", "y", "z"],
                      "label": pl.Series(["tie", "tie", "first"], dtype=enum)})
    assert A.consensus(v).row(0) == (1, "a", "tie", 3, 2)
    # a frame built empty without a schema has columns of type Null: no codes, and no error
    assert F.codes(pl.Series([]), ("a", "b")).tolist() == []
    empty = pl.DataFrame({"prompt_id": [], "unit": [], "judge": [], "label": []})
    assert A.consensus(empty).height == 0 and A.judge_vs_consensus(empty).height == 0


def test_unique_mode_by_hand():
    counts = np.array([[3, 1, 0], [2, 2, 0], [0, 0, 0], [0, 1, 4], [1, 0, 0]])
    # a unique maximum → its column; a shared maximum or an empty row → −1
    assert F.unique_mode(counts).tolist() == [0, -1, -1, 2, 0]
    assert F.unique_mode(np.zeros((0, 3), dtype=int)).tolist() == []


def test_numbers_and_labels():
    assert F.as_float_array(pl.Series([1, 2]), "x").tolist() == [1.0, 2.0]
    assert F.as_float_array([[1, 2], [3, 4]], "x").tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="x: expected numbers, got dtype <U1"):
        F.as_float_array(["a"], "x")
    with pytest.raises(ValueError, match="x: 2 missing or non-finite value\\(s\\) \\(first at position 1\\)"):
        F.as_float_array([1.0, math.nan, math.inf], "x")
    assert F.binary_labels([True, False, 1, 0], "y").tolist() == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="y: labels must be 0/1 or bool, got \\[-1.0, 0.5\\]"):
        F.binary_labels([0, 0.5, -1, 1], "y")
    with pytest.raises(ValueError, match="^y: 1 missing or non-finite value"):
        F.binary_labels([0, math.nan], "y")


def test_divisions_and_ranks():
    assert F.safe_div(np.array([1.0, 2.0, 0.0]), np.array([2.0, 0.0, 0.0])).tolist()[0] == 0.5
    assert np.isnan(F.safe_div(np.array([1.0, 2.0, 0.0]), np.array([2.0, 0.0, 0.0]))[1:]).all()
    assert F.safe_div(3, 4).item() == 0.75
    # broadcast: one numerator over several denominators
    assert F.safe_div(1.0, np.array([2.0, 0.0, 4.0])).tolist()[::2] == [0.5, 0.25]
    assert F.safe_div(np.array([[1.0], [3.0]]), np.array([2.0, 4.0])).tolist() == [[0.5, 0.25], [1.5, 0.75]]
    assert F.zero_div(np.array([1.0, 2.0]), np.array([4.0, 0.0])).tolist() == [0.25, 0.0]
    assert F.zero_div(np.array([[1.0], [2.0]]), np.array([2.0, 4.0])).tolist() == [[0.5, 0.25], [1.0, 0.5]]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 40).astype(float)
    assert F.average_ranks(x).tolist() == stats.rankdata(x).tolist()
    assert F.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_checklist_agreement_counts_answers_without_a_consensus():
    # items 7 and 8 on responses 1, 2. Humans: (1, 7) YES YES; (2, 7) YES NO (split); (1, 8) NO; (2, 8) none.
    # model m: (1,7) YES ✓, (2,7) NO (no consensus), (1,8) YES ✗, (2,8) NO (no human answer: no consensus)
    # item 7: n 1, no consensus 1, accuracy 1; κ: both sides all YES → undefined
    # item 8: n 1, no consensus 1, accuracy 0; κ: po 0, pe = 0 → 0
    # pooled: n 2, no consensus 2, accuracy 1/2; model YES YES vs consensus YES NO: po 1/2, pe (2·1 + 0·1)/4 → 0
    h = pl.DataFrame({"prompt_id": 1, "response_id": [1, 1, 2, 2, 1], "item_id": [7, 7, 7, 7, 8],
                      "judge": ["a", "b", "a", "b", "a"], "label": ["YES", "YES", "YES", "NO", "NO"]})
    m = pl.DataFrame({"prompt_id": 1, "response_id": [1, 2, 1, 2], "item_id": [7, 7, 8, 8], "judge": "m",
                      "label": ["YES", "NO", "YES", "NO"]})
    got = A.checklist_agreement(h, m)
    assert got.columns == ["judge", "item_id", "n", "n_no_consensus", "accuracy", "kappa"]
    rows = got.rows()
    assert [r[:5] for r in rows] == [("m", 7, 1, 1, 1.0), ("m", 8, 1, 1, 0.0), ("m", None, 2, 2, 0.5)]
    assert math.isnan(rows[0][5]) and rows[1][5] == 0.0
    assert rows[2][5] == pytest.approx(skm.cohen_kappa_score(["YES", "NO"], ["YES", "YES"]))
    # rows in item order whatever the order of the answers
    assert [r[1] for r in A.checklist_agreement(h, m.reverse()).rows()] == [7, 8, None]
    # two model judges, sorted by name, each with its pooled row last
    m2 = pl.concat([m.with_columns(judge=pl.lit("z")), m])
    assert [(r[0], r[1]) for r in A.checklist_agreement(h, m2).rows()] == [
        ("m", 7), ("m", 8), ("m", None), ("z", 7), ("z", 8), ("z", None)]
    with pytest.raises(ValueError, match="model checklist answers: 1 row\\(s\\) with label outside"):
        A.checklist_agreement(h, m.with_columns(label=pl.Series(["YES", "NO", "yes", "NO"])))
    with pytest.raises(ValueError, match="^model checklist answers: 1 duplicated .*; one answer per judge, response and item"):
        A.checklist_agreement(h, pl.concat([m, m.head(1)]))


def test_criterion_validity_edge_cases():
    # one item, two votes split 1-1: no consensus (nan share), flagged once
    r = A.criterion_validity(pl.DataFrame({"prompt_id": 1, "item_id": [5, 5], "judge": ["a", "b"],
                                           "valid": [True, False]}))
    assert (r["n_items"], r["share_unflagged"], r["n_consensus"], r["vote_share_valid"]) == (1, 0.0, 0, 0.5)
    assert math.isnan(r["share_valid_consensus"])
    assert r["per_item"].rows() == [(1, 5, 2, 1, 0.5)]
    empty = A.criterion_validity(pl.DataFrame(schema={"prompt_id": pl.Int64, "item_id": pl.Int64,
                                                      "judge": pl.String, "valid": pl.Boolean}))
    assert empty["n_items"] == 0 and math.isnan(empty["share_unflagged"]) and math.isnan(empty["vote_share_valid"])
    with pytest.raises(ValueError, match="column 'valid' must be boolean, got String"):
        A.criterion_validity(pl.DataFrame({"prompt_id": [1], "item_id": [1], "judge": ["a"], "valid": ["valid"]}))
    with pytest.raises(ValueError, match="^criterion validity: 1 duplicated .*; one vote per judge and item$"):
        A.criterion_validity(pl.DataFrame({"prompt_id": 1, "item_id": [1, 1], "judge": ["a", "a"],
                                           "valid": [True, True]}))
