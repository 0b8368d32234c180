"""The report's `ratings` section (human–human agreement on ratings) and `scores` section (model scores
against the humans' mean rating, with the human ceiling)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from storage.analysis.agreement import rating_agreement
from storage.analysis.consensus import rating_consensus
from storage.analysis.report.figures import HUMANS, LOO_MEAN, MEAN_RATING, _figure, _unavailable
from storage.analysis.report.intervals import _Boot, _ratio
from storage.analysis.report.loading import _Data, _mapped
from storage.analysis.report.shared import _alphas
from storage.analysis.report.votes import _human_ratings, _score_rows
from storage.analysis.scores import rank_correlations, rank_correlations_per_prompt
from storage.models import HumanMethod


def _ratings(d: _Data, boot: _Boot) -> dict[str, Any]:
    ratings = _human_ratings(d)
    if ratings.height == 0:
        return _unavailable("no human ratings")
    humans = sorted(ratings["judge"].unique().to_list())
    domain = sorted(ratings["value"].unique().to_list())
    per_unit = ratings.group_by("prompt_id", "unit").len()
    alpha = _alphas(ratings, ("interval", "ordinal", "nominal"), domain, [HUMANS, HUMANS], boot, value_col="value")
    rows = []
    if len(humans) >= 2:
        ra = rating_agreement(ratings)
        loo = rating_consensus(ratings, leave_one_out=True).filter(pl.col("consensus").is_not_null())
        pp_all = loo.group_by("judge", "prompt_id").agg(
            abs_err=(pl.col("value") - pl.col("consensus")).abs().sum(), n=pl.len().cast(pl.Int64))
        for r in ra.iter_rows(named=True):
            judges = [r["judge"], LOO_MEAN]
            pp = pp_all.filter(pl.col("judge") == r["judge"]).drop("judge")
            rows.append({"judge": r["judge"], "n": r["n"],
                         "mae": _figure("mae", judges, r["mae"], r["n"], boot.sums(pp, _ratio("abs_err", "n"))),
                         "pearson": _figure("pearson", judges, r["pearson"], r["n"]),
                         "spearman": _figure("spearman", judges, r["spearman"], r["n"])})
    return {"available": True, "humans": humans, "scale": list(d.study.config.rating_scale),
            "values": domain, "n_ratings": ratings.height, "n_units": per_unit.height,
            "n_units_multi": per_unit.filter(pl.col("len") >= 2).height,
            "krippendorff_alpha": alpha, "human_vs_others": rows}


def _rank_figures(frame: pl.DataFrame, judges: list[str], boot: _Boot, **extra: Any) -> dict[str, Any]:
    per_prompt = rank_correlations_per_prompt(frame)
    rc = rank_correlations(frame, per_prompt=per_prompt)
    per = per_prompt.filter(~pl.col("constant")).select(
        "prompt_id", rho="spearman", tau="kendall", one=pl.lit(1, dtype=pl.Int64))
    return {
        "n_prompts": rc["n_prompts"], "n_prompts_skipped": rc["n_prompts_skipped"], "n_pooled": rc["n_pooled"],
        "spearman_mean": _figure("spearman_per_prompt_mean", judges, rc["spearman_mean"], rc["n_prompts"],
                                 boot.sums(per.select("prompt_id", "rho", "one"), _ratio("rho", "one")),
                                 n_prompts_skipped=rc["n_prompts_skipped"], **extra),
        "kendall_mean": _figure("kendall_tau_b_per_prompt_mean", judges, rc["kendall_mean"], rc["n_prompts"],
                                boot.sums(per.select("prompt_id", "tau", "one"), _ratio("tau", "one")),
                                n_prompts_skipped=rc["n_prompts_skipped"], **extra),
        "spearman_pooled": _figure("spearman_pooled", judges, rc["spearman_pooled"], rc["n_pooled"], **extra),
        "kendall_pooled": _figure("kendall_tau_b_pooled", judges, rc["kendall_pooled"], rc["n_pooled"], **extra)}


def _scores(d: _Data, boot: _Boot) -> dict[str, Any]:
    ratings = _human_ratings(d)
    if ratings.height == 0:
        return _unavailable("no human ratings")
    methods = _mapped(d, "compared_with", [HumanMethod.RATING])
    scores = _score_rows(d, methods)
    if scores.height == 0:
        return _unavailable("no model scores of a method compared with human ratings")
    human = rating_consensus(ratings).select("prompt_id", response_id=pl.col("unit").cast(pl.Int64),
                                             human="consensus")
    rows = []
    for (judge, method), g in scores.group_by("judge", "method", maintain_order=True):
        f = g.join(human, on=["prompt_id", "response_id"], how="inner").select("prompt_id", "score", "human")
        if f.height == 0:
            rows.append({"judge": judge, "method": method, "available": False,
                         "reason": "no response with both a score and a human rating"})
            continue
        rows.append({"judge": judge, "method": method, "available": True, "n_responses": f.height,
                     **_rank_figures(f, [judge, MEAN_RATING], boot, method=method)})
    rows.sort(key=lambda r: (r["method"], r["judge"]))
    # ceiling: each human's ratings against the mean of the others, per prompt, then averaged over humans
    loo = rating_consensus(ratings, leave_one_out=True).filter(pl.col("consensus").is_not_null())
    ceiling = []
    for h in [] if d.main_only else sorted(loo["judge"].unique().to_list()):
        f = loo.filter(pl.col("judge") == h).select("prompt_id", score="value", human="consensus")
        ceiling.append({"judge": h, **_rank_figures(f, [h, LOO_MEAN], boot)})
    means = [c["spearman_mean"]["value"] for c in ceiling if c["spearman_mean"]["value"] is not None]
    ceiling_mean = _figure("spearman_per_prompt_mean", [HUMANS, LOO_MEAN], float(np.mean(means)) if means else None,
                           len(means), aggregate="mean over humans")
    return {"available": True, "methods": rows, "human_ceiling": ceiling, "human_ceiling_mean": ceiling_mean}
