"""Pairwise units, order combination and order-swap figures.

The unit of a pairwise verdict is (prompt, unordered response pair), keyed ``unit = "<lower id>-<higher id>"``.
Its classes are defined by the unit's own order, never by the order shown: ``first`` = the lower id wins,
``second`` = the higher id wins, ``tie`` (a "both bad" verdict counts as a tie). ``shown`` records the order the
judge saw: ``"ab"`` = lower id shown first, ``"ba"`` = higher id shown first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from storage.analysis._frames import (
    PAIR_CLASSES,
    UNIT_KEYS,
    check_labels,
    check_unique,
    frame,
)
from storage.analysis.consensus import consensus

TIE_LABELS = ("tie", "both_bad")
ORDER_COLS = ("prompt_id", "unit", "judge", "shown", "label")


def pair_unit(response_a: int | str, response_b: int | str, winner: int | str) -> tuple[tuple[Any, Any], str]:
    """The unit key (min id, max id) of a verdict on (response_a, response_b) and its class in the unit's own
    order: ``"first"`` (the lower id wins), ``"second"`` or ``"tie"``. `winner` is the winning response's id
    (int or its string), ``"tie"`` or ``"both_bad"`` (counted as a tie).

    >>> pair_unit(9, 4, 9)      # shown 9 then 4; 9 won: the higher id of the unit (4, 9)
    ((4, 9), 'second')
    >>> pair_unit(4, 9, "4")
    ((4, 9), 'first')
    >>> pair_unit(9, 4, "both_bad")
    ((4, 9), 'tie')
    >>> pair_unit(4, 9, 5)
    Traceback (most recent call last):
    ValueError: winner 5 is neither response (4, 9) nor 'tie' / 'both_bad'
    """
    if response_a == response_b:
        raise ValueError(f"a pair needs two different responses, got {response_a!r} twice")
    lo, hi = (response_a, response_b) if response_a < response_b else (response_b, response_a)  # type: ignore[operator]
    w = str(winner)
    if w in TIE_LABELS:
        return (lo, hi), "tie"
    if w == str(lo):
        return (lo, hi), "first"
    if w == str(hi):
        return (lo, hi), "second"
    raise ValueError(f"winner {winner!r} is neither response {(lo, hi)} nor 'tie' / 'both_bad'")


def pairwise_votes(judgments: Any) -> pl.DataFrame:
    """Pairwise judgment rows → votes in unit order (vectorised `pair_unit`).

    Input columns: ``prompt_id, judge, response_id`` (shown first), ``response_b_id`` (shown second),
    ``label`` (winner id as text or int, ``"tie"`` or ``"both_bad"``); other columns pass through. Output adds
    ``unit`` ("lo-hi"), ``response_lo``, ``response_hi``, ``shown`` ("ab" when the lower id was shown first,
    else "ba"), ``raw_label``, and replaces ``label`` by the class (first / second / tie).

    >>> j = pl.DataFrame({"prompt_id": [1, 1], "judge": ["ann", "m"], "response_id": [9, 4],
    ...                   "response_b_id": [4, 9], "label": ["9", "tie"]})
    >>> pairwise_votes(j).select("prompt_id", "unit", "judge", "label", "shown").rows()
    [(1, '4-9', 'ann', 'second', 'ba'), (1, '4-9', 'm', 'tie', 'ab')]
    """
    j = frame(judgments, ("prompt_id", "judge", "response_id", "response_b_id", "label"), "pairwise judgments")
    same = j.filter(pl.col("response_id") == pl.col("response_b_id"))
    if same.height:
        raise ValueError(f"pairwise judgments: {same.height} row(s) compare a response with itself, e.g. "
                         f"{same.row(0, named=True)}")
    lo = pl.min_horizontal("response_id", "response_b_id")
    hi = pl.max_horizontal("response_id", "response_b_id")
    raw = pl.col("label").cast(pl.String)
    out = j.with_columns(raw).rename({"label": "raw_label"}).with_columns(
        response_lo=lo, response_hi=hi,
        unit=pl.format("{}-{}", lo, hi),
        shown=pl.when(pl.col("response_id") == lo).then(pl.lit("ab")).otherwise(pl.lit("ba")),
        label=pl.when(pl.col("raw_label").is_in(list(TIE_LABELS))).then(pl.lit("tie"))
        .when(pl.col("raw_label") == lo.cast(pl.String)).then(pl.lit("first"))
        .when(pl.col("raw_label") == hi.cast(pl.String)).then(pl.lit("second"))
        .otherwise(None))
    bad = out.filter(pl.col("label").is_null())
    if bad.height:
        r = bad.row(0, named=True)
        raise ValueError(f"pairwise judgments: {bad.height} label(s) name neither response nor tie/both_bad, e.g. "
                         f"label {r['raw_label']!r} on ({r['response_id']}, {r['response_b_id']}) by {r['judge']!r}")
    return out


def combine_orders(order_votes: Any) -> pl.DataFrame:
    """One vote per (unit, judge) from order-level votes: with both orders, a win only when both orders
    name the same winner, otherwise a tie (MT-Bench's conservative rule); with one order, that order's vote.

    Input: ``prompt_id, unit, judge, shown ("ab"|"ba"), label`` (classes in unit order), one row per order.
    Output: ``prompt_id, unit, judge, label, n_orders, label_ab, label_ba, consistent`` (both orders gave the
    same label, ties included; null with one order).

    >>> o = pl.DataFrame({"prompt_id": 1, "unit": ["4-9", "4-9", "5-6", "5-6", "7-8"], "judge": "m",
    ...                   "shown": ["ab", "ba", "ab", "ba", "ba"],
    ...                   "label": ["first", "first", "first", "second", "second"]})
    >>> combine_orders(o).select("unit", "label", "n_orders", "consistent").rows()
    [('4-9', 'first', 2, True), ('5-6', 'tie', 2, False), ('7-8', 'second', 1, None)]
    """
    o = frame(order_votes, ORDER_COLS, "order votes")
    check_labels(o, "shown", ("ab", "ba"), "order votes")
    check_labels(o, "label", PAIR_CLASSES, "order votes")
    check_unique(o, (*UNIT_KEYS, "judge", "shown"), "order votes", "one vote per judge, unit and shown order")
    keys = [*UNIT_KEYS, "judge"]
    g = o.group_by(keys, maintain_order=True).agg(
        label_ab=pl.col("label").filter(pl.col("shown") == "ab").first(),
        label_ba=pl.col("label").filter(pl.col("shown") == "ba").first(),
        n_orders=pl.len().cast(pl.Int64))
    both = pl.col("label_ab").is_not_null() & pl.col("label_ba").is_not_null()
    return g.with_columns(
        label=pl.when(both).then(pl.when(pl.col("label_ab") == pl.col("label_ba")).then(pl.col("label_ab"))
                                 .otherwise(pl.lit("tie")))
        .otherwise(pl.coalesce("label_ab", "label_ba")),
        consistent=pl.when(both).then(pl.col("label_ab") == pl.col("label_ba")).otherwise(None),
    ).select(*keys, "label", "n_orders", "label_ab", "label_ba", "consistent")


def order_variants(order_votes: Any, *, combined: bool = True,
                   orders_combined: pl.DataFrame | None = None) -> pl.DataFrame:
    """Votes for the per-order figures: each order as its own judge (``"<judge>#ab"``, ``"<judge>#ba"``) plus,
    with `combined`, the combined vote under the judge's own name. Feed it to `judge_vs_consensus`,
    `mtbench_agreement` or `pairwise_kappa`. `orders_combined`: ``combine_orders(order_votes)`` when the caller
    has it already (used as given).

    >>> o = pl.DataFrame({"prompt_id": 1, "unit": ["4-9", "4-9"], "judge": "m", "shown": ["ab", "ba"],
    ...                   "label": ["first", "tie"]})
    >>> order_variants(o).sort("judge").rows()
    [(1, '4-9', 'm', 'tie'), (1, '4-9', 'm#ab', 'first'), (1, '4-9', 'm#ba', 'tie')]
    """
    o = frame(order_votes, ORDER_COLS, "order votes")
    check_labels(o, "shown", ("ab", "ba"), "order votes")
    per = o.select(*UNIT_KEYS, judge=pl.format("{}#{}", "judge", "shown"), label=pl.col("label"))
    if not combined:
        return per
    comb = combine_orders(o) if orders_combined is None else orders_combined
    return pl.concat([comb.select(*UNIT_KEYS, "judge", "label"), per])


def order_swap(order_votes: Any, human_votes: Any | None = None,
               classes: Sequence[str] = PAIR_CLASSES, *, orders_combined: pl.DataFrame | None = None) -> pl.DataFrame:
    """Position-bias figures for every model judge, over the units it judged in BOTH orders.

    Per judge: ``n_units`` (judged in both orders); ``consistency`` = share of those units where both orders
    gave the same label (tie–tie counts as consistent); ``first_position_rate`` = among the non-tie
    order-level votes on those units, the share that pick the response SHOWN first (``n_decisive`` such
    votes; 0.5 = no position preference; restricting to units judged in both orders balances response
    quality across positions); ``tie_rate`` = share of order-level votes that are ties; ``both_first_rate`` /
    ``both_second_rate`` = share of units where both orders picked the response shown first / second
    (MT-Bench's "biased toward first / second"). Against the human consensus (all humans; units with a
    unique-mode consensus among those judged in both orders, ``n_scored``): ``acc_ab``, ``acc_ba`` (accuracy of
    each order alone), ``acc_order_mean`` (their mean) and ``acc_combined`` (the combined vote).
    `orders_combined`: ``combine_orders(order_votes)`` when the caller has it already (used as given).

    >>> o = pl.DataFrame({"prompt_id": 1, "unit": ["4-9", "4-9", "5-6", "5-6"], "judge": "m",
    ...                   "shown": ["ab", "ba", "ab", "ba"], "label": ["first", "second", "first", "first"]})
    >>> h = pl.DataFrame({"prompt_id": 1, "unit": ["4-9", "5-6"], "judge": "h", "label": ["first", "first"]})
    >>> r = order_swap(o, h).row(0, named=True)
    >>> r["consistency"], r["first_position_rate"], r["both_first_rate"], r["acc_ab"], r["acc_ba"], r["acc_combined"]
    (0.5, 0.75, 0.5, 1.0, 0.5, 0.5)
    """
    comb = (combine_orders(frame(order_votes, ORDER_COLS, "order votes")) if orders_combined is None
            else orders_combined).filter(pl.col("n_orders") == 2)
    lab_ab, lab_ba = pl.col("label_ab"), pl.col("label_ba")
    # picks of the shown-first response: "first" when shown ab, "second" when shown ba
    ab_first, ba_first = lab_ab == "first", lab_ba == "second"
    ab_second, ba_second = lab_ab == "second", lab_ba == "first"
    per_unit = comb.with_columns(
        _first=ab_first.cast(pl.Int64) + ba_first.cast(pl.Int64),
        _decisive=(lab_ab != "tie").cast(pl.Int64) + (lab_ba != "tie").cast(pl.Int64),
        _both_first=ab_first & ba_first, _both_second=ab_second & ba_second)
    if human_votes is not None:
        cons = consensus(human_votes, classes).select(*UNIT_KEYS, "consensus")
        per_unit = per_unit.join(cons, on=list(UNIT_KEYS), how="left", maintain_order="left")
    else:
        per_unit = per_unit.with_columns(consensus=pl.lit(None, dtype=pl.String))
    scored = pl.col("consensus").is_not_null()

    def acc(col: str) -> pl.Expr:
        return (pl.col(col) == pl.col("consensus")).filter(scored).mean()

    g = per_unit.group_by("judge", maintain_order=True).agg(
        n_units=pl.len().cast(pl.Int64), consistency=pl.col("consistent").mean(),
        _first=pl.col("_first").sum(), n_decisive=pl.col("_decisive").sum().cast(pl.Int64),
        tie_rate=(2 * pl.len() - pl.col("_decisive").sum()) / (2 * pl.len()),
        both_first_rate=pl.col("_both_first").mean(), both_second_rate=pl.col("_both_second").mean(),
        n_scored=scored.sum().cast(pl.Int64), acc_ab=acc("label_ab"), acc_ba=acc("label_ba"),
        acc_combined=acc("label"))
    return g.with_columns(
        first_position_rate=pl.when(pl.col("n_decisive") > 0).then(pl.col("_first") / pl.col("n_decisive")),
        acc_order_mean=(pl.col("acc_ab") + pl.col("acc_ba")) / 2,
    ).select("judge", "n_units", "consistency", "first_position_rate", "n_decisive", "tie_rate", "both_first_rate",
             "both_second_rate", "n_scored", "acc_ab", "acc_ba", "acc_order_mean", "acc_combined")
