"""The report's `bias` section: length bias of humans' and model judges' pairwise preferences (the slope and
its curve), each model judge's position bias (the order-swap figure of the `pairwise` section) beside it,
and self-preference where the study holds several generators (`storage.analysis.bias`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from storage.analysis.bias import length_bias, length_bias_curve, self_preference_pairs, self_preference_scores
from storage.analysis.consensus import rating_consensus
from storage.analysis.report.figures import HUMANS, LEVEL, _unavailable
from storage.analysis.report.loading import _Data, _mapped
from storage.analysis.report.verdicts import UNKNOWN_MODEL, _generators, _verdicts
from storage.analysis.report.votes import _human_ratings, _score_rows
from storage.models import HumanMethod

CURVE_X = [round(x, 2) for x in np.linspace(-0.8, 0.8, 17)]


def _length_row(judge: str, method: str | None, kind: str, pairs: pl.DataFrame) -> dict[str, Any]:
    # An empty answer has no length to compare: its pairs would sit at x = ±1 and fold "answered nothing"
    # into "longer"; they are left out, and counted so a reader sees how many (real sets hold such pairs).
    has_length = (pl.col("len_a") > 0) & (pl.col("len_b") > 0)
    n_empty = pairs.height - int(pairs.select(has_length.fill_null(False).sum()).item())
    pairs = pairs.filter(has_length.fill_null(False))
    base: dict[str, Any] = {"judge": judge, "method": method, "kind": kind, "n": pairs.height, "n_empty": n_empty}
    if n_empty:
        base["note"] = f"{n_empty} verdict(s) on a pair with an empty response left out"
    try:
        fit = length_bias(pairs, level=LEVEL)
    except ValueError as e:
        return {**base, "available": False, "reason": str(e)}
    curve = length_bias_curve(fit, CURVE_X)
    return {**base, "available": True, "slope": fit["slope"], "slope_se": fit["slope_se"],
            "slope_ci": [fit["slope_low"], fit["slope_high"]], "intercept": fit["intercept"],
            "intercept_se": fit["intercept_se"], "n_ties": fit["n_ties"], "curve": curve}


def _position(rep: dict[str, Any], judge: str) -> dict[str, Any] | None:
    pw = rep.get("pairwise", {})
    row = next((r for r in pw.get("order_swap", []) if r["judge"] == judge), None) if pw.get("available") else None
    return row["first_position_rate"] if row else None


def _self_preference(d: _Data, v: pl.DataFrame, gen: pl.DataFrame) -> list[dict[str, Any]]:
    models = set(gen["model"].unique().to_list()) - {UNKNOWN_MODEL}
    judges = sorted(set(d.model["judge"].unique().to_list()) & models)
    out: list[dict[str, Any]] = []
    if not judges:
        return out
    g = gen.select("response_id", "model")
    # pairwise: each verdict oriented lower id first, the humans' plurality result per pair (unique mode)
    lo, hi = pl.min_horizontal("first", "second"), pl.max_horizontal("first", "second")
    flip = pl.col("first") > pl.col("second")
    pw = v.filter(pl.col("kind") == "pairwise").select(
        "source", "judge", "prompt_id", lo=lo, hi=hi,
        result=pl.when(flip & (pl.col("result") != "tie"))
        .then(pl.when(pl.col("result") == "a").then(pl.lit("b")).otherwise(pl.lit("a"))).otherwise("result"))
    counts = pw.filter(pl.col("source") == "human").group_by("prompt_id", "lo", "hi", "result").len()
    human = (counts.with_columns(top=pl.col("len").max().over("prompt_id", "lo", "hi"))
             .filter(pl.col("len") == pl.col("top"))
             .filter(pl.len().over("prompt_id", "lo", "hi") == 1)
             .select("prompt_id", "lo", "hi", human_result="result"))
    ratings = _human_ratings(d)
    human_scores = (rating_consensus(ratings).select(response_id=pl.col("unit").cast(pl.Int64), human_score="consensus")
                    if ratings.height else None)
    scores = _score_rows(d, _mapped(d, "compared_with", [HumanMethod.RATING]))
    for judge in judges:
        pairs = (pw.filter((pl.col("source") == "model") & (pl.col("judge") == judge))
                 .join(human, on=["prompt_id", "lo", "hi"])
                 .join(g.rename({"response_id": "lo", "model": "generator_a"}), on="lo")
                 .join(g.rename({"response_id": "hi", "model": "generator_b"}), on="hi")
                 .select("prompt_id", "generator_a", "generator_b", judge_result="result", human_result="human_result"))
        try:
            out.append({"judge": judge, "method": str(HumanMethod.PAIRWISE), "available": True,
                        **self_preference_pairs(pairs, judge, level=LEVEL)})
        except ValueError as e:
            out.append({"judge": judge, "method": str(HumanMethod.PAIRWISE), "available": False, "reason": str(e)})
        if human_scores is None:
            continue
        for (j, method), s in scores.filter(pl.col("judge") == judge).group_by("judge", "method",
                                                                                maintain_order=True):
            f = s.join(human_scores, on="response_id").join(g, on="response_id").select(
                "prompt_id", generator="model", judge_score="score", human_score="human_score")
            try:
                out.append({"judge": judge, "method": method, "available": True,
                            **self_preference_scores(f, judge, level=LEVEL)})
            except ValueError as e:
                out.append({"judge": judge, "method": method, "available": False, "reason": str(e)})
    return out


def _bias(d: _Data, rep: dict[str, Any]) -> dict[str, Any]:
    v = _verdicts(d)
    if v.height == 0:
        return _unavailable("no pairwise verdicts or best-of-N picks")
    gen = _generators(d)
    ln = gen.select("response_id", "length")
    pairs = (v.join(ln.rename({"response_id": "first", "length": "len_a"}), on="first")
             .join(ln.rename({"response_id": "second", "length": "len_b"}), on="second"))
    rows = []
    for kind in ("pairwise", "best pick"):
        h = pairs.filter((pl.col("source") == "human") & (pl.col("kind") == kind))
        if h.height:
            rows.append(_length_row(HUMANS, None, kind, h.select("len_a", "len_b", "result")))
    models = pairs.filter(pl.col("source") == "model")
    for (judge, method, kind), g in models.group_by("judge", "method", "kind", maintain_order=True):
        row = _length_row(judge, method, kind, g.select("len_a", "len_b", "result"))
        if kind == "pairwise":
            row["first_position_rate"] = _position(rep, judge)
        rows.append(row)
    rows.sort(key=lambda r: (r["judge"] != HUMANS, r["kind"], r["method"] or "", r["judge"]))
    n_models = gen.filter(pl.col("model") != UNKNOWN_MODEL)["model"].n_unique()
    out: dict[str, Any] = {
        "available": True, "level": LEVEL,
        "length": ("x = (len_A - len_B) / (len_A + len_B), lengths in characters of the response text; A is the "
                   "response shown first (pairwise) or the lower response id (best picks, each a win over every "
                   "other response shown); P(prefers A) = 1 / (1 + exp(-(intercept + slope x))), ties half"),
        "length_bias": rows}
    if n_models >= 2:
        out["self_preference"] = _self_preference(d, v, gen)
        if not out["self_preference"]:
            out["self_preference_note"] = ("no model judge is one of the study's generator models: no "
                                           "self-preference")
    else:
        out["self_preference"] = []
        out["self_preference_note"] = "one generator model: no self-preference"
    return out
