"""The report's `rankings.responses` (opt-in): Bradley–Terry scores of the responses of each prompt, from the
humans' verdicts (pooled) and from each model judge's, and per judge how its per-prompt ranking agrees with
the humans' (Kendall τ-b and Spearman ρ, averaged over prompts). One fit per (prompt, judge): on a study of
10⁵ prompts that is 10⁵ small fits, hence opt-in (`build_report(..., response_rankings=True)`)."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from storage.analysis.bradley_terry import ranking_agreement
from storage.analysis.report.figures import HUMANS, MAX_LISTED_UNITS, _unavailable
from storage.analysis.report.loading import _Data
from storage.analysis.report.rankings_section import _fit
from storage.analysis.report.verdicts import _verdicts

LEFT_OUT = ("left out: opt in with critlab agreement --response-rankings, the Agreement tab's 'Rankings of each "
            "prompt's responses' box or build_report(..., response_rankings=True)")


def _scores(fit: dict[str, Any]) -> pl.DataFrame:
    return fit["scores"].select("item", "score", "low", "high")


def _mean(values: list[float]) -> float | None:
    ok = [v for v in values if v is not None and not math.isnan(v)]
    return sum(ok) / len(ok) if ok else None


def _response_rankings(d: _Data) -> dict[str, Any]:
    v = _verdicts(d)
    if v.height == 0:
        return _unavailable("no pairwise verdicts or best-of-N picks")
    counts = (v.with_columns(judge=pl.when(pl.col("source") == "human").then(pl.lit(HUMANS))
                             .otherwise(pl.col("judge")))
              .group_by("prompt_id", "judge", a="first", b="second", result="result").agg(n=pl.len().cast(pl.Int64)))
    human_prompts = counts.filter(pl.col("judge") == HUMANS)["prompt_id"].unique().sort().to_list()
    if not human_prompts:
        return _unavailable("no human verdict between two responses of a prompt")
    by_prompt = counts.filter(pl.col("prompt_id").is_in(human_prompts)).partition_by("prompt_id", as_dict=True)
    external = dict(d.prompts.select("prompt_id", "external_id").iter_rows())
    position = dict(d.prompts.select("prompt_id", "position").iter_rows())
    agreement: dict[str, dict[str, list[float]]] = {}
    listed = []
    for pid in sorted(human_prompts, key=lambda p: (position.get(p, 0), p)):
        c = by_prompt[(pid,)]
        human = _fit(c.filter(pl.col("judge") == HUMANS))
        entry: dict[str, Any] = {"prompt_id": pid, "external_id": external.get(pid), "humans": None, "judges": []}
        if human["available"]:
            entry["humans"] = _scores(human)
        for judge in sorted(set(c["judge"].to_list()) - {HUMANS}):
            fit = _fit(c.filter(pl.col("judge") == judge))
            if not fit["available"]:
                continue
            row = {"judge": judge, "scores": _scores(fit)}
            if human["available"]:
                row["vs_humans"] = ranking_agreement(human["scores"], fit["scores"])
                a = agreement.setdefault(judge, {"kendall_tau_b": [], "spearman": []})
                for k in a:
                    a[k].append(row["vs_humans"][k])
            entry["judges"].append(row)
        if len(listed) < MAX_LISTED_UNITS:
            listed.append(entry)
    return {"available": True, "n_prompts": len(human_prompts), "n_listed": len(listed),
            "fit": ("one Bradley–Terry fit per prompt and judge over the verdicts between its responses (the "
                    "humans' pooled; the verdicts as in `rankings`), with 0.5 virtual wins each way where the "
                    "plain maximum-likelihood scores do not exist; Wald intervals"),
            "judges": [{"judge": j, "n_prompts": sum(not math.isnan(x) for x in a["kendall_tau_b"]),
                        "kendall_tau_b_mean": _mean(a["kendall_tau_b"]), "spearman_mean": _mean(a["spearman"])}
                       for j, a in sorted(agreement.items())],
            "prompts": listed}
