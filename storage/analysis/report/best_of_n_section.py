"""The report's `best_of_n` section: how often selectors, score argmaxes, majority vote and a random pick
choose the humans' pick, with the human ceiling."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.consensus import consensus
from storage.analysis.report.figures import CONSENSUS, HUMANS, LOO, RANDOM, VOTE, _figure, _num, _unavailable
from storage.analysis.report.intervals import _Boot, _ratio
from storage.analysis.report.loading import _Data, _mapped
from storage.analysis.report.votes import _code_picks, _score_rows
from storage.analysis.scores import best_of_n_accuracy
from storage.models import HumanMethod


def _best_of_n(d: _Data, boot: _Boot) -> dict[str, Any]:
    picks = d.human.filter((pl.col("method") == HumanMethod.BEST) & pl.col("response_id").is_not_null())
    if picks.height == 0:
        return _unavailable("no human best-of-N picks")
    human_picks = picks.select("prompt_id", "judge", "response_id")
    # candidates: what the humans were shown (plus their picks); all the prompt's responses when no order stored
    shown = picks.select("prompt_id", response_id=pl.col("shown_order")).explode("response_id").drop_nulls()
    no_order = picks.group_by("prompt_id").agg(pl.col("shown_order").is_not_null().any().alias("has")).filter(
        ~pl.col("has")).select("prompt_id")
    fallback = d.responses.join(no_order, on="prompt_id").filter(
        ~pl.col("origin").is_in(["revision", "aggregate"])).select("prompt_id", "response_id")
    candidates = pl.concat([shown, fallback, human_picks.select("prompt_id", "response_id")]).unique().sort(
        "prompt_id", "response_id")
    prompts = human_picks.select("prompt_id").unique()

    sel_methods = _mapped(d, "score_column", ["response_id"])
    sel = d.model.filter(pl.col("method").is_in(sel_methods) & pl.col("variant").is_null()
                         & pl.col("response_id").is_not_null()).join(prompts, on="prompt_id").select(
        "judge", "method", "prompt_id", "response_id",
        kind=pl.when(pl.col("method") == "select_majority").then(pl.lit("majority")).otherwise(pl.lit("selector")))
    inside = sel.join(candidates, on=["prompt_id", "response_id"], how="semi")
    n_outside = sel.height - inside.height
    score_methods = [m for m in _mapped(d, "score_column", ["value", "prob"])
                     if d.mapping[m]["compared_with"] != HumanMethod.BEST]
    sc = _score_rows(d, score_methods).join(candidates, on=["prompt_id", "response_id"], how="semi")
    sc = sc.with_columns(_top=pl.col("score").max().over("judge", "method", "prompt_id"))
    top = sc.filter(pl.col("score") == pl.col("_top"))
    argmax = (top.group_by("judge", "method", "prompt_id").agg(response_id=pl.col("response_id").min(),
                                                              n_top=pl.len())
              .with_columns(kind=pl.lit("score_argmax")))
    ties = argmax.group_by("judge", "method").agg(n_tied=(pl.col("n_top") > 1).sum().cast(pl.Int64))
    selectors = pl.concat([inside, argmax.select("judge", "method", "prompt_id", "response_id", "kind")])
    keys = selectors.select("judge", "method", "kind").unique().sort("kind", "method", "judge").with_row_index("_s")
    selectors = selectors.join(keys, on=["judge", "method", "kind"]).with_columns(
        selector=pl.format("s{}", "_s"))
    res = best_of_n_accuracy(human_picks, selectors.select("prompt_id", "selector", "response_id") if
                             selectors.height else pl.DataFrame(schema={"prompt_id": pl.Int64, "selector": pl.String,
                                                                        "response_id": pl.Int64}),
                             candidates, majority="")  # kinds are set below
    # the consensus pick and per-prompt statistics for the intervals
    votes = human_picks.select("prompt_id", unit=pl.lit("best"), judge="judge",
                               label=pl.col("response_id").cast(pl.String))
    coded, classes = _code_picks(votes)
    back = coded.select("prompt_id", consensus="label", response="raw").unique()
    cons = (consensus(coded.select(VOTE), classes).select("prompt_id", "consensus")
            .join(back, on=["prompt_id", "consensus"], how="left")
            .select("prompt_id", consensus="response"))
    n_cand = candidates.group_by("prompt_id").agg(N=pl.len())
    sp = selectors.select("selector", "prompt_id", pick=pl.col("response_id").cast(pl.String))
    hit_c = sp.join(cons.filter(pl.col("consensus").is_not_null()), on="prompt_id").group_by(
        "selector", "prompt_id").agg(hit=(pl.col("pick") == pl.col("consensus")).sum().cast(pl.Int64),
                                      one=pl.len().cast(pl.Int64))
    hit_h = sp.join(votes.select("prompt_id", "label"), on="prompt_id").group_by("selector", "prompt_id").agg(
        share=(pl.col("pick") == pl.col("label")).mean()).with_columns(one=pl.lit(1, dtype=pl.Int64))
    rnd = cons.join(n_cand, on="prompt_id").select("prompt_id", p=1.0 / pl.col("N"), one=pl.lit(1, dtype=pl.Int64),
                                                   has=pl.col("consensus").is_not_null())
    info = {r["selector"]: r for r in selectors.select("selector", "judge", "method", "kind").unique().iter_rows(
        named=True)}
    tied = {(r["judge"], r["method"]): r["n_tied"] for r in ties.iter_rows(named=True)}
    rows = []
    for r in res.iter_rows(named=True):
        if r["selector"] == "random":
            judge, method, kind = RANDOM, None, "random"
            ci_c = boot.sums(rnd.filter(pl.col("has")).select("prompt_id", "p", "one"), _ratio("p", "one"))
            ci_h = boot.sums(rnd.select("prompt_id", "p", "one"), _ratio("p", "one"))
        else:
            s = info[r["selector"]]
            judge, method, kind = s["judge"], s["method"], s["kind"]
            ci_c = boot.sums(hit_c.filter(pl.col("selector") == r["selector"]).drop("selector"), _ratio("hit", "one"))
            ci_h = boot.sums(hit_h.filter(pl.col("selector") == r["selector"]).drop("selector"),
                             _ratio("share", "one"))
        extra = {"method": method, "kind": kind}
        row = {"judge": judge, **extra, "n_consensus": r["n_consensus"], "n_no_consensus": r["n_no_consensus"],
               "n_prompts": r["n_prompts"],
               "accuracy_consensus": _figure("top1_accuracy", [judge, CONSENSUS], r["acc_consensus"],
                                             r["n_consensus"], ci_c, **extra),
               "accuracy_human_mean": _figure("top1_accuracy_human_mean", [judge, HUMANS], r["acc_human_mean"],
                                              r["n_prompts"], ci_h, **extra)}
        if kind == "score_argmax":
            row["n_tied_argmax"] = tied.get((judge, method), 0)
        rows.append(row)
    order = {"majority": 0, "selector": 1, "score_argmax": 2, "random": 3}
    rows.sort(key=lambda r: (order[r["kind"]], r["method"] or "", r["judge"]))
    # ceiling: each human's pick against the consensus pick of the others
    loo = consensus(coded.select(VOTE), classes, leave_one_out=True).filter(pl.col("consensus").is_not_null())
    pp = loo.group_by("prompt_id").agg(hit=(pl.col("label") == pl.col("consensus")).sum().cast(pl.Int64),
                                       n=pl.len().cast(pl.Int64))
    n_h = int(pp["n"].sum()) if pp.height else 0
    ceiling = _figure("top1_accuracy", [HUMANS, LOO], int(pp["hit"].sum()) / n_h if n_h else None, n_h,
                      boot.sums(pp, _ratio("hit", "n")))
    n_cons = int(cons["consensus"].is_not_null().sum())
    majority = ({"available": True, "reason": None} if any(r["kind"] == "majority" for r in rows) else
                _unavailable("no select_majority picks (majority vote needs the study's answer extraction)"))
    return {"available": True, "n_prompts": prompts.height, "n_consensus": n_cons,
            "n_no_consensus": cons.height - n_cons, "mean_candidates": _num(n_cand["N"].mean()),
            "n_picks_outside_candidates": n_outside, "selectors": rows, "majority": majority,
            "human_ceiling": ceiling}
