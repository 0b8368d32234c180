"""storage.analysis agreement and consensus on the shapes the report meets but the random tests rarely make:
units rated by 1, 2 or 4 judges, two judges sharing one unit, two-valued (YES/NO) labels, the MT-Bench table's
"without ties" columns. References: scikit-learn, the `krippendorff` package, a line-by-line port of FastChat's
counting (tests/test_analysis_metrics.py) and from-definition loops written here."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import krippendorff
import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from storage import analysis as A
from tests.test_analysis_metrics import as_fastchat, fastchat_agreement, random_votes


def ratings_frame(values: dict[str, list[float]]) -> pl.DataFrame:
    """{unit: [rating of judge 0, judge 1, ...]} → a ratings frame (judge j rates the unit's j-th value)."""
    return pl.DataFrame([{"prompt_id": i, "unit": u, "judge": f"h{j}", "value": v}
                         for i, (u, vs) in enumerate(values.items()) for j, v in enumerate(vs)])


def test_leave_one_out_rating_consensus_with_two_to_four_raters():
    # unit a: 2 raters (2, 6) → each sees the other's rating: 6, 2
    # unit b: 4 raters (1, 2, 3, 10) → total 16; h0 sees (16 − 1)/3 = 5, h1 14/3, h2 13/3, h3 6/3 = 2
    # unit c: 1 rater → nobody else: null, n_others 0
    r = ratings_frame({"a": [2.0, 6.0], "b": [1.0, 2.0, 3.0, 10.0], "c": [7.0]})
    loo = A.rating_consensus(r, leave_one_out=True)
    got = loo["consensus"].to_list()
    assert got[:6] == pytest.approx([6.0, 2.0, 5.0, 14 / 3, 13 / 3, 2.0]) and got[6] is None
    assert loo["n_others"].to_list() == [1, 1, 3, 3, 3, 3, 0]
    with pytest.raises(ValueError, match="^ratings: 1 duplicated .*; a judge may rate a unit once$"):
        A.rating_consensus(pl.concat([r, r.head(1)]))
    full = A.rating_consensus(r)
    assert full.select("unit", "consensus", "n_votes").rows() == [("a", 4.0, 2), ("b", 4.0, 4), ("c", 7.0, 1)]


@pytest.mark.parametrize("seed", [0, 1])
def test_leave_one_out_rating_consensus_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    values = {f"u{u}": rng.integers(1, 8, int(rng.integers(1, 6))).astype(float).tolist() for u in range(40)}
    loo = A.rating_consensus(ratings_frame(values), leave_one_out=True)
    expect = []
    for vs in values.values():
        for j in range(len(vs)):
            others = vs[:j] + vs[j + 1:]
            expect.append(sum(others) / len(others) if others else None)
    got = loo["consensus"].to_list()
    assert [g is None for g in got] == [e is None for e in expect]
    assert [g for g in got if g is not None] == pytest.approx([e for e in expect if e is not None])


def test_rating_agreement_with_unequal_numbers_of_raters():
    # unit a: h0 1, h1 3; unit b: h0 5, h1 5, h2 2; unit c: h0 4 only (no other human: left out for h0,
    # the model's consensus there is h0's 4).
    # h0 against the others: a |1 − 3| = 2, b |5 − 3.5| = 1.5 → MAE 1.75 over n = 2
    # h1: a |3 − 1| = 2, b |5 − 3.5| = 1.5 → 1.75; h2: b |2 − 5| = 3 → 3 over n = 1
    # m (a 2, b 4, c 4) against the means a 2, b 4, c 4 → MAE 0, n 3; Pearson 1
    h = pl.DataFrame({"prompt_id": 1, "unit": ["a", "a", "b", "b", "b", "c"], "judge": ["h0", "h1", "h0", "h1", "h2", "h0"],
                      "value": [1.0, 3.0, 5.0, 5.0, 2.0, 4.0]})
    m = pl.DataFrame({"prompt_id": 1, "unit": ["a", "b", "c"], "judge": "m", "value": [2, 4, 4]})
    got = {r["judge"]: r for r in A.rating_agreement(h, m).iter_rows(named=True)}
    assert (got["h0"]["n"], got["h0"]["mae"]) == (2, pytest.approx(1.75))
    assert (got["h1"]["n"], got["h1"]["mae"]) == (2, pytest.approx(1.75))
    assert (got["h2"]["n"], got["h2"]["mae"]) == (1, pytest.approx(3.0))
    assert (got["m"]["kind"], got["m"]["n"], got["m"]["mae"]) == ("model", 3, 0.0)
    assert got["m"]["pearson"] == pytest.approx(1.0) and got["h0"]["kind"] == "human"
    with pytest.raises(ValueError, match="model_ratings: 1 duplicated .* a judge may rate a unit once"):
        A.rating_agreement(h, pl.concat([m, m.head(1)]))


def test_consensus_counts_votes_and_top_votes():
    v = random_votes(3, 60, 5, p_vote=0.6)
    got = A.consensus(v)
    by: dict = {}
    for r in v.iter_rows(named=True):
        by.setdefault((r["prompt_id"], r["unit"]), []).append(r["label"])
    for r in got.iter_rows(named=True):
        labels = by[(r["prompt_id"], r["unit"])]
        assert r["n_votes"] == len(labels) and r["n_top"] == Counter(labels).most_common(1)[0][1]
    # no votes: no units
    empty = pl.DataFrame(schema={"prompt_id": pl.Int64, "unit": pl.String, "judge": pl.String, "label": pl.String})
    assert A.consensus(empty).height == 0 and A.consensus(empty, leave_one_out=True).height == 0
    # YES/NO labels: the classes given decide
    yn = pl.DataFrame({"prompt_id": 1, "unit": ["r", "r", "r"], "judge": ["a", "b", "c"], "label": ["NO", "YES", "NO"]})
    assert A.consensus(yn, ("YES", "NO")).row(0) == (1, "r", "NO", 3, 2)


@pytest.mark.parametrize("seed,n_units,n_judges", [(0, 8, 3), (1, 60, 4), (2, 300, 5)])
def test_krippendorff_alpha_on_two_valued_labels_matches_package(seed, n_units, n_judges):
    rng = np.random.default_rng(seed)
    truth = rng.random(n_units) < 0.6
    yes = np.where(rng.random((n_judges, n_units)) < 0.75, truth, ~truth)
    present = rng.random((n_judges, n_units)) < 0.7
    rows = [{"prompt_id": u // 5, "unit": f"u{u}", "judge": f"j{j}", "label": "YES" if yes[j, u] else "NO"}
            for j in range(n_judges) for u in range(n_units) if present[j, u]]
    data = np.where(present, yes.astype(float), np.nan)
    ref = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    got = A.krippendorff_alpha(pl.DataFrame(rows))
    assert got == pytest.approx(ref)
    # with the domain given and as 0/1 numbers at every level (two values: all levels agree)
    assert A.krippendorff_alpha(pl.DataFrame(rows), value_domain=["NO", "YES"]) == pytest.approx(ref)
    numeric = pl.DataFrame(rows).with_columns(value=(pl.col("label") == "YES").cast(pl.Int64))
    for level in ("nominal", "ordinal", "interval"):
        assert A.krippendorff_alpha(numeric, level, value_col="value") == pytest.approx(
            krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def test_krippendorff_alpha_two_valued_by_hand():
    # units: {Y, Y}, {Y, N}, {N, N, N}. Coincidences (each pair of values in a unit, weighted 1/(m − 1)):
    # unit 1: o_YY += 2; unit 2: o_YN += 1, o_NY += 1; unit 3: o_NN += 6/2 = 3.
    # n_Y = 3, n_N = 4, n = 7; D_o ∝ o_YN + o_NY = 2; D_e ∝ 2·n_Y·n_N/(n − 1) = 24/6 = 4 → α = 1 − 2/4 = 0.5
    v = pl.DataFrame({"prompt_id": 1, "unit": ["1", "1", "2", "2", "3", "3", "3"],
                      "judge": ["a", "b", "a", "b", "a", "b", "c"], "label": ["YES", "YES", "YES", "NO", "NO", "NO", "NO"]})
    assert A.krippendorff_alpha(v) == pytest.approx(0.5)
    assert A.krippendorff_alpha_counts([[2, 0], [1, 1], [0, 3]]) == pytest.approx(0.5)
    # a unit with one value is not pairable and changes nothing
    assert A.krippendorff_alpha_counts([[2, 0], [1, 1], [0, 3], [1, 0]]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one unit with values from two or more judges"):
        A.krippendorff_alpha_counts([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="at least two distinct values, got \\['YES'\\]"):
        A.krippendorff_alpha(v.filter(pl.col("label") == "YES"))
    with pytest.raises(ValueError, match="level must be 'nominal', 'ordinal' or 'interval', got 'ratio'"):
        A.krippendorff_alpha_counts([[2, 0], [1, 1]], level="ratio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value_domain has 3 values but the count matrix has 2 columns"):
        A.krippendorff_alpha_counts([[2, 0], [1, 1]], value_domain=[1, 2, 3])


def test_kappa_of_two_judges_sharing_one_unit():
    # x and y share only unit b (x: first, y: second): po = 0, pe = (1·0 + 0·1 + 0·0)/1 = 0 → κ = 0 (sklearn too);
    # x and z share only unit a, both first: po = 1, pe = 1 → κ undefined (nan)
    v = pl.DataFrame({"prompt_id": 1, "unit": ["a", "b", "b", "a"], "judge": ["x", "x", "y", "z"],
                      "label": ["first", "first", "second", "first"]})
    got = {(r["judge_a"], r["judge_b"]): r for r in A.pairwise_kappa(v).iter_rows(named=True)}
    assert set(got) == {("x", "y"), ("x", "z")}  # y and z share nothing
    assert (got[("x", "y")]["n"], got[("x", "y")]["agreement"]) == (1, 0.0)
    assert got[("x", "y")]["kappa"] == skm.cohen_kappa_score(["first"], ["second"]) == 0.0
    assert got[("x", "z")]["agreement"] == 1.0 and math.isnan(got[("x", "z")]["kappa"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_kappa_on_few_shared_units_matches_sklearn(seed):
    # sparse votes: many pairs share 1-3 units
    v = random_votes(seed + 40, 12, 6, p_vote=0.3)
    lab = {(r["unit"], r["judge"]): r["label"] for r in v.iter_rows(named=True)}
    for r in A.pairwise_kappa(v).iter_rows(named=True):
        shared = sorted(u for u, j in lab if j == r["judge_a"] and (u, r["judge_b"]) in lab)
        la, lb = [lab[(u, r["judge_a"])] for u in shared], [lab[(u, r["judge_b"])] for u in shared]
        assert r["n"] == len(shared) and r["agreement"] == pytest.approx(np.mean(np.array(la) == np.array(lb)))
        if len(set(la) | set(lb)) > 1:
            assert r["kappa"] == pytest.approx(skm.cohen_kappa_score(la, lb))
        else:
            assert math.isnan(r["kappa"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mtbench_table_without_ties_matches_fastchat(seed):
    h = random_votes(seed + 50, 80, 4, p_vote=0.6)
    m = random_votes(seed + 60, 80, 1, p_vote=0.9, prefix="gpt4_")
    v = pl.concat([h, m])
    humans = sorted(h["judge"].unique().to_list())
    tab = {(r["group_1"], r["group_2"]): r for r in
           A.mtbench_agreement_table(v, {"human": humans, "gpt4": ["gpt4_0"]}).iter_rows(named=True)}
    assert set(tab) == {("human", "human"), ("human", "gpt4")}  # a one-judge group has no pairs within
    data = as_fastchat(v, "gpt4_0")
    for key, fc in ((("human", "human"), ("human", "human")), (("human", "gpt4"), ("gpt4-pair", "human"))):
        s1 = fastchat_agreement(data, *fc, [])
        s2 = fastchat_agreement(data, *fc, ["tie"])
        r = tab[key]
        assert (r["s1_agree"], r["s1_n"], r["s2_agree"], r["s2_n"]) == (*s1, *s2)
        assert r["s1_rate"] == pytest.approx(s1[0] / s1[1]) and r["s2_rate"] == pytest.approx(s2[0] / s2[1])


def test_mtbench_counts_by_hand_with_several_ties_per_unit():
    # one unit, humans a b c d: first first tie tie; model m: tie
    # human vs human S1: pairs ab ✓, cd ✓ (two ties agree), ac ad bc bd ✗ → 2/6; S2 drops pairs with a tie → ab 1/1
    # m vs humans S1: tie agrees with c and d → 2/4; S2: m's vote is a tie → 0/0
    v = pl.DataFrame({"prompt_id": 1, "unit": "u", "judge": ["a", "b", "c", "d", "m"],
                      "label": ["first", "first", "tie", "tie", "tie"]})
    hh = A.mtbench_agreement(v, list("abcd"), list("abcd"))
    assert (hh["s1_agree"], hh["s1_n"], hh["s2_agree"], hh["s2_n"]) == (2, 6, 1, 1)
    mh = A.mtbench_agreement(v, "m", list("abcd"))
    assert (mh["s1_agree"], mh["s1_n"], mh["s2_agree"], mh["s2_n"]) == (2, 4, 0, 0) and math.isnan(mh["s2_rate"])
    # a custom tie label
    w = v.with_columns(label=pl.col("label").replace({"tie": "same"}))
    assert A.mtbench_agreement(w, list("abcd"), list("abcd"), tie="same")["s2_n"] == 1
    with pytest.raises(ValueError, match="a judge group must name at least one judge"):
        A.mtbench_agreement(v, [], ["a"])


def test_judge_vs_consensus_counts_only_units_humans_judged():
    # humans: unit a h1 first / h2 first (consensus first); unit b h1 first / h2 second (no consensus)
    # model: a first ✓, b tie (no consensus: counted in n_no_consensus), c tie (no human judged c: not counted)
    h = pl.DataFrame({"prompt_id": 1, "unit": ["a", "a", "b", "b"], "judge": ["h1", "h2"] * 2,
                      "label": ["first", "first", "first", "second"]})
    m = pl.DataFrame({"prompt_id": 1, "unit": ["a", "b", "c"], "judge": "m", "label": ["first", "tie", "tie"]})
    got = {r["judge"]: r for r in A.judge_vs_consensus(h, m).iter_rows(named=True)}
    assert (got["m"]["n"], got["m"]["n_no_consensus"], got["m"]["accuracy"]) == (1, 1, 1.0)
    # each human against the other: a agrees, b differs (the other's single vote is the consensus)
    assert (got["h1"]["n"], got["h1"]["n_no_consensus"], got["h1"]["accuracy"]) == (2, 0, 0.5)
    assert got["h1"]["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    # a model with no scorable unit still gets a row, with n = 0
    only_c = m.filter(pl.col("unit") == "c")
    r = A.judge_vs_consensus(h, only_c).filter(pl.col("judge") == "m").row(0, named=True)
    assert (r["n"], r["n_no_consensus"]) == (0, 0) and r["accuracy"] is None
    with pytest.raises(ValueError, match="appear among both the humans and the models"):
        A.judge_vs_consensus(h, m.with_columns(judge=pl.lit("h1")))
    with pytest.raises(ValueError, match="combine a model's two orders with combine_orders"):
        A.judge_vs_consensus(h, pl.concat([m, m.head(1)]))


def test_classification_metrics_on_yes_no_match_sklearn():
    rng = np.random.default_rng(9)
    yt = rng.choice(["YES", "NO"], 50, p=[0.7, 0.3]).tolist()
    yp = [t if rng.random() < 0.7 else rng.choice(["YES", "NO"]) for t in yt]
    m = A.classification_metrics(yt, yp, ("YES", "NO"))
    p, r, f, _ = skm.precision_recall_fscore_support(yt, yp, labels=["YES", "NO"], average="macro", zero_division=0)
    assert m["n"] == 50 and m["accuracy"] == pytest.approx(skm.accuracy_score(yt, yp))
    assert (m["precision_macro"], m["recall_macro"], m["f1_macro"]) == pytest.approx((p, r, f))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(yt, yp))
    assert m["confusion"].tolist() == skm.confusion_matrix(yt, yp, labels=["YES", "NO"]).tolist()
    # numbers, classes from the data
    a, b = [1, 2, 2, 3, 3, 3], [1, 2, 3, 3, 3, 1]
    assert A.cohen_kappa(a, b) == pytest.approx(skm.cohen_kappa_score(a, b))
    assert A.cohen_kappa(np.array(a), np.array(b)) == pytest.approx(skm.cohen_kappa_score(a, b))
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 1"):
        A.confusion_matrix(["first", "tie"], ["tie"])
    with pytest.raises(ValueError, match="a: 1 missing label"):
        A.cohen_kappa(["first", None], ["first", "tie"])
    with pytest.raises(ValueError, match="^y_pred: 1 missing label"):
        A.confusion_matrix(["first", "tie"], ["tie", None])
    with pytest.raises(ValueError, match="^y_true: 1 missing label"):
        A.confusion_matrix([None, "tie"], ["tie", "tie"])


def test_fleiss_kappa_edge_cases_by_hand():
    # every rating in one category: P̄ = 1, P_e = 1 → undefined
    assert math.isnan(A.fleiss_kappa_counts([[3, 0], [3, 0]]))
    # two items, two raters, complete disagreement: P_i = 0, p = (½, ½), P_e = ½ → κ = (0 − ½)/(1 − ½) = −1
    assert A.fleiss_kappa_counts([[1, 1], [1, 1]]) == pytest.approx(-1.0)
    assert A.fleiss_kappa_counts([[1, 1]]) == pytest.approx(-1.0)  # one item is enough
    with pytest.raises(ValueError, match="items x categories matrix with >= 1 item .* got shape \\(0, 2\\)"):
        A.fleiss_kappa_counts(np.zeros((0, 2)))
    # m = 3: item (3, 0): P = (9 − 3)/6 = 1; item (1, 2): (1 + 4 − 3)/6 = 1/3; P̄ = 2/3;
    # p = (4/6, 2/6) → P_e = 16/36 + 4/36 = 5/9; κ = (2/3 − 5/9)/(4/9) = 1/4
    assert A.fleiss_kappa_counts([[3, 0], [1, 2]]) == pytest.approx(0.25)
    v = pl.DataFrame({"prompt_id": 1, "unit": ["a"] * 3 + ["b"] * 3, "judge": ["x", "y", "z"] * 2,
                      "label": ["first", "first", "first", "first", "tie", "tie"]})
    got = A.fleiss_kappa(v, overlap=3)
    # counts over (first, second, tie): (3, 0, 0), (1, 0, 2): the same figure, an empty category changes nothing
    assert got == {"kappa": pytest.approx(0.25), "n_units": 2, "n_units_below": 0, "n_units_truncated": 0,
                   "overlap": 3}
    # nobody reached the overlap: κ nan, every unit below
    got = A.fleiss_kappa(v, overlap=4)
    assert math.isnan(got["kappa"]) and (got["n_units"], got["n_units_below"]) == (0, 2)
    for bad, msg in (([[2]], "items x categories"), ([[-1, 3], [1, 1]], "non-negative"),
                     ([[1, 0], [1, 0]], "same number \\(>= 2\\)")):
        with pytest.raises(ValueError, match=msg):
            A.fleiss_kappa_counts(bad)
    with pytest.raises(ValueError, match="overlap of at least 2 judges per unit, got 1"):
        A.fleiss_kappa(v, overlap=1)
    with pytest.raises(ValueError, match="order_col 'when' is not a column"):
        A.fleiss_kappa(v, overlap=2, order_col="when")


def test_fleiss_kappa_against_the_definition_on_random_units():
    rng = np.random.default_rng(4)
    for m in (2, 3, 5):
        counts = np.array([np.bincount(rng.integers(0, 3, m), minlength=3) for _ in range(30)])
        n_items = counts.shape[0]
        p_i = [(sum(c * c for c in row) - m) / (m * (m - 1)) for row in counts.tolist()]
        p_j = [sum(row[j] for row in counts.tolist()) / (n_items * m) for j in range(3)]
        pe = sum(x * x for x in p_j)
        assert A.fleiss_kappa_counts(counts) == pytest.approx((sum(p_i) / n_items - pe) / (1 - pe))


def test_pairwise_kappa_lists_every_pair_once_in_name_order():
    v = random_votes(7, 10, 4, p_vote=1.0)
    got = A.pairwise_kappa(v).select("judge_a", "judge_b").rows()
    assert got == list(itertools.combinations(sorted(v["judge"].unique().to_list()), 2))
