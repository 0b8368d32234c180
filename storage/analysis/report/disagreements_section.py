"""The report's `disagreements` section: the prompts whose categorical votes disagree most, human–human
and human–model."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.agreement import mtbench_agreement
from storage.analysis.checklist import YES_NO
from storage.analysis.report.figures import HUMANS, TOP_DISAGREED, VOTE, _figure, _unavailable
from storage.analysis.report.loading import _Data, _mapped
from storage.analysis.report.votes import _combined_orders, _correct_votes, _pairwise_frames
from storage.models import HumanMethod


def _all_votes(d: _Data) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Every categorical vote of the stage: human pairwise verdicts, best picks, correct labels and checklist
    answers; model pairwise (orders combined), selector picks and checklist answers. Model judges are named
    "<judge> · <method>". Units are prefixed by the question."""
    parts = []
    human_votes, orders = _pairwise_frames(d)
    if human_votes.height:
        parts.append(human_votes.select("prompt_id", unit=pl.format("pair:{}", "unit"), judge="judge",
                                        label="label", kind=pl.lit("human")))
    if orders is not None:
        parts.append(_combined_orders(d, orders).select("prompt_id", unit=pl.format("pair:{}", "unit"),
                                                   judge=pl.col("judge") + " · pairwise", label="label",
                                                   kind=pl.lit("model")))
    best = d.human.filter((pl.col("method") == HumanMethod.BEST) & pl.col("response_id").is_not_null())
    parts.append(best.select("prompt_id", unit=pl.lit("best"), judge="judge",
                             label=pl.col("response_id").cast(pl.String), kind=pl.lit("human")))
    sel = d.model.filter(pl.col("method").is_in(_mapped(d, "score_column", ["response_id"]))
                         & pl.col("variant").is_null() & pl.col("response_id").is_not_null())
    parts.append(sel.select("prompt_id", unit=pl.lit("best"), judge=pl.col("judge") + " · " + pl.col("method"),
                            label=pl.col("response_id").cast(pl.String), kind=pl.lit("model")))
    parts.append(_correct_votes(d).with_columns(unit=pl.format("correct:{}", "unit"), kind=pl.lit("human")))
    ans = ((pl.col("method") == HumanMethod.CHECKLIST_ITEM) & pl.col("response_id").is_not_null()
           & pl.col("checklist_item_id").is_not_null() & pl.col("label").is_in(list(YES_NO)))
    for frame, kind, suffix in ((d.human, "human", None), (d.model, "model", " · checklist")):
        c = frame.filter(ans)
        parts.append(c.select("prompt_id", unit=pl.format("check:{}:{}", "response_id", "checklist_item_id"),
                              judge=pl.col("judge") + suffix if suffix else pl.col("judge"), label="label",
                              kind=pl.lit(kind)))
    votes = pl.concat([p.cast({"prompt_id": pl.Int64}) for p in parts if p.height], how="vertical_relaxed") if any(
        p.height for p in parts) else pl.DataFrame(schema={"prompt_id": pl.Int64, "unit": pl.String,
                                                            "judge": pl.String, "label": pl.String, "kind": pl.String})
    humans = sorted(votes.filter(pl.col("kind") == "human")["judge"].unique().to_list())
    models = sorted(votes.filter(pl.col("kind") == "model")["judge"].unique().to_list())
    return votes, humans, models


def _disagreements(d: _Data) -> dict[str, Any]:
    votes, humans, models = _all_votes(d)
    if not humans:
        return _unavailable("no human categorical labels")
    pos = d.prompts.select("prompt_id", "external_id", "position")

    def ranked(pp: pl.DataFrame, judges: list[str]) -> list[dict[str, Any]]:
        r = (pp.filter(pl.col("s1_n") > 0)
             .with_columns(n_disagree=pl.col("s1_n") - pl.col("s1_agree"),
                           score=(pl.col("s1_n") - pl.col("s1_agree")) / pl.col("s1_n"))
             .filter(pl.col("n_disagree") > 0).join(pos, on="prompt_id", how="left")
             .sort(["score", "n_disagree", "position"], descending=[True, True, False]).head(TOP_DISAGREED))
        return [{"prompt_id": x["prompt_id"], "external_id": x["external_id"],
                 "score": _figure("disagreement_rate", judges, x["score"], x["s1_n"], n_disagree=x["n_disagree"])}
                for x in r.iter_rows(named=True)]
    out: dict[str, Any] = {"available": True, "top": TOP_DISAGREED,
                           "score": ("disagreement_rate = 1 − MT-Bench S1 agreement over the prompt's units: the "
                                     "share of disagreeing vote pairs (ties count as a class)")}
    v = votes.select(VOTE)
    out["human_human"] = (ranked(mtbench_agreement(v, humans, humans, by_prompt=True), [HUMANS, HUMANS])
                          if len(humans) >= 2 else [])
    # models against humans count only units the humans judged: the rest need not be passed on
    near = v.join(votes.filter(pl.col("kind") == "human").select("prompt_id", "unit").unique(),
                  on=["prompt_id", "unit"], how="semi")
    near_models = [m for m in models if m in set(near["judge"].unique().to_list())]
    out["human_model"] = (ranked(mtbench_agreement(near, near_models, humans, by_prompt=True), ["models", HUMANS])
                          if near_models else [])
    return out
