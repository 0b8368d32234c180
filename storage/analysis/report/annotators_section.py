"""The report's `annotators` section: per annotator, time on task and agreement with the other humans'
plurality consensus on each categorical question, beside their Dawid–Skene and MACE competence
(`storage.analysis.annotators`, opt-in: EM over every vote)."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.annotators import dawid_skene, mace
from storage.analysis.consensus import consensus
from storage.analysis.report.figures import CORRECT_CLASSES, VOTE, _unavailable
from storage.analysis.report.loading import _Data
from storage.analysis.report.votes import _code_picks, _correct_votes, _pairwise_frames
from storage.analysis._frames import PAIR_CLASSES
from storage.models import HumanMethod


def _questions(d: _Data) -> list[tuple[str, pl.DataFrame, list[str] | None]]:
    out: list[tuple[str, pl.DataFrame, list[str] | None]] = []
    picks = d.human.filter((pl.col("method") == HumanMethod.BEST) & pl.col("response_id").is_not_null())
    if picks.height:
        coded, classes = _code_picks(picks.select("prompt_id", unit=pl.lit("best"), judge="judge",
                                                  label=pl.col("response_id").cast(pl.String)))
        out.append((HumanMethod.BEST, coded.select(VOTE), classes))
    correct = _correct_votes(d)
    if correct.height:
        out.append((HumanMethod.CORRECT, correct.select(VOTE), list(CORRECT_CLASSES)))
    pairwise, _ = _pairwise_frames(d)
    if pairwise.height:
        out.append((HumanMethod.PAIRWISE, pairwise.select(VOTE), list(PAIR_CLASSES)))
    return out


def _time_on_task(d: _Data) -> list[dict[str, Any]]:
    """Median seconds per item (an annotator's prompt at the stage: one submit stores one duration on each
    of its rows, so the largest is taken) per annotator."""
    t = d.human.filter(pl.col("duration_ms").is_not_null())
    if t.height == 0:
        return []
    per = t.group_by("judge", "prompt_id").agg(ms=pl.col("duration_ms").max())
    agg = per.group_by("judge").agg(median_seconds=pl.col("ms").median() / 1000, n_items=pl.len().cast(pl.Int64))
    return agg.sort("judge").to_dicts()


def _question(votes: pl.DataFrame, classes: list[str] | None, models: bool) -> dict[str, Any]:
    loo = consensus(votes, classes, leave_one_out=True).filter(pl.col("consensus").is_not_null())
    agree = loo.group_by("judge").agg(n=pl.len().cast(pl.Int64),
                                      agreement=(pl.col("label") == pl.col("consensus")).mean())
    judges = votes.select("judge").unique().join(agree, on="judge", how="left").sort("judge")
    out: dict[str, Any] = {"n_votes": votes.height, "n_units": votes.select("prompt_id", "unit").unique().height}
    if models and votes["judge"].n_unique() >= 2:
        ds = dawid_skene(votes, classes).judges.select("judge", dawid_skene="competence")
        mc = mace(votes, classes).judges.select("judge", mace="competence")
        judges = judges.join(ds, on="judge", how="left").join(mc, on="judge", how="left")
    out["annotators"] = judges.to_dicts()
    return out


def _annotators(d: _Data, models: bool) -> dict[str, Any]:
    questions = _questions(d)
    times = _time_on_task(d)
    if not questions and not times:
        return _unavailable("no categorical human labels and no recorded time on task")
    out: dict[str, Any] = {
        "available": True,
        "agreement": "share of the annotator's votes equal to the plurality of the OTHER humans (unique mode)",
        "competence": ("Dawid-Skene (expected accuracy) and MACE (probability of knowing the answer), fitted by "
                       "EM over every human vote of the question" if models else
                       "not computed: opt-in (build_report(..., annotator_models=True), the Agreement tab's "
                       "'Annotator models' box)"),
        "models": models, "time_on_task": times,
        "questions": {q: _question(v, c, models) for q, v, c in questions}}
    return out
