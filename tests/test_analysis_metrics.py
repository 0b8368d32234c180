"""storage.analysis against reference implementations (sklearn, scipy, krippendorff, a line-by-line port of
FastChat's compute_agreement.py) on random data with fixed seeds, plus hand-worked examples."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import krippendorff
import numpy as np
import polars as pl
import pytest
from scipy import stats
from sklearn import metrics as skm

from storage import analysis as A

CLASSES = ("first", "second", "tie")
SIZES = [(5, 3), (40, 4), (200, 7)]  # (units, judges)


# -- generators and brute-force references -------------------------------------------------------------------


def random_votes(seed: int, n_units: int, n_judges: int, p_vote: float = 0.7, classes=CLASSES,
                 prefix: str = "h") -> pl.DataFrame:
    """Votes with missing data: each judge votes on each unit with probability p_vote; skewed labels."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(classes), n_units)
    rows = []
    for u in range(n_units):
        for j in range(n_judges):
            if rng.random() < p_vote:
                lab = truth[u] if rng.random() < 0.6 else rng.integers(0, len(classes))
                rows.append({"prompt_id": u // 3, "unit": f"u{u}", "judge": f"{prefix}{j}", "label": classes[lab]})
    return pl.DataFrame(rows, schema={"prompt_id": pl.Int64, "unit": pl.String, "judge": pl.String,
                                      "label": pl.String})


def brute_mode(labels: list) -> object | None:
    if not labels:
        return None
    c = Counter(labels).most_common()
    return c[0][0] if len(c) == 1 or c[0][1] > c[1][1] else None


def fastchat_agreement(data: dict, judge1: str, judge2: str, ban: list[str]) -> tuple[int, int]:
    """FastChat llm_judge/compute_agreement.py get_mt_bench_agreement, ported line by line.
    data: {key: {judge_type: [votes]}}; judge1 'gpt4*' (one vote per key) vs 'human', or human vs human."""
    def convertvote(v):
        return "tie" if "tie" in v else v

    def equalvote(v1, v2):
        if "tie" in v1 and "tie" in v2:
            return True
        return v1 == v2

    if judge1.startswith("gpt4") and judge2 == "human":
        s = [0, 0]
        for votes in data.values():
            if judge1 not in votes or judge2 not in votes:
                continue
            assert len(votes[judge1]) == 1
            if convertvote(votes[judge1][0]) in ban:
                continue
            for v in votes[judge2]:
                if convertvote(v) in ban:
                    continue
                s[1] += 1
                s[0] += equalvote(votes[judge1][0], v)
        return s[0], s[1]
    assert judge1 == judge2 == "human"
    s = [0, 0]
    for votes in data.values():
        if "human" not in votes:
            continue
        hv = votes["human"]
        for i in range(len(hv) - 1):
            for j in range(i + 1, len(hv)):
                if convertvote(hv[i]) in ban or convertvote(hv[j]) in ban:
                    continue
                s[1] += 1
                s[0] += equalvote(hv[i], hv[j])
    return s[0], s[1]


def as_fastchat(votes: pl.DataFrame, model: str) -> dict:
    data: dict = {}
    for r in votes.iter_rows(named=True):
        kind = "gpt4-pair" if r["judge"] == model else "human"
        data.setdefault((r["prompt_id"], r["unit"]), {}).setdefault(kind, []).append(r["label"])
    return data


# -- pairwise units ------------------------------------------------------------------------------------------


def test_pair_unit_and_vectorised_conversion_agree():
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(300):
        a, b = rng.choice(50, 2, replace=False).tolist()
        w = rng.choice([str(a), str(b), "tie", "both_bad"])
        rows.append({"prompt_id": 1, "judge": "x", "response_id": a, "response_b_id": b, "label": w})
    out = A.pairwise_votes(pl.DataFrame(rows))
    for r, o in zip(rows, out.iter_rows(named=True)):
        (lo, hi), cls = A.pair_unit(r["response_id"], r["response_b_id"], r["label"])
        assert (o["response_lo"], o["response_hi"], o["label"], o["unit"]) == (lo, hi, cls, f"{lo}-{hi}")
        assert o["shown"] == ("ab" if r["response_id"] == lo else "ba")
    # 10 vs 9: numeric order, not text order
    assert A.pair_unit(10, 9, 10) == ((9, 10), "second")
    with pytest.raises(ValueError, match="winner 7 is neither"):
        A.pair_unit(4, 9, 7)
    with pytest.raises(ValueError, match="label 'x' on \\(1, 2\\)"):
        A.pairwise_votes(pl.DataFrame({"prompt_id": [1], "judge": ["j"], "response_id": [1], "response_b_id": [2],
                                       "label": ["x"]}))


def test_combine_orders_hand_example():
    # unit 1-2: both orders say first → first; 3-4: first vs second → tie (inconsistent); 5-6: tie/tie → tie,
    # consistent; 7-8 judged once (ba: second) → second
    o = pl.DataFrame({"prompt_id": 1, "unit": ["1-2", "1-2", "3-4", "3-4", "5-6", "5-6", "7-8"], "judge": "m",
                      "shown": ["ab", "ba", "ab", "ba", "ab", "ba", "ba"],
                      "label": ["first", "first", "first", "second", "tie", "tie", "second"]})
    c = A.combine_orders(o)
    assert c.select("unit", "label", "n_orders", "consistent").rows() == [
        ("1-2", "first", 2, True), ("3-4", "tie", 2, False), ("5-6", "tie", 2, True), ("7-8", "second", 1, None)]
    with pytest.raises(ValueError, match="duplicated"):
        A.combine_orders(pl.concat([o, o.head(1)]))


def test_order_swap_hand_example_and_random():
    # m: unit 1-2 ab=first (lower id shown first → picks shown-first), ba=second (higher id shown first →
    # picks shown-first); unit 3-4 ab=second, ba=first (both pick the shown-second); unit 5-6 ab=first, ba=first
    # (consistent, position-neutral); unit 7-8 ab=tie, ba=second (shown-first).
    o = pl.DataFrame({"prompt_id": 1, "unit": ["1-2", "1-2", "3-4", "3-4", "5-6", "5-6", "7-8", "7-8"],
                      "judge": "m", "shown": ["ab", "ba"] * 4,
                      "label": ["first", "second", "second", "first", "first", "first", "tie", "second"]})
    h = pl.DataFrame({"prompt_id": 1, "unit": ["1-2", "3-4", "5-6", "7-8"], "judge": "h",
                      "label": ["first", "second", "first", "tie"]})
    r = A.order_swap(o, h).row(0, named=True)
    assert r["n_units"] == 4
    assert r["consistency"] == 0.25  # only 5-6
    # non-tie order votes: 7 (all but 7-8/ab); shown-first picks: 1-2 ab, 1-2 ba, 5-6 ab, 7-8 ba = 4
    assert r["n_decisive"] == 7 and r["first_position_rate"] == pytest.approx(4 / 7)
    assert r["tie_rate"] == 1 / 8
    assert r["both_first_rate"] == 0.25 and r["both_second_rate"] == 0.25
    # ab labels vs consensus (first, second, first, tie): first✓ second✓ first✓ tie✓ → 1.0;
    # ba: second✗ first✗ first✓ second✗ → 0.25; combined: tie✗ tie✗ first✓ tie✓ → 0.5
    assert (r["acc_ab"], r["acc_ba"], r["acc_order_mean"], r["acc_combined"]) == (1.0, 0.25, 0.625, 0.5)

    # random: against a brute-force count
    rng = np.random.default_rng(7)
    rows = [{"prompt_id": u, "unit": f"u{u}", "judge": "m", "shown": s, "label": CLASSES[rng.integers(0, 3)]}
            for u in range(300) for s in ("ab", "ba") if not (s == "ba" and u % 10 == 0)]
    o = pl.DataFrame(rows)
    h = random_votes(8, 300, 3)
    h = h.with_columns(prompt_id=pl.col("unit").str.slice(1).cast(pl.Int64))
    r = A.order_swap(o, h).row(0, named=True)
    by = {}
    for x in rows:
        by.setdefault(x["unit"], {})[x["shown"]] = x["label"]
    both = {u: v for u, v in by.items() if len(v) == 2}
    cons = {}
    for x in h.iter_rows(named=True):
        cons.setdefault(x["unit"], []).append(x["label"])
    cons = {u: brute_mode(v) for u, v in cons.items()}
    firsts = sum((v["ab"] == "first") + (v["ba"] == "second") for v in both.values())
    decisive = sum((v["ab"] != "tie") + (v["ba"] != "tie") for v in both.values())
    scored = [u for u in both if cons.get(u) is not None]
    comb = {u: (v["ab"] if v["ab"] == v["ba"] else "tie") for u, v in both.items()}
    assert r["n_units"] == len(both) == 270
    assert r["consistency"] == pytest.approx(np.mean([v["ab"] == v["ba"] for v in both.values()]))
    assert r["first_position_rate"] == pytest.approx(firsts / decisive)
    assert r["n_scored"] == len(scored)
    assert r["acc_ab"] == pytest.approx(np.mean([both[u]["ab"] == cons[u] for u in scored]))
    assert r["acc_ba"] == pytest.approx(np.mean([both[u]["ba"] == cons[u] for u in scored]))
    assert r["acc_combined"] == pytest.approx(np.mean([comb[u] == cons[u] for u in scored]))


def test_order_variants_feed_per_order_figures():
    o = pl.DataFrame({"prompt_id": 1, "unit": ["1-2", "1-2", "3-4", "3-4"], "judge": "m",
                      "shown": ["ab", "ba"] * 2, "label": ["first", "second", "tie", "tie"]})
    h = pl.DataFrame({"prompt_id": 1, "unit": ["1-2", "3-4"], "judge": "h", "label": ["first", "tie"]})
    r = {row["judge"]: row for row in A.judge_vs_consensus(h, A.order_variants(o)).iter_rows(named=True)}
    # combined: tie, tie → 1/2; ab: first, tie → 2/2; ba: second, tie → 1/2
    assert (r["m"]["accuracy"], r["m#ab"]["accuracy"], r["m#ba"]["accuracy"]) == (0.5, 1.0, 0.5)


# -- consensus and judge-vs-consensus ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed,size", list(enumerate(SIZES)))
def test_consensus_matches_brute_force(seed, size):
    v = random_votes(seed, *size)
    got = {(r["prompt_id"], r["unit"]): r["consensus"] for r in A.consensus(v).iter_rows(named=True)}
    by: dict = {}
    for r in v.iter_rows(named=True):
        by.setdefault((r["prompt_id"], r["unit"]), []).append((r["judge"], r["label"]))
    assert got == {k: brute_mode([lab for _, lab in xs]) for k, xs in by.items()}
    loo = A.consensus(v, leave_one_out=True)
    for r in loo.iter_rows(named=True):
        others = [lab for j, lab in by[(r["prompt_id"], r["unit"])] if j != r["judge"]]
        assert r["consensus"] == brute_mode(others) and r["n_others"] == len(others)


@pytest.mark.parametrize("seed,size", list(enumerate(SIZES)))
def test_judge_vs_consensus_matches_sklearn(seed, size):
    h = random_votes(seed, *size)
    m = pl.concat([random_votes(100 + seed, size[0], 2, p_vote=0.9, prefix="model")])
    rep = {r["judge"]: r for r in A.judge_vs_consensus(h, m).iter_rows(named=True)}
    by: dict = {}
    for r in h.iter_rows(named=True):
        by.setdefault((r["prompt_id"], r["unit"]), {})[r["judge"]] = r["label"]
    for judge_votes, kind in ((h, "human"), (m, "model")):
        for j in judge_votes["judge"].unique().to_list():
            yt, yp, missing = [], [], 0
            for r in judge_votes.filter(pl.col("judge") == j).iter_rows(named=True):
                humans = by.get((r["prompt_id"], r["unit"]), {})
                cons = brute_mode([lab for hj, lab in humans.items() if not (kind == "human" and hj == j)])
                if cons is None:
                    missing += 1
                    continue
                yt.append(cons)
                yp.append(r["label"])
            got = rep[j]
            assert got["kind"] == kind and got["n"] == len(yt) and got["n_no_consensus"] == missing
            if not yt:
                continue
            p, rc, f, _ = skm.precision_recall_fscore_support(yt, yp, labels=list(CLASSES), average="macro",
                                                              zero_division=0)
            assert got["accuracy"] == pytest.approx(skm.accuracy_score(yt, yp))
            assert (got["precision_macro"], got["recall_macro"], got["f1_macro"]) == pytest.approx((p, rc, f))
            assert np.array_equal(np.array(got["confusion"]), skm.confusion_matrix(yt, yp, labels=list(CLASSES)))
            ref_k = skm.cohen_kappa_score(yt, yp, labels=list(CLASSES)) if len(set(yt) | set(yp)) > 1 else math.nan
            assert got["kappa"] == pytest.approx(ref_k, nan_ok=True)


def test_classification_metrics_hand_example():
    # truth:  first first second tie   pred: first second second tie
    # confusion rows=truth [first, second, tie]: [[1,1,0],[0,1,0],[0,0,1]]
    # precision: first 1/1, second 1/2, tie 1/1 → 5/6; recall: 1/2, 1, 1 → 5/6
    # F1: first 2/3, second 2/3, tie 1 → 7/9; κ: po 3/4, pe (2*1 + 1*2 + 1*1)/16 = 5/16 → (7/16)/(11/16) = 7/11
    m = A.classification_metrics(["first", "first", "second", "tie"], ["first", "second", "second", "tie"])
    assert m["confusion"].tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert (m["precision_macro"], m["recall_macro"], m["f1_macro"]) == pytest.approx((5 / 6, 5 / 6, 7 / 9))
    assert m["kappa"] == pytest.approx(7 / 11)
    # a class absent on both sides counts 0 in the macro average (sklearn with labels=...)
    m = A.classification_metrics(["first", "second"], ["first", "second"])
    assert m["precision_macro"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="y_pred: 1 row\\(s\\) with v outside"):
        A.classification_metrics(["first"], ["A"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cohen_kappa_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    for n in (5, 50, 500):
        a = rng.choice(CLASSES, n, p=[0.5, 0.3, 0.2])
        b = np.where(rng.random(n) < 0.6, a, rng.choice(CLASSES, n))
        assert A.cohen_kappa(a, b, CLASSES) == pytest.approx(skm.cohen_kappa_score(a, b))
    assert math.isnan(A.cohen_kappa(["tie", "tie"], ["tie", "tie"]))


@pytest.mark.parametrize("seed,size", list(enumerate(SIZES)))
def test_pairwise_kappa_matches_sklearn(seed, size):
    v = random_votes(seed + 10, *size, p_vote=0.6)
    got = {(r["judge_a"], r["judge_b"]): r for r in A.pairwise_kappa(v).iter_rows(named=True)}
    lab = {(r["prompt_id"], r["unit"], r["judge"]): r["label"] for r in v.iter_rows(named=True)}
    judges = sorted(v["judge"].unique().to_list())
    units = v.select("prompt_id", "unit").unique().rows()
    for a, b in itertools.combinations(judges, 2):
        shared = [(p, u) for p, u in units if (p, u, a) in lab and (p, u, b) in lab]
        if not shared:
            assert (a, b) not in got
            continue
        la, lb = [lab[(*k, a)] for k in shared], [lab[(*k, b)] for k in shared]
        assert got[(a, b)]["n"] == len(shared)
        assert got[(a, b)]["agreement"] == pytest.approx(np.mean(np.array(la) == np.array(lb)))
        ref = skm.cohen_kappa_score(la, lb) if len(set(la) | set(lb)) > 1 else math.nan
        assert got[(a, b)]["kappa"] == pytest.approx(ref, nan_ok=True)


def test_vote_frame_errors_name_the_problem():
    v = pl.DataFrame({"prompt_id": [1, 1], "unit": ["a", "a"], "judge": ["x", "x"], "label": ["first", "tie"]})
    with pytest.raises(ValueError, match="duplicated .*'judge'.* a judge may vote once per unit"):
        A.consensus(v)
    with pytest.raises(ValueError, match="missing column\\(s\\) \\['label'\\]"):
        A.consensus(v.drop("label"))
    with pytest.raises(ValueError, match="label outside \\['first', 'second', 'tie'\\], e.g. \\['A'\\]"):
        A.consensus(v.with_columns(label=pl.lit("A"), judge=pl.Series(["x", "y"])))
    with pytest.raises(ValueError, match="'unit' has 1 null"):
        A.consensus(pl.DataFrame({"prompt_id": [1], "unit": [None], "judge": ["x"], "label": ["tie"]},
                                 schema_overrides={"unit": pl.String}))


# -- MT-Bench agreement ----------------------------------------------------------------------------------------


def test_mtbench_agreement_hand_counted():
    # Two humans h1, h2 and one model m on three units (question, model pair):
    #   u1: h1 first, h2 first,  m first
    #   u2: h1 first, h2 tie,    m second
    #   u3: h1 tie,   h2 tie,    m tie
    # model vs human S1: u1 2/2, u2 0/2, u3 2/2 (tie = tie agrees)  → 4/6
    # model vs human S2: drop pairs with a tie: u1 (m,h1)(m,h2) 2/2; u2 (m,h1) 0/1; u3 none → 2/3
    # human vs human S1: one pair per unit: u1 agree, u2 differ, u3 agree (tie-tie) → 2/3
    # human vs human S2: u1 only → 1/1
    v = pl.DataFrame({"prompt_id": [1, 1, 1, 1, 1, 1, 2, 2, 2], "unit": ["u1"] * 3 + ["u2"] * 3 + ["u3"] * 3,
                      "judge": ["h1", "h2", "m"] * 3,
                      "label": ["first", "first", "first", "first", "tie", "second", "tie", "tie", "tie"]})
    mh = A.mtbench_agreement(v, "m", ["h1", "h2"])
    assert mh == {"s1_agree": 4, "s1_n": 6, "s1_rate": 4 / 6, "s2_agree": 2, "s2_n": 3, "s2_rate": 2 / 3}
    hh = A.mtbench_agreement(v, ["h1", "h2"], ["h2", "h1"])
    assert hh == {"s1_agree": 2, "s1_n": 3, "s1_rate": 2 / 3, "s2_agree": 1, "s2_n": 1, "s2_rate": 1.0}
    # the same counts through FastChat's own loop
    data = as_fastchat(v, "m")
    assert fastchat_agreement(data, "gpt4-pair", "human", []) == (4, 6)
    assert fastchat_agreement(data, "gpt4-pair", "human", ["tie"]) == (2, 3)
    assert fastchat_agreement(data, "human", "human", []) == (2, 3)
    assert fastchat_agreement(data, "human", "human", ["tie"]) == (1, 1)
    # per prompt: prompt 1 holds u1 + u2, prompt 2 holds u3
    pp = A.mtbench_agreement(v, "m", ["h1", "h2"], by_prompt=True)
    assert pp.rows() == [(1, 2, 4, 2, 3), (2, 2, 2, 0, 0)]
    tab = A.mtbench_agreement_table(v, {"human": ["h1", "h2"], "model": ["m"]})
    assert tab.select("group_1", "group_2", "s1_agree", "s1_n").rows() == [("human", "human", 2, 3),
                                                                          ("human", "model", 4, 6)]
    with pytest.raises(ValueError, match="overlap in \\['h1'\\]"):
        A.mtbench_agreement(v, ["h1", "m"], ["h1", "h2"])
    with pytest.raises(ValueError, match="judge\\(s\\) \\['nobody'\\] have no votes"):
        A.mtbench_agreement(v, "nobody", ["h1"])


@pytest.mark.parametrize("seed,size", list(enumerate(SIZES)))
def test_mtbench_agreement_matches_fastchat(seed, size):
    h = random_votes(seed + 20, *size, p_vote=0.5)
    m = random_votes(seed + 30, size[0], 1, p_vote=0.9, prefix="gpt4_")
    v = pl.concat([h, m])
    data = as_fastchat(v, "gpt4_0")
    humans = h["judge"].unique().to_list()
    got = A.mtbench_agreement(v, "gpt4_0", humans)
    assert (got["s1_agree"], got["s1_n"]) == fastchat_agreement(data, "gpt4-pair", "human", [])
    assert (got["s2_agree"], got["s2_n"]) == fastchat_agreement(data, "gpt4-pair", "human", ["tie"])
    got = A.mtbench_agreement(v, humans, humans)
    assert (got["s1_agree"], got["s1_n"]) == fastchat_agreement(data, "human", "human", [])
    assert (got["s2_agree"], got["s2_n"]) == fastchat_agreement(data, "human", "human", ["tie"])
    pp = A.mtbench_agreement(v, humans, humans, by_prompt=True)
    assert int(pp["s1_agree"].sum()) == got["s1_agree"] and int(pp["s2_n"].sum()) == got["s2_n"]


def test_mtbench_group_vs_group_counts_only_distinct_individuals():
    # two disjoint groups: every cross pair counts (2 x 2 = 4 comparisons on one unit)
    v = pl.DataFrame({"prompt_id": 1, "unit": "u", "judge": ["a", "b", "c", "d"],
                      "label": ["first", "second", "first", "first"]})
    assert A.mtbench_agreement(v, ["a", "b"], ["c", "d"])["s1_agree"] == 2
    assert A.mtbench_agreement(v, ["a", "b"], ["c", "d"])["s1_n"] == 4
    # one group against itself: unordered pairs of different judges: C(4, 2) = 6, agreeing: a-c, a-d, c-d
    r = A.mtbench_agreement(v, list("abcd"), list("dcba"))
    assert (r["s1_agree"], r["s1_n"]) == (3, 6)


# -- Fleiss and Krippendorff -----------------------------------------------------------------------------------

WIKI_FLEISS = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
               [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_kappa_wikipedia_worked_example():
    # Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, 5 categories.
    # p_j = (0.143, 0.200, 0.279, 0.150, 0.229); P_e = Σ p_j² = 0.213;
    # P̄ = 0.378 (e.g. P_1 = (14² - 14)/(14·13) = 1, P_2 = (0+4+36+16+4-14)/182 = 0.253);
    # κ = (0.378 - 0.213)/(1 - 0.213) = 0.210
    assert A.fleiss_kappa_counts(WIKI_FLEISS) == pytest.approx(0.210, abs=5e-4)
    # the same data as votes: subject i, rater r
    rows = [{"prompt_id": i, "unit": "s", "judge": f"r{r}", "label": c}
            for i, counts in enumerate(WIKI_FLEISS) for c, k in enumerate(counts) for r in range(sum(counts[:c]),
                                                                                                sum(counts[:c]) + k)]
    got = A.fleiss_kappa(pl.DataFrame(rows), overlap=14, classes=range(5))
    assert got["kappa"] == pytest.approx(A.fleiss_kappa_counts(WIKI_FLEISS)) and got["n_units"] == 10


@pytest.mark.parametrize("seed,n_items,m", [(0, 8, 2), (1, 50, 3), (2, 300, 5)])
def test_fleiss_kappa_against_krippendorff(seed, n_items, m):
    # With complete data (m ratings per item, n = N·m pairable values), Krippendorff's nominal α and Fleiss' κ
    # obey 1 - α = (1 - κ)·(n - 1)/n (α's coincidence expected disagreement uses n - 1). Check that identity.
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_items)
    lab = np.where(rng.random((m, n_items)) < 0.6, truth, rng.integers(0, 3, (m, n_items)))
    rows = [{"prompt_id": i, "unit": "x", "judge": f"r{r}", "label": CLASSES[lab[r, i]]}
            for r in range(m) for i in range(n_items)]
    k = A.fleiss_kappa(pl.DataFrame(rows), overlap=m)["kappa"]
    alpha = krippendorff.alpha(reliability_data=lab.astype(float), level_of_measurement="nominal")
    n = n_items * m
    assert 1 - alpha == pytest.approx((1 - k) * (n - 1) / n)


def test_fleiss_kappa_overlap_selection():
    # unit a: 3 votes (first, first, tie) → first two kept; unit b: 2 votes; unit c: 1 vote → below overlap
    v = pl.DataFrame({"prompt_id": 1, "unit": ["a", "a", "a", "b", "b", "c"], "judge": ["x", "y", "z", "x", "y", "x"],
                      "label": ["first", "first", "tie", "second", "tie", "tie"], "t": [1, 2, 3, 1, 2, 1]})
    got = A.fleiss_kappa(v, overlap=2, order_col="t")
    assert (got["n_units"], got["n_units_below"], got["n_units_truncated"]) == (2, 1, 1)
    assert got["kappa"] == pytest.approx(A.fleiss_kappa_counts([[2, 0, 0], [0, 1, 1]]))
    # order_col decides which votes are kept: z's tie first
    got = A.fleiss_kappa(v.with_columns(t=pl.Series([3, 2, 1, 1, 2, 1])), overlap=2, order_col="t")
    assert got["kappa"] == pytest.approx(A.fleiss_kappa_counts([[1, 0, 1], [0, 1, 1]]))
    with pytest.raises(ValueError, match="same number"):
        A.fleiss_kappa_counts([[2, 0], [1, 2]])


@pytest.mark.parametrize("seed,n_units,n_judges", [(0, 6, 3), (1, 40, 4), (2, 250, 6)])
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_matches_package(seed, n_units, n_judges, level):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 8, n_units)
    data = np.clip(truth + rng.integers(-2, 3, (n_judges, n_units)), 1, 7).astype(float)
    data[rng.random(data.shape) < 0.35] = np.nan  # missing data
    rows = [{"prompt_id": u // 4, "unit": f"u{u}", "judge": f"j{j}", "value": data[j, u]}
            for j in range(n_judges) for u in range(n_units) if not np.isnan(data[j, u])]
    got = A.krippendorff_alpha(pl.DataFrame(rows), level, value_col="value")
    assert got == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def test_krippendorff_alpha_hand_and_text_labels():
    # Krippendorff (2011) example, 4 coders × 12 units with missing values: α nominal 0.743, ordinal 0.815
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
            [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    rows = [{"prompt_id": 0, "unit": u, "judge": j, "value": x} for j, r in enumerate(data) for u, x in enumerate(r)
            if x is not None]
    v = pl.DataFrame(rows)
    assert A.krippendorff_alpha(v, "nominal", value_col="value") == pytest.approx(0.743, abs=5e-4)
    assert A.krippendorff_alpha(v, "ordinal", value_col="value") == pytest.approx(0.815, abs=5e-4)
    # pairwise labels, ordinal with an explicit order
    names = {1: "first", 2: "tie", 3: "second", 4: "second", 5: "second"}
    t = v.with_columns(label=pl.col("value").replace_strict(names))
    ref = krippendorff.alpha(reliability_data=[[{"first": 0, "tie": 1, "second": 2}[names[x]] if x else np.nan
                                                for x in r] for r in data], level_of_measurement="ordinal")
    assert A.krippendorff_alpha(t, "ordinal", value_domain=["first", "tie", "second"]) == pytest.approx(ref)
    with pytest.raises(ValueError, match="ordered value_domain"):
        A.krippendorff_alpha(t, "ordinal")


def test_rating_agreement_matches_scipy():
    rng = np.random.default_rng(3)
    rows = [{"prompt_id": u // 4, "unit": f"u{u}", "judge": f"h{j}", "value": float(rng.integers(1, 8))}
            for u in range(60) for j in range(3)]
    h = pl.DataFrame(rows)
    m = pl.DataFrame({"prompt_id": [u // 4 for u in range(60)], "unit": [f"u{u}" for u in range(60)], "judge": "m",
                      "value": rng.random(60) * 7})
    got = {r["judge"]: r for r in A.rating_agreement(h, m).iter_rows(named=True)}
    hv = h.pivot(on="judge", index="unit", values="value").sort("unit")
    mv = m.sort("unit")["value"].to_numpy()
    mean = hv.select(pl.mean_horizontal("h0", "h1", "h2")).to_series().to_numpy()
    assert got["m"]["mae"] == pytest.approx(np.mean(np.abs(mv - mean)))
    assert got["m"]["pearson"] == pytest.approx(stats.pearsonr(mv, mean)[0])
    assert got["m"]["spearman"] == pytest.approx(stats.spearmanr(mv, mean)[0])
    loo = hv.select(pl.mean_horizontal("h1", "h2")).to_series().to_numpy()
    assert got["h0"]["spearman"] == pytest.approx(stats.spearmanr(hv["h0"].to_numpy(), loo)[0])


# -- scores vs humans ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,n_prompts", [(0, 5), (1, 60), (2, 400)])
def test_rank_correlations_match_scipy(seed, n_prompts):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        n = int(rng.integers(1, 9))
        human = rng.integers(1, 4, n).astype(float)  # ties and constant prompts happen
        score = np.round(human + rng.normal(0, 1, n), 1) if p % 7 else np.full(n, 0.5)
        rows += [{"prompt_id": p, "score": s, "human": h} for s, h in zip(score, human)]
    df = pl.DataFrame(rows)
    got = A.rank_correlations(df)
    rho, tau, skipped = [], [], 0
    for _, g in df.group_by("prompt_id"):
        x, y = g["score"].to_numpy(), g["human"].to_numpy()
        if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            skipped += 1
            continue
        rho.append(stats.spearmanr(x, y)[0])
        tau.append(stats.kendalltau(x, y, variant="b")[0])
    assert got["n_prompts"] == len(rho) and got["n_prompts_skipped"] == skipped
    assert got["spearman_mean"] == pytest.approx(np.mean(rho))
    assert got["kendall_mean"] == pytest.approx(np.mean(tau))
    x, y = df["score"].to_numpy(), df["human"].to_numpy()
    assert got["spearman_pooled"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert got["kendall_pooled"] == pytest.approx(stats.kendalltau(x, y, variant="b")[0])


@pytest.mark.parametrize("n", [2, 10, 300, 3000])
def test_kendall_tau_b_both_methods_match_scipy(n):
    rng = np.random.default_rng(n)
    x = rng.integers(0, 6, n).astype(float)
    y = x + rng.normal(0, 2, n)
    y[: n // 3] = np.round(y[: n // 3])
    ref = stats.kendalltau(x, y, variant="b")[0]
    assert A.kendall_tau_b(x, y, method="table") == pytest.approx(ref)
    assert A.kendall_tau_b(x, y, method="blocks") == pytest.approx(ref)
    assert A.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert math.isnan(A.kendall_tau_b([1, 1, 1], [1, 2, 3])) and math.isnan(A.spearman([1, 1], [1, 2]))


def test_rank_correlation_hand_example():
    # prompt 1: x = (0.1, 0.5, 0.9), y = (1, 3, 2): ρ = 1 - 6·Σd²/(n(n²-1)) = 1 - 6·2/24 = 0.5;
    # pairs: (1,2) concordant, (1,3) concordant, (2,3) discordant → τ = (2 - 1)/3
    # prompt 2: y constant → skipped
    df = pl.DataFrame({"prompt_id": [1, 1, 1, 2, 2], "score": [0.1, 0.5, 0.9, 0.3, 0.4], "human": [1, 3, 2, 5, 5]})
    r = A.rank_correlations(df)
    assert (r["spearman_mean"], r["kendall_mean"], r["n_prompts"], r["n_prompts_skipped"]) == pytest.approx(
        (0.5, 1 / 3, 1, 1))


@pytest.mark.parametrize("seed,n_prompts", [(0, 4), (1, 80), (2, 500)])
def test_best_of_n_matches_brute_force(seed, n_prompts):
    rng = np.random.default_rng(seed)
    cand, hp, sp = [], [], []
    for p in range(n_prompts):
        n = int(rng.integers(2, 9))
        ids = [p * 10 + i for i in range(n)]
        cand += [{"prompt_id": p, "response_id": r} for r in ids]
        for j in range(int(rng.integers(1, 5))):
            hp.append({"prompt_id": p, "judge": f"h{j}", "response_id": int(rng.choice(ids[:3]))})
        for s in ("select_majority", "select_usc"):
            if rng.random() < 0.9:
                sp.append({"prompt_id": p, "selector": s, "response_id": int(rng.choice(ids[:3]))})
    got = {r["selector"]: r for r in A.best_of_n_accuracy(hp, sp, cand).iter_rows(named=True)}
    picks: dict = {}
    for r in hp:
        picks.setdefault(r["prompt_id"], []).append(r["response_id"])
    cons = {p: brute_mode(v) for p, v in picks.items()}
    n_cand = Counter(r["prompt_id"] for r in cand)
    for s in ("select_majority", "select_usc"):
        mine = {r["prompt_id"]: r["response_id"] for r in sp if r["selector"] == s}
        hits_c = [mine[p] == cons[p] for p in mine if cons[p] is not None]
        hits_h = [np.mean([mine[p] == h for h in picks[p]]) for p in mine]
        assert got[s]["n_consensus"] == len(hits_c) and got[s]["acc_consensus"] == pytest.approx(np.mean(hits_c))
        assert got[s]["n_prompts"] == len(hits_h) and got[s]["acc_human_mean"] == pytest.approx(np.mean(hits_h))
    assert got["select_majority"]["kind"] == "majority" and got["random"]["kind"] == "random"
    with_cons = [p for p in cons if cons[p] is not None]
    assert got["random"]["acc_consensus"] == pytest.approx(np.mean([1 / n_cand[p] for p in with_cons]))
    assert got["random"]["acc_human_mean"] == pytest.approx(np.mean([1 / n_cand[p] for p in picks]))


def test_best_of_n_hand_example():
    # prompt 1 (4 candidates): humans pick 10, 10, 11 → consensus 10; prompt 2 (2 candidates): 20, 21 → no
    # unique mode. select_usc picks 10 and 21: vs consensus 1/1; vs each human: prompt 1 2/3, prompt 2 1/2 →
    # (2/3 + 1/2)/2 = 7/12. select_majority picks 11 on prompt 1 only: 0/1 and 1/3.
    # random: 1/4 on the consensus prompt; (1/4 + 1/2)/2 = 3/8 over the prompts with human picks
    h = pl.DataFrame({"prompt_id": [1, 1, 1, 2, 2], "judge": ["a", "b", "c", "a", "b"],
                      "response_id": [10, 10, 11, 20, 21]})
    s = pl.DataFrame({"prompt_id": [1, 2, 1], "selector": ["select_usc", "select_usc", "select_majority"],
                      "response_id": [10, 21, 11]})
    c = pl.DataFrame({"prompt_id": [1] * 4 + [2] * 2, "response_id": [10, 11, 12, 13, 20, 21]})
    got = A.best_of_n_accuracy(h, s, c).rows()
    assert [r[:4] for r in got] == [("select_usc", "selector", 1, 1), ("select_majority", "majority", 1, 0),
                                    ("random", "random", 1, 1)]
    assert [x for r in got for x in r[4:]] == pytest.approx([1.0, 2, 7 / 12, 0.0, 1, 1 / 3, 0.25, 2, 3 / 8])


def test_checklist_agreement_hand_example():
    # item 7 on responses 1-3: consensus YES, NO, (split → none); model YES, YES, NO
    # scored: (YES, YES) ✓, (NO, YES) ✗ → accuracy 1/2; κ: po 1/2, model YES 2, humans YES 1 / NO 1 →
    # pe = (2·1 + 0·1)/4 = 1/2 → κ = 0
    h = pl.DataFrame({"prompt_id": 1, "response_id": [1, 1, 2, 2, 3, 3], "item_id": 7, "judge": ["a", "b"] * 3,
                      "label": ["YES", "YES", "NO", "NO", "YES", "NO"]})
    m = pl.DataFrame({"prompt_id": 1, "response_id": [1, 2, 3], "item_id": 7, "judge": "m",
                      "label": ["YES", "YES", "NO"]})
    assert A.checklist_agreement(h, m).rows() == [("m", 7, 2, 1, 0.5, 0.0), ("m", None, 2, 1, 0.5, 0.0)]


def test_best_of_n_rejects_picks_outside_the_candidates():
    with pytest.raises(ValueError, match="selector_picks: 1 pick\\(s\\) of a response that is not among"):
        A.best_of_n_accuracy({"prompt_id": [1], "judge": ["a"], "response_id": [1]},
                             {"prompt_id": [1], "selector": ["s"], "response_id": [9]},
                             {"prompt_id": [1, 1], "response_id": [1, 2]})


# -- calibration ---------------------------------------------------------------------------------------------


def ece_reference(p: np.ndarray, y: np.ndarray, bins: int) -> tuple[float, list]:
    """The binning rule written out from its definition, apart from the code under test: position k of the
    sorted probabilities belongs to equal-count bin j when it falls in the j-th chunk of numpy.array_split;
    every distinct probability value joins the bin of its lowest position; ECE = mean |acc - conf| over the
    bins that received anything."""
    chunk_of = {}
    for j, positions in enumerate(np.array_split(np.arange(len(p)), bins)):
        for k in positions:
            chunk_of[int(k)] = j
    members: dict[int, list[tuple[float, int]]] = {}
    seen = 0
    for value in sorted(set(float(v) for v in p)):
        pairs = [(float(v), int(t)) for v, t in zip(p, y) if float(v) == value]
        members.setdefault(chunk_of[seen], []).extend(pairs)
        seen += len(pairs)
    parts = [(sum(v for v, _ in m) / len(m), sum(t for _, t in m) / len(m), len(m))
             for _, m in sorted(members.items())]
    return float(np.mean([abs(a - c) for c, a, _ in parts])), parts


def test_ece_does_not_split_tied_probabilities_by_label():
    """Finding 1 of the statistics issue: a calibrated judge saying 0.5 on 100 responses, half correct, has
    ECE 0 (sorting ties by label put every negative in the lower bins: ECE 0.5)."""
    p, y = np.full(100, 0.5), np.array([0, 1] * 50)
    assert A.ece(p, y) == 0.0 and A.rms_calibration_error(p, y) == 0.0
    bins = A.reliability_bins(p, y)
    assert bins.rows() == [(0, 100, 0.5, 0.5, 0.5, 0.5)]
    rep = A.calibration_report(pl.DataFrame({"prob": p, "label": y}))
    assert rep["ece"] == 0.0 and rep["n_bins_used"] == 1
    # critique-like scores (0, 0.5, 1), each run calibrated: 30 at 0 (all wrong), 40 at 0.5 (half right),
    # 30 at 1 (all right). Runs start at positions 0, 30, 70: bins 0, 3, 7; ECE 0 over the 3 bins used.
    p = np.repeat([0.0, 0.5, 1.0], [30, 40, 30])
    y = np.r_[np.zeros(30), np.tile([1, 0], 20), np.ones(30)].astype(int)
    assert A.ece(p, y) == 0.0
    assert A.reliability_bins(p, y)["bin"].to_list() == [0, 3, 7]
    assert A.ece_weighted(p, y, np.ones((1, 100), dtype=int)).tolist() == [0.0]


def test_rms_calibration_error_by_hand():
    # bins {0.1, 0.2}: conf 0.15, acc 0.5 → gap 0.35; {0.7, 0.9}: conf 0.8, acc 1.0 → gap 0.2 (acc − conf > 0)
    assert A.rms_calibration_error([0.1, 0.2, 0.7, 0.9], [0, 1, 1, 1], n_bins=2) == pytest.approx(
        np.sqrt((0.35 ** 2 + 0.2 ** 2) / 2))
    # one bin over-confident (conf 0.9, acc 0.5 → −0.4) and one under (conf 0.2, acc 1.0 → +0.8)
    assert A.rms_calibration_error([0.2, 0.2, 0.9, 0.9], [1, 1, 1, 0], n_bins=2) == pytest.approx(
        np.sqrt((0.8 ** 2 + 0.4 ** 2) / 2))


@pytest.mark.parametrize("seed,n", [(0, 10), (1, 57), (2, 1000), (3, 5003)])
def test_calibration_matches_references(seed, n):
    rng = np.random.default_rng(seed)
    p = np.round(rng.beta(2, 2, n), 2)  # rounded: many tied scores
    y = (rng.random(n) < p ** 1.5).astype(int)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    assert A.auroc(p, y) == pytest.approx(skm.roc_auc_score(y, p))
    assert A.brier(p, y) == pytest.approx(skm.brier_score_loss(y, p))
    ref, parts = ece_reference(p, y, 10)
    assert A.ece(p, y) == pytest.approx(ref)
    bins = A.reliability_bins(p, y)
    assert bins["count"].to_list() == [c for _, _, c in parts]
    assert bins["confidence"].to_list() == pytest.approx([c for c, _, _ in parts])
    assert bins["accuracy"].to_list() == pytest.approx([a for _, a, _ in parts])
    rms = np.sqrt(np.mean([(a - c) ** 2 for c, a, _ in parts]))
    assert A.rms_calibration_error(p, y) == pytest.approx(rms)
    edges = sorted(set(p))
    for lo, hi, count in zip(bins["p_min"], bins["p_max"], bins["count"]):  # a bin holds every value in its range
        assert count == int(((p >= lo) & (p <= hi)).sum()) and lo in edges and hi in edges
    rep = A.calibration_report(pl.DataFrame({"prob": p, "label": y.astype(bool)}))
    assert rep["ece"] == pytest.approx(ref) and rep["auroc"] == pytest.approx(skm.roc_auc_score(y, p))


def test_calibration_hand_example():
    # 12 predictions, 3 equal-count bins of 4 (sorted): conf (0.1+0.2+0.2+0.3)/4 = 0.2, acc 1/4
    # → |0.25 - 0.2| = 0.05; (0.4+0.5+0.5+0.6)/4 = 0.5, acc 2/4 → 0; (0.7+0.8+0.9+0.9)/4 = 0.825, acc 4/4 → 0.175
    # ECE = (0.05 + 0 + 0.175)/3 = 0.075 (unweighted mean over bins)
    p = [0.9, 0.1, 0.5, 0.2, 0.6, 0.3, 0.8, 0.4, 0.2, 0.7, 0.5, 0.9]
    y = [1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1]
    assert A.ece(p, y, n_bins=3) == pytest.approx(0.075)
    assert A.reliability_bins(p, y, n_bins=3)["count"].to_list() == [4, 4, 4]
    # AUROC by hand: positives {0.9,0.5,0.2,0.8,0.7,0.5,0.9}, negatives {0.1,0.6,0.3,0.4,0.2}: 35 pairs, count
    # positive > negative (ties ½): 0.9 → 5 (×2), 0.8 → 5, 0.7 → 5, 0.5 → 4 (all but 0.6; ×2),
    # 0.2 → 1 (0.1) + ½ (tie with 0.2) → 10 + 5 + 5 + 8 + 1.5 = 29.5
    assert A.auroc(p, y) == pytest.approx(29.5 / 35)
    with pytest.raises(ValueError, match="AUROC needs both classes"):
        A.auroc([0.2, 0.3], [1, 1])
    with pytest.raises(ValueError, match="10 equal-count bins need at least 10 predictions, got 3"):
        A.ece([0.1, 0.2, 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="labels must be 0/1 or bool, got \\[2.0\\]"):
        A.brier([0.1], [2])


# -- checklists ----------------------------------------------------------------------------------------------


def test_checklist_agreement_matches_sklearn():
    rng = np.random.default_rng(5)
    h, m = [], []
    for p in range(30):
        for r in range(3):
            for it in range(4):
                truth = rng.random() < 0.6
                for j in range(3):
                    if rng.random() < 0.8:
                        h.append({"prompt_id": p, "response_id": p * 10 + r, "item_id": p * 10 + it, "judge": f"h{j}",
                                  "label": "YES" if (truth if rng.random() < 0.8 else not truth) else "NO"})
                m.append({"prompt_id": p, "response_id": p * 10 + r, "item_id": p * 10 + it, "judge": "m",
                          "label": "YES" if (truth if rng.random() < 0.7 else not truth) else "NO"})
    got = A.checklist_agreement(h, m)
    by: dict = {}
    for x in h:
        by.setdefault((x["response_id"], x["item_id"]), []).append(x["label"])
    pairs = [(x["item_id"], brute_mode(by.get((x["response_id"], x["item_id"]), [])), x["label"]) for x in m]
    scored = [(i, c, lab) for i, c, lab in pairs if c is not None]
    pooled = got.filter(pl.col("item_id").is_null()).row(0, named=True)
    assert pooled["n"] == len(scored) and pooled["n_no_consensus"] == len(pairs) - len(scored)
    assert pooled["accuracy"] == pytest.approx(skm.accuracy_score([c for _, c, _ in scored], [x for _, _, x in scored]))
    assert pooled["kappa"] == pytest.approx(skm.cohen_kappa_score([c for _, c, _ in scored], [x for _, _, x in scored]))
    for r in got.filter(pl.col("item_id").is_not_null()).iter_rows(named=True):
        yt = [c for i, c, _ in scored if i == r["item_id"]]
        yp = [x for i, _, x in scored if i == r["item_id"]]
        assert r["n"] == len(yt)
        if yt:
            assert r["accuracy"] == pytest.approx(skm.accuracy_score(yt, yp))
            ref = skm.cohen_kappa_score(yt, yp) if len(set(yt) | set(yp)) > 1 else math.nan
            assert r["kappa"] == pytest.approx(ref, nan_ok=True)


def test_criterion_validity_hand_example():
    # item 1: both valid; item 2: one of two flags it; item 3: the only rater flags it; item 4: 2 of 3 valid
    # share unflagged = 1/4; consensus: item 1 valid, item 2 split (none), item 3 invalid, item 4 valid → 2/3
    # votes valid: 2 + 1 + 0 + 2 = 5 of 8
    v = pl.DataFrame({"prompt_id": 1, "item_id": [1, 1, 2, 2, 3, 4, 4, 4], "judge": list("ababaabc"),
                      "valid": [True, True, True, False, False, True, True, False]})
    r = A.criterion_validity(v)
    assert (r["n_items"], r["share_unflagged"], r["n_consensus"]) == (4, 0.25, 3)
    assert (r["share_valid_consensus"], r["vote_share_valid"]) == pytest.approx((2 / 3, 5 / 8))
    assert r["per_item"]["n_flagged"].to_list() == [0, 1, 1, 1]


# -- bootstrap -----------------------------------------------------------------------------------------------


def test_bootstrap_generic_equals_sums_and_manual_resampling():
    rng = np.random.default_rng(11)
    df = pl.DataFrame({"prompt_id": rng.integers(0, 40, 400), "hit": rng.integers(0, 2, 400)})
    ci = A.bootstrap_ci(df, "prompt_id", lambda f: f["hit"].mean(), n=1000, seed=0)
    pp = df.group_by("prompt_id").agg(hits=pl.col("hit").sum(), n=pl.len())
    ci2 = A.bootstrap_ci_from_sums(pp, "prompt_id", lambda t: t["hits"] / t["n"], n=1000, seed=0)
    assert ci["estimate"] == pytest.approx(df["hit"].mean())
    assert (ci["low"], ci["high"]) == pytest.approx((ci2["low"], ci2["high"]))
    assert ci2["n_valid"] == 1000 and ci2["level"] == 0.95 and ci2["seed"] == 0
    # manual: same draws (default_rng(0).integers over the sorted prompts), percentile 2.5 / 97.5
    prompts = np.sort(pp["prompt_id"].to_numpy())
    s = pp.sort("prompt_id")
    draws = np.random.default_rng(0).integers(0, len(prompts), (1000, len(prompts)))
    vals = s["hits"].to_numpy()[draws].sum(1) / s["n"].to_numpy()[draws].sum(1)
    assert (ci2["low"], ci2["high"]) == pytest.approx(tuple(np.quantile(vals, [0.025, 0.975])))
    # same seed → same interval; another seed → another one
    assert A.bootstrap_ci(df, "prompt_id", lambda f: f["hit"].mean(), n=1000, seed=0) == ci
    other = A.bootstrap_ci(df, "prompt_id", lambda f: f["hit"].mean(), n=1000, seed=1)
    assert (other["low"], other["high"]) != (ci["low"], ci["high"])


def test_bootstrap_duplicated_prompts_are_distinct_clusters():
    # A prompt drawn twice must count as two prompts: judge_vs_consensus would reject duplicated votes otherwise.
    h = random_votes(4, 60, 3)
    m = random_votes(5, 60, 1, p_vote=1.0, prefix="m")
    both = pl.concat([h.with_columns(kind=pl.lit("h")), m.with_columns(kind=pl.lit("m"))])

    def acc(f: pl.DataFrame) -> float:
        r = A.judge_vs_consensus(f.filter(pl.col("kind") == "h").drop("kind"),
                                 f.filter(pl.col("kind") == "m").drop("kind"))
        return r.filter(pl.col("judge") == "m0")["accuracy"].item()

    ci = A.bootstrap_ci(both, "prompt_id", acc, n=200, seed=0)
    assert ci["low"] <= ci["estimate"] <= ci["high"] and ci["n_valid"] == 200
    # MT-Bench agreement CI from per-prompt counts
    pp = A.mtbench_agreement(pl.concat([h, m]), "m0", h["judge"].unique().to_list(), by_prompt=True)
    ci = A.bootstrap_ci_from_sums(pp, "prompt_id", lambda t: t["s1_agree"] / t["s1_n"])
    full = A.mtbench_agreement(pl.concat([h, m]), "m0", h["judge"].unique().to_list())
    assert ci["estimate"] == pytest.approx(full["s1_rate"]) and ci["low"] <= ci["estimate"] <= ci["high"]
    with pytest.raises(ValueError, match="one value per resample"):
        A.bootstrap_ci_from_sums(pp, "prompt_id", lambda t: 0.5)
