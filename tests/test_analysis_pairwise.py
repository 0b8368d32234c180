"""storage.analysis.pairwise: order combination and the order-swap figures against a from-definition loop over
plain dicts (several judges, units judged in one order only, all-tie judges), plus hand examples."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from storage import analysis as A
from tests.test_analysis_metrics import brute_mode

CLASSES = ("first", "second", "tie")


def combine_reference(rows: list[dict]) -> dict[tuple, dict]:
    """(prompt, unit, judge) → label, n_orders, consistent; MT-Bench's rule written out."""
    by: dict[tuple, dict[str, str]] = {}
    for r in rows:
        by.setdefault((r["prompt_id"], r["unit"], r["judge"]), {})[r["shown"]] = r["label"]
    out = {}
    for key, orders in by.items():
        if len(orders) == 2:
            same = orders["ab"] == orders["ba"]
            out[key] = {"label": orders["ab"] if same else "tie", "n_orders": 2, "consistent": same}
        else:
            (label,) = orders.values()
            out[key] = {"label": label, "n_orders": 1, "consistent": None}
    return out


def random_order_votes(seed: int, n_units: int, judges: list[str]) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for j in judges:
        for u in range(n_units):
            for shown in ("ab", "ba"):
                if rng.random() < 0.85:
                    rows.append({"prompt_id": u // 4, "unit": f"{u}-{u + 100}", "judge": j, "shown": shown,
                                 "label": CLASSES[int(rng.choice(3, p=[0.45, 0.35, 0.2]))]})
    return rows


@pytest.mark.parametrize("seed", [0, 1])
def test_combine_orders_matches_the_rule(seed):
    rows = random_order_votes(seed, 50, ["m1", "m2"])
    got = A.combine_orders(pl.DataFrame(rows))
    ref = combine_reference(rows)
    assert got.height == len(ref)
    for r in got.iter_rows(named=True):
        e = ref[(r["prompt_id"], r["unit"], r["judge"])]
        assert (r["label"], r["n_orders"], r["consistent"]) == (e["label"], e["n_orders"], e["consistent"])


def test_a_unit_judged_in_one_order_only():
    # unit 1-2 only shown ab (lower id first): the vote stands as given, in either class
    o = pl.DataFrame({"prompt_id": 1, "unit": ["1-2", "3-4"], "judge": "m", "shown": ["ab", "ab"],
                      "label": ["second", "tie"]})
    got = A.combine_orders(o)
    assert got.rows() == [(1, "1-2", "m", "second", 1, "second", None, None), (1, "3-4", "m", "tie", 1, "tie", None, None)]
    assert got.columns == ["prompt_id", "unit", "judge", "label", "n_orders", "label_ab", "label_ba", "consistent"]
    # no unit judged in both orders: order_swap has nothing for the judge
    assert A.order_swap(o).height == 0
    # order variants: the combined vote and the ab vote, no ba judge
    v = A.order_variants(o).sort("judge", "unit")
    assert v.rows() == [(1, "1-2", "m", "second"), (1, "3-4", "m", "tie"), (1, "1-2", "m#ab", "second"),
                        (1, "3-4", "m#ab", "tie")]
    assert A.order_variants(o, combined=False).rows() == [(1, "1-2", "m#ab", "second"), (1, "3-4", "m#ab", "tie")]
    with pytest.raises(ValueError, match="shown outside \\['ab', 'ba'\\]"):
        A.combine_orders(o.with_columns(shown=pl.lit("xy")))
    with pytest.raises(ValueError, match="shown outside"):
        A.order_variants(o.with_columns(shown=pl.lit("xy")))
    with pytest.raises(ValueError, match="label outside"):
        A.combine_orders(o.with_columns(label=pl.lit("both_bad")))


def order_swap_reference(rows: list[dict], humans: pl.DataFrame | None) -> dict[str, dict]:
    comb = combine_reference(rows)
    orders: dict[tuple, dict[str, str]] = {}
    for r in rows:
        orders.setdefault((r["prompt_id"], r["unit"], r["judge"]), {})[r["shown"]] = r["label"]
    cons: dict[tuple, object] = {}
    if humans is not None:
        hv: dict[tuple, list] = {}
        for r in humans.iter_rows(named=True):
            hv.setdefault((r["prompt_id"], r["unit"]), []).append(r["label"])
        cons = {k: brute_mode(v) for k, v in hv.items()}
    out = {}
    for judge in sorted({r["judge"] for r in rows}):
        both = {k[:2]: o for k, o in orders.items() if k[2] == judge and len(o) == 2}
        if not both:
            continue
        votes = [(shown, lab) for o in both.values() for shown, lab in o.items()]
        decisive = [(s, lab) for s, lab in votes if lab != "tie"]
        # the response shown first wins: "first" (lower id) shown ab, "second" (higher id) shown ba
        shown_first = [1 for s, lab in decisive if (s, lab) in (("ab", "first"), ("ba", "second"))]
        scored = [k for k in both if cons.get(k) is not None]

        def acc(pick) -> float | None:
            return sum(pick(k) == cons[k] for k in scored) / len(scored) if scored else None

        a_ab, a_ba = acc(lambda k: both[k]["ab"]), acc(lambda k: both[k]["ba"])
        out[judge] = {
            "n_units": len(both), "consistency": sum(o["ab"] == o["ba"] for o in both.values()) / len(both),
            "first_position_rate": len(shown_first) / len(decisive) if decisive else None,
            "n_decisive": len(decisive), "tie_rate": (len(votes) - len(decisive)) / len(votes),
            "both_first_rate": sum(o["ab"] == "first" and o["ba"] == "second" for o in both.values()) / len(both),
            "both_second_rate": sum(o["ab"] == "second" and o["ba"] == "first" for o in both.values()) / len(both),
            "n_scored": len(scored), "acc_ab": a_ab, "acc_ba": a_ba,
            "acc_order_mean": (a_ab + a_ba) / 2 if scored else None,
            "acc_combined": acc(lambda k: comb[(*k, judge)]["label"]),
        }
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order_swap_matches_the_definition(seed):
    rows = random_order_votes(seed + 10, 60, ["m1", "m2", "m3"])
    rng = np.random.default_rng(seed)
    hum = pl.DataFrame([{"prompt_id": u // 4, "unit": f"{u}-{u + 100}", "judge": f"h{j}",
                         "label": CLASSES[int(rng.integers(0, 3))]} for u in range(55) for j in range(3)
                        if rng.random() < 0.8])
    for humans in (hum, None):
        got = {r["judge"]: r for r in A.order_swap(pl.DataFrame(rows), humans).iter_rows(named=True)}
        ref = order_swap_reference(rows, humans)
        assert set(got) == set(ref)
        for judge, e in ref.items():
            g = got[judge]
            assert list(g)[1:] == list(e)
            for k, v in e.items():
                assert g[k] == (pytest.approx(v) if v is not None else None), (judge, k)
    # the combined votes given by the caller are used as given
    o = pl.DataFrame(rows)
    assert A.order_swap(o, hum, orders_combined=A.combine_orders(o)).equals(A.order_swap(o, hum))


def test_order_swap_of_a_judge_that_only_says_tie():
    # every order-level vote a tie: no decisive vote (first_position_rate undefined), tie rate 1, consistent
    o = pl.DataFrame({"prompt_id": 1, "unit": ["1-2", "1-2", "3-4", "3-4"], "judge": "m", "shown": ["ab", "ba"] * 2,
                      "label": "tie"})
    h = pl.DataFrame({"prompt_id": 1, "unit": ["1-2", "3-4"], "judge": "h", "label": ["tie", "first"]})
    r = A.order_swap(o, h).row(0, named=True)
    assert (r["n_decisive"], r["first_position_rate"], r["tie_rate"], r["consistency"]) == (0, None, 1.0, 1.0)
    assert (r["both_first_rate"], r["both_second_rate"]) == (0.0, 0.0)
    # vs the humans: 1-2 tie ✓, 3-4 first ✗ → 0.5 for each order and the combination
    assert (r["n_scored"], r["acc_ab"], r["acc_ba"], r["acc_order_mean"], r["acc_combined"]) == (2, 0.5, 0.5, 0.5, 0.5)


def test_order_variants_use_the_given_combination():
    o = pl.DataFrame({"prompt_id": [1, 1], "unit": ["1-2", "1-2"], "judge": "m", "shown": ["ab", "ba"],
                      "label": ["first", "second"]})
    given = pl.DataFrame({"prompt_id": [1], "unit": ["1-2"], "judge": ["m"], "label": ["second"]})
    v = A.order_variants(o, orders_combined=given).sort("judge")
    assert v.rows() == [(1, "1-2", "m", "second"), (1, "1-2", "m#ab", "first"), (1, "1-2", "m#ba", "second")]


def test_pairwise_votes_by_hand():
    # shown (9, 4) winner 9 → unit 4-9, second, ba; shown (4, 9) "both_bad" → tie, ab; shown (12, 3) winner 3 as an
    # int → 3-12 (numeric order), first, ba; an extra column passes through
    j = pl.DataFrame({"prompt_id": [1, 1, 2], "judge": ["a", "b", "a"], "response_id": [9, 4, 12],
                      "response_b_id": [4, 9, 3], "label": ["9", "both_bad", "3"], "note": ["x", "y", "z"]})
    got = A.pairwise_votes(j)
    assert got.select("unit", "response_lo", "response_hi", "shown", "label", "raw_label", "note").rows() == [
        ("4-9", 4, 9, "ba", "second", "9", "x"), ("4-9", 4, 9, "ab", "tie", "both_bad", "y"),
        ("3-12", 3, 12, "ba", "first", "3", "z")]
    ints = j.with_columns(label=pl.Series([9, 9, 12]))
    assert A.pairwise_votes(ints)["label"].to_list() == ["second", "second", "second"]
    with pytest.raises(ValueError, match="compare a response with itself"):
        A.pairwise_votes(j.with_columns(response_b_id=pl.col("response_id")))
    with pytest.raises(ValueError, match="pairwise judgments: missing column"):
        A.pairwise_votes(j.drop("response_b_id"))


def test_pair_unit_by_hand():
    assert A.pair_unit("b", "a", "a") == (("a", "b"), "first")
    assert A.pair_unit("b", "a", "tie") == (("a", "b"), "tie")
    assert A.pair_unit(3, 12, 12) == ((3, 12), "second")
    assert A.pair_unit(12, 3, "3") == ((3, 12), "first")
    with pytest.raises(ValueError, match="a pair needs two different responses, got 4 twice"):
        A.pair_unit(4, 4, 4)


def test_order_swap_nan_free_rates_are_shares():
    # sanity on the reference itself: rates lie in [0, 1] and tie_rate + decisive share = 1
    rows = random_order_votes(5, 30, ["m"])
    r = A.order_swap(pl.DataFrame(rows)).row(0, named=True)
    assert r["tie_rate"] + r["n_decisive"] / (2 * r["n_units"]) == pytest.approx(1.0)
    assert r["acc_ab"] is None and r["n_scored"] == 0 and not math.isnan(r["consistency"])


def test_order_swap_with_one_decisive_vote():
    # one unit: ab tie, ba second (the higher id, shown first) → one decisive vote, for the shown-first response
    o = pl.DataFrame({"prompt_id": [1, 1], "unit": ["1-2", "1-2"], "judge": "m", "shown": ["ab", "ba"],
                      "label": ["tie", "second"]})
    r = A.order_swap(o).row(0, named=True)
    assert (r["n_decisive"], r["first_position_rate"], r["tie_rate"]) == (1, 1.0, 0.5)
