"""`--consensus dawid_skene | mace`: the consensus of each unit from an annotator model instead of the plurality.

One pass over the export's human votes (the same labels the policies read: current, blind, gold gate applied,
gold items left out) fits the model by EM over every vote of the signal at once (storage.analysis.annotators:
Dawid–Skene from the majority-vote start, MACE by variational Bayes with seed 0), so an annotator who
disagrees with the others everywhere weighs less on every unit. The result is the argmax of each unit's
posterior (none where the maximum is shared): `Ctx.fitted`, which `policies.base.decide` reads in place of
the plurality.

Units and labels, as the plurality rule's: a prompt's best pick (classes: the prompt's picked responses, coded
by their rank among them, as the agreement report's annotators section codes them), a response pair's vote
(first | second | tie), a response's correct / incorrect label.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from storage.analysis._frames import PAIR_CLASSES
from storage.analysis.annotators import dawid_skene, mace
from storage.export.data import Chunk
from storage.export.policies.base import correct_tally, unit_key
from storage.export.policies.human import _pair_units

CONSENSUS_SIGNALS = ("best", "pairwise", "correct")


def _votes(chunks: Iterator[Chunk], signal: str) -> list[tuple[int, str, str, Any]]:
    """(prompt id, unit, judge, choice) for every ballot of `signal`, choices as the policies' tallies hold them."""
    out: list[tuple[int, str, str, Any]] = []
    for chunk in chunks:
        for pid, h in chunk.human.items():
            if signal == "best":
                out += [(pid, "best", x.judge, x.response_id) for x in h.picks if x.response_id is not None]
            elif signal == "pairwise":
                for (lo, hi), t in _pair_units(h).items():
                    out += [(pid, unit_key("pairwise", lo, hi), b.judge, b.choice) for b in t.ballots]
            else:
                for rid in h.correct:
                    out += [(pid, unit_key("correct", rid), b.judge, b.choice) for b in correct_tally(h, rid).ballots]
    return out


def fit(chunks: Iterator[Chunk], signal: str, model: str) -> dict[tuple[int, str], Any]:
    """(prompt id, unit) → the choice of `model` ("dawid_skene" | "mace"), None where its posterior's maximum is
    shared; units of prompts without votes are absent."""
    if signal not in CONSENSUS_SIGNALS:
        raise ValueError(f"--consensus {model} fits categorical votes: use it with the best, pairwise or correct "
                         f"signal, not {signal}")
    rows = _votes(chunks, signal)
    if not rows:
        return {}
    label = {"best": str, "pairwise": str, "correct": lambda ok: "correct" if ok else "incorrect"}[signal]
    v = pl.DataFrame({"prompt_id": [r[0] for r in rows], "unit": [r[1] for r in rows],
                      "judge": [r[2] for r in rows], "label": [label(r[3]) for r in rows]},
                     schema={"prompt_id": pl.Int64, "unit": pl.String, "judge": pl.String, "label": pl.String})
    if signal == "best":  # picks coded by the response's rank among the prompt's picked ones
        v = v.with_columns(raw=pl.col("label").cast(pl.Int64)).with_columns(
            label=pl.col("raw").rank("dense").over("prompt_id").cast(pl.Int64).cast(pl.String))
        classes = sorted(v["label"].unique().to_list(), key=int)
    else:
        classes = list(PAIR_CLASSES) if signal == "pairwise" else ["correct", "incorrect"]
    votes = v.select("prompt_id", "unit", "judge", "label")
    units = (dawid_skene(votes, classes) if model == "dawid_skene" else mace(votes, classes)).units
    if signal == "best":  # a rank code back to the response it stands for
        codes = v.select("prompt_id", consensus="label", response="raw").unique()
        units = units.join(codes, on=["prompt_id", "consensus"], how="left")
        return {(p, u): r for p, u, r in units.select("prompt_id", "unit", "response").iter_rows()}
    back: dict[str | None, Any] = ({"correct": True, "incorrect": False, None: None} if signal == "correct"
                                   else {c: c for c in (*PAIR_CLASSES, None)})
    return {(p, u): back[c] for p, u, c in units.select("prompt_id", "unit", "consensus").iter_rows()}
