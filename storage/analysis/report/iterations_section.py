"""The report's `iterations` section (Self-Rewarding, Yuan et al. 2024; CREAM, Wang et al. 2024): for each model
and its parent (the lineage of `--parent-model`, m027) that both generated responses in the study, how often the
newer model's responses win over the older one's, by the humans (with the PPI++ estimate that adds each model
judge's verdicts on the unlabelled pairs) and by each model judge, and how consistently the two iterations,
as judges, rank the same responses (Kendall τ-b per prompt, `storage.analysis.ranking_consistency`).

A unit is a pair (child response, parent response) of one prompt. Its human value y is the mean of the humans'
verdicts between the two (pairwise votes and best picks, `verdicts._verdicts`: child wins 1, tie ½, parent
wins 0); a judge's prediction f is the mean of its pairwise verdicts on the pair (every order), its selector
pick (1 when it picked the child's response, 0 the parent's), or, for a method with a score, 1 / ½ / 0 as it scores the child's response above / equal to / below the parent's."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.bootstrap import bootstrap_ci_from_sums
from storage.analysis.ranking_consistency import ranking_consistency
from storage.analysis.report.figures import LEVEL, _est, _f, _unavailable
from storage.analysis.report.loading import _Data, _sql
from storage.analysis.report.ppi_section import _row, _validity
from storage.analysis.report.verdicts import _NOT_CANDIDATES, _verdicts
from storage.analysis.report.votes import _score_rows
from storage.db import Database
from storage.model_registry import get_model

WIN = ("a unit is a pair (child response, parent response) of one prompt; y = the mean human verdict on it "
       "(child wins 1, tie 0.5, parent wins 0; pairwise votes and best picks); a judge's f = the mean of its "
       "pairwise verdicts on the pair (every order) or its selector pick, or 1 / 0.5 / 0 as its score of the child's response is "
       "above / equal to / below the parent's")
_PAIR = ["prompt_id", "child_id", "parent_id"]


def _value(result: pl.Expr, child_first: pl.Expr) -> pl.Expr:
    """A verdict (a: first preferred, b: second, tie) as the child's win: 1, ½ or 0."""
    return (pl.when(result == "tie").then(0.5)
            .when((result == "a") == child_first).then(1.0).otherwise(0.0))


def _oriented(v: pl.DataFrame, side: pl.DataFrame) -> pl.DataFrame:
    """Verdicts between a child and a parent response: source, judge, method, kind, prompt_id, child_id,
    parent_id, y."""
    s = side.select("response_id", "side")
    v = (v.join(s.rename({"response_id": "first", "side": "side_a"}), on="first")
         .join(s.rename({"response_id": "second", "side": "side_b"}), on="second")
         .filter(pl.col("side_a") != pl.col("side_b")))
    child_first = pl.col("side_a") == "child"
    return v.select("source", "judge", "method", "kind", "prompt_id",
                    child_id=pl.when(child_first).then("first").otherwise("second"),
                    parent_id=pl.when(child_first).then("second").otherwise("first"),
                    y=_value(pl.col("result"), child_first))


def _mean_ci(per_prompt: pl.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean over units with a percentile bootstrap over prompts; per_prompt: prompt_id, total, n."""
    est = float(per_prompt["total"].sum() / per_prompt["n"].sum()) if per_prompt.height else None
    out: dict[str, Any] = {"estimate": est, "ci": None}
    if n_boot > 0 and per_prompt.height:
        ci = bootstrap_ci_from_sums(per_prompt, "prompt_id", lambda t: t["total"] / t["n"], n=n_boot, seed=seed,
                                    level=LEVEL)
        out["ci"] = [ci["low"], ci["high"]]
    return out


def _per_prompt(units: pl.DataFrame, col: str) -> pl.DataFrame:
    return units.group_by("prompt_id").agg(total=pl.col(col).sum(), n=pl.len().cast(pl.Float64))


def _predictions(d: _Data, verdicts: pl.DataFrame, side: pl.DataFrame) -> pl.DataFrame:
    """judge, method, kind, prompt_id, child_id, parent_id, f: every model judge's prediction per unit."""
    parts = []
    mv = verdicts.filter(pl.col("source") == "model")
    if mv.height:  # pairwise verdicts (every order) and a selector's picks
        parts.append(mv.group_by("judge", "method", "kind", *_PAIR).agg(f=pl.col("y").mean()))
    scorers = [m for m, info in d.mapping.items() if info is not None and info.get("score_column") in ("value", "prob")]
    s = _score_rows(d, scorers).join(side.select("response_id", "side"), on="response_id")
    if s.height:
        c = s.filter(pl.col("side") == "child").select("judge", "method", "prompt_id", child_id="response_id",
                                                       sc="score")
        p = s.filter(pl.col("side") == "parent").select("judge", "method", "prompt_id", parent_id="response_id",
                                                        sp="score")
        parts.append(c.join(p, on=["judge", "method", "prompt_id"]).select(
            "judge", "method", *_PAIR, f=pl.when(pl.col("sc") > pl.col("sp")).then(1.0)
            .when(pl.col("sc") == pl.col("sp")).then(0.5).otherwise(0.0), kind=pl.lit("scores")))
    cols = ["judge", "method", "kind", *_PAIR, "f"]
    return pl.concat([x.select(cols) for x in parts]) if parts else pl.DataFrame(
        schema={"judge": pl.String, "method": pl.String, "kind": pl.String, "prompt_id": pl.Int64,
                "child_id": pl.Int64, "parent_id": pl.Int64, "f": pl.Float64})


def _consistency(d: _Data, parent: str, child: str, n_boot: int, seed: int) -> list[dict[str, Any]]:
    scorers = [m for m, info in d.mapping.items() if info is not None and info.get("score_column") in ("value", "prob")]
    s = _score_rows(d, scorers).filter(pl.col("judge").is_in([parent, child]))
    out = []
    for (method,), g in s.group_by("method", maintain_order=True):
        if g["judge"].n_unique() < 2:
            continue
        rc = ranking_consistency(g.select("prompt_id", "response_id", "judge", "score"), parent, child,
                                 n_boot=max(n_boot, 1), seed=seed, level=LEVEL)
        m = rc["mean_tau_b"]
        out.append({"method": method, "judges": rc["judges"], "n_prompts": rc["n_prompts"], "skipped": rc["skipped"],
                    "mean_tau_b": None if m is None else
                    {"estimate": m["estimate"], "ci": [m["low"], m["high"]] if n_boot > 0 else None}})
    return sorted(out, key=lambda r: r["method"])


def _in_pairs(row: dict[str, Any]) -> dict[str, Any]:
    """A `ppi` row whose units are pairs: its reason says so."""
    if row.get("reason"):
        row["reason"] = row["reason"].replace("response(s)", "pair(s)").replace("every response", "every pair")
    return row


def _pair(d: _Data, db: Database, parent: str, child: str, cand: pl.DataFrame, validity: str, n_boot: int,
          seed: int) -> dict[str, Any]:
    side = cand.filter(pl.col("model").is_in([parent, child])).with_columns(
        side=pl.when(pl.col("model") == child).then(pl.lit("child")).otherwise(pl.lit("parent")))
    c = side.filter(pl.col("side") == "child").select("prompt_id", child_id="response_id")
    p = side.filter(pl.col("side") == "parent").select("prompt_id", parent_id="response_id")
    units = c.join(p, on="prompt_id")
    verdicts = _oriented(_verdicts(d), side)
    hv = verdicts.filter(pl.col("source") == "human")
    labelled = hv.group_by(_PAIR).agg(y=pl.col("y").mean())
    child_model = get_model(db, child)
    out: dict[str, Any] = {
        "parent": parent, "child": child, "iteration": child_model.iteration if child_model else None,
        "parent_runs": sorted(side.filter(pl.col("side") == "parent")["run_id"].drop_nulls().unique().to_list()),
        "child_runs": sorted(side.filter(pl.col("side") == "child")["run_id"].drop_nulls().unique().to_list()),
        "n_units": units.height, "n_prompts": units["prompt_id"].n_unique()}
    out["human"] = ({"n_verdicts": hv.height, "n_units": labelled.height, "n_prompts": labelled["prompt_id"].n_unique(),
                     "win_rate": _mean_ci(_per_prompt(labelled, "y"), n_boot, seed)} if labelled.height else
                    _unavailable("no human verdict between a child and a parent response"))
    judges = []
    preds = _predictions(d, verdicts, side)
    for (judge, method, kind), g in preds.group_by("judge", "method", "kind", maintain_order=True):
        pool = g.join(labelled, on=_PAIR, how="left").select("prompt_id", "child_id", "parent_id", "y", "f")
        judges.append({"judge": judge, "method": method, "kind": kind,
                       "role": "child" if judge == child else "parent" if judge == parent else "other",
                       "n_units": g.height, "win_rate": _mean_ci(_per_prompt(g, "f"), n_boot, seed),
                       "ppi": _in_pairs(_row(judge, method, "child_win", pool, validity, d.serving,
                                             prediction="the judge's verdict on the pair as the child's win "
                                                        "(1, 0.5, 0)"))})
    out["judges"] = sorted(judges, key=lambda r: (r["role"] != "child", r["role"] != "parent", r["judge"],
                                                  r["method"]))
    out["consistency"] = _consistency(d, parent, child, n_boot, seed)
    return out


def _iterations(db: Database, d: _Data, n_boot: int, seed: int) -> dict[str, Any]:
    lineage = _sql(db, "SELECT model_id AS child, parent_model_id AS parent FROM model "
                       "WHERE parent_model_id IS NOT NULL ORDER BY model_id", {})
    cand = (d.responses.filter(~pl.col("origin").is_in(_NOT_CANDIDATES) & pl.col("model_id").is_not_null())
            .select("response_id", "prompt_id", "run_id", model="model_id"))
    with_runs = set(cand.filter(pl.col("run_id").is_not_null())["model"].unique().to_list())
    links = [(r["parent"], r["child"]) for r in lineage.iter_rows(named=True)
             if r["parent"] in with_runs and r["child"] in with_runs]
    if not links:
        return _unavailable("no model in the study whose parent (--parent-model) also has a generation run in it")
    validity, note = _validity(d.serving)
    return {"available": True, "level": LEVEL, "validity": validity, "validity_note": note, "win": WIN,
            "consistency": "Kendall tau-b per prompt between the parent's and the child's scores of the same "
                           "responses (each score method both ran), mean over prompts",
            "pairs": [_pair(d, db, parent, child, cand, validity, n_boot, seed) for parent, child in links]}


def iteration_blocks(doc: Any, sec: dict[str, Any]) -> None:
    doc.p(f"Units: {sec['win']}. PPI validity: {sec['validity']}. {sec['validity_note']}.")
    for p in sec["pairs"]:
        doc.h(3, f"{p['parent']} → {p['child']} (iteration {p['iteration']})")
        h = p["human"]
        doc.p(f"{p['n_units']} child–parent pairs on {p['n_prompts']} prompts. Humans: "
              + (f"child win rate {_est(h['win_rate'])} from {h['n_verdicts']} verdicts on {h['n_units']} pairs."
                 if h.get("available", True) else f"not available: {h['reason']}."))
        if p["judges"]:
            doc.table(["judge", "role", "method", "pairs", "judge's win rate [95% CI]", "human only [95% CI]",
                       "PPI++ [95% CI]", "λ", "note"],
                      [[j["judge"], j["role"], j["method"], j["n_units"], _est(j["win_rate"]),
                        _est(j["ppi"].get("human_only")), _est(j["ppi"].get("ppi_plus")), _f(j["ppi"].get("lambda")),
                        j["ppi"].get("reason") or ""] for j in p["judges"]])
        if p["consistency"]:
            doc.table(["method", "judges", "prompts", "mean Kendall τ-b [95% CI]", "skipped"],
                      [[c["method"], " vs ".join(c["judges"]), c["n_prompts"], _est(c["mean_tau_b"]),
                        ", ".join(f"{k}: {v}" for k, v in c["skipped"].items()) or "–"] for c in p["consistency"]])
        else:
            doc.p("Ranking consistency: the two iterations did not both score responses with one method.")
