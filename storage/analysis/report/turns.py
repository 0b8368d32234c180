"""MT-Bench agreement per turn, as FastChat's compute_agreement.py prints it ("turn 1 with tie ...").

A study imported from FastChat has one prompt per (question, turn) with the turn in the prompt's metadata
(docs/formats.md); the pairwise section pools every prompt, so this splits the same counts by turn: the
same votes (model orders combined, disagreeing orders a tie), the same S1 (with ties) and S2 (without)."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.agreement import mtbench_agreement
from storage.analysis.report.figures import VOTE
from storage.analysis.report.loading import _Data, _load, _no_method_info
from storage.analysis.report.votes import _combined_orders, _pairwise_frames
from storage.db import Database

COLS = ("s1_agree", "s1_n", "s2_agree", "s2_n")


def pairwise_by_turn(db: Database, study_id: int, *, stage: str = "blind") -> list[dict[str, Any]]:
    """`by_turn` of the study's report data (`critlab agreement --by-turn` reads only this)."""
    return by_turn(_load(db, study_id, stage, _no_method_info))


def by_turn(d: _Data) -> list[dict[str, Any]]:
    """One row per (judges, turn): `judges` ([model, "humans"] or ["humans", "humans"]), `turn` and the
    S1 / S2 counts; [] when no prompt has a turn or there are no human pairwise votes (the report's
    `pairwise.by_turn`)."""
    human, orders = _pairwise_frames(d)
    turns = d.prompts.select("prompt_id", "turn").filter(pl.col("turn").is_not_null())
    if not human.height or not turns.height:
        return []
    humans = sorted(human["judge"].unique().to_list())
    votes = [human.select(VOTE)]
    models: list[str] = []
    if orders is not None:
        combined = _combined_orders(d, orders)
        votes.append(combined.select(VOTE))
        models = sorted(combined["judge"].unique().to_list())
    all_votes = pl.concat(votes)
    rows = []
    for side, name in [*(([m], m) for m in models), (humans, "humans")]:
        per = mtbench_agreement(all_votes, side, humans, by_prompt=True).join(turns, on="prompt_id")
        for r in per.group_by("turn").agg(pl.col(*COLS).sum()).sort("turn").iter_rows(named=True):
            rows.append({"judges": [name, "humans"], "turn": r["turn"], **{c: int(r[c]) for c in COLS}})
    return rows


def by_turn_text(rows: list[dict[str, Any]]) -> str:
    """The rows as compute_agreement.py's lines.

    >>> by_turn_text([{"judges": ["gpt-4", "humans"], "turn": 1, "s1_agree": 3, "s1_n": 5, "s2_agree": 2, "s2_n": 2}])
    'gpt-4 vs humans, turn 1 with tie. #total: 5, #agree: 3, ratio: 0.60\\ngpt-4 vs humans, turn 1 without tie. #total: 2, #agree: 2, ratio: 1.00'
    """
    out = []
    for r in rows:
        for label, a, n in (("with tie", r["s1_agree"], r["s1_n"]), ("without tie", r["s2_agree"], r["s2_n"])):
            ratio = f"{a / n:.2f}" if n else "n/a"
            out.append(f"{r['judges'][0]} vs {r['judges'][1]}, turn {r['turn']} {label}. #total: {n}, #agree: {a}, "
                       f"ratio: {ratio}")
    return "\n".join(out)
