"""The report's `judges` section: every model judge beside every generator (the judge × generator table:
agreement with humans and mean score per generator, the self-judging diagonal marked) and the peer review
of judges (PRE: exam, qualification, the weighted vote as judge `pre`).

Agreement is never restated here: a subset of the study (one generator's responses; the exam prompts; the
held-out prompts) is put through the sections that answer each method's human question and the
`headline` row that reads them, so a cell is the headline's `main` figure on that subset."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import polars as pl

from storage.analysis.judges import (
    DEFAULT_THRESHOLD,
    EXAM_SHARE,
    PRE_JUDGE,
    exam_prompts,
    family,
    qualified,
    weighted_scores,
    weighted_verdicts,
)
from storage.analysis.pairwise import combine_orders
from storage.analysis.report.best_of_n_section import _best_of_n
from storage.analysis.report.calibration_section import _calibration
from storage.analysis.report.checklist_section import _checklist
from storage.analysis.report.figures import METHOD_OF, _figure, _unavailable
from storage.analysis.report.headline import _headline
from storage.analysis.report.intervals import _Boot, _ratio
from storage.analysis.report.loading import MethodInfo, _Data, _load, _mapped
from storage.analysis.report.pairwise_section import _pairwise
from storage.analysis.report.ratings_section import _scores
from storage.analysis.report.verdicts import _NOT_CANDIDATES, UNKNOWN_MODEL, _generators
from storage.analysis.report.votes import _pairwise_frames, _score_rows
from storage.db import Database
from storage.models import HumanMethod

_SECTIONS: tuple[tuple[str, Callable[[_Data, _Boot], dict[str, Any]]], ...] = (
    ("pairwise", _pairwise), ("scores", _scores), ("best_of_n", _best_of_n), ("calibration", _calibration),
    ("checklist", _checklist))
# The human question each of those sections answers (the headline reads a method's row from it).
_QUESTION_OF = {"pairwise": HumanMethod.PAIRWISE, "scores": HumanMethod.RATING, "best_of_n": HumanMethod.BEST,
                "calibration": HumanMethod.CORRECT, "checklist": "checklist"}
# What PRE can vote on: a preferred response (pairwise) or a number per response (the method's score column).
_PRE_QUESTIONS = (HumanMethod.PAIRWISE, HumanMethod.RATING, HumanMethod.CORRECT)

CELL_RULE = ("a cell counts the labels on one generator's responses only: a response's rows when the response "
             "is the generator's, a pairwise unit when both responses are, a best-of-N pick (human or selector) "
             "when every candidate response of the prompt is; agreement = the headline's main figure on that "
             "subset (no interval); mean score = the mean of the method's response-level score over the "
             "generator's responses, win rate = the share of the judge's combined pairwise verdicts between a "
             "response of the generator and one of another generator that the generator's response won (ties "
             "half), both with the report's bootstrap interval over prompts")
SELF_RULE = ("self: the judge's model id equals the generator's; same family: both descend from one root model "
             "in the model table (parent lineage)")


def _agreement(d: _Data) -> dict[tuple[str, str], dict[str, Any]]:
    """The headline rows of a subset of the study, by (judge, method): no intervals (a cell is a look, the
    overall figure carries the interval). Only the sections the subset's methods are compared in are built
    (the headline reads no other): an exam holds one method."""
    boot = _Boot(0, 0)
    rep: dict[str, Any] = {}
    questions = {(d.mapping.get(METHOD_OF.get(m, m)) or {}).get("compared_with")
                 for m in d.model["method"].unique().to_list()}
    for key, fn in _SECTIONS:
        if _QUESTION_OF[key] not in questions:
            continue
        try:
            rep[key] = fn(d, boot)
        except ValueError as e:  # e.g. a subset without two values: the cell says why
            rep[key] = _unavailable(str(e))
    head = _headline(d, rep)
    return {(r["judge"], r["method"]): r for r in head.get("rows", [])}


def _subset(d: _Data, human: pl.DataFrame, model: pl.DataFrame) -> _Data:
    return dataclasses.replace(d, human=human, model=model, cache={}, main_only=True)


def _best_methods(d: _Data) -> list[str]:
    # str(): polars reads a list holding an enum member as an Enum dtype, which the selector ids are not in
    return [str(HumanMethod.BEST), *_mapped(d, "score_column", ["response_id"])]


def _of_generator(d: _Data, frame: pl.DataFrame, ids: list[int], pure: list[int]) -> pl.DataFrame:
    """The rows of `frame` about generator responses `ids` only (CELL_RULE); `pure` = prompts whose every
    candidate response is the generator's."""
    in_g = ((pl.col("response_id").is_null() | pl.col("response_id").is_in(ids))
            & (pl.col("response_b_id").is_null() | pl.col("response_b_id").is_in(ids)))
    on_pure = pl.col("prompt_id").is_in(pure)
    keep = (pl.when(pl.col("method").is_in(_best_methods(d))).then(on_pure)
            .otherwise(in_g & (pl.col("response_id").is_not_null() | on_pure)))
    return frame.filter(keep)


def _parents(db: Database) -> dict[str, str | None]:
    return dict(db.fetchall("SELECT model_id, parent_model_id FROM model"))


def _mean_scores(d: _Data, boot: _Boot, gen: pl.DataFrame) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(judge, method, generator) → figure `mean_score` (score methods) or `win_rate` (pairwise)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    g = gen.select("response_id", "model")
    methods = [m for m, info in d.mapping.items() if info is not None and m not in METHOD_OF
               and info["score_column"] in ("value", "prob")]
    scores = _score_rows(d, methods).join(g, on="response_id")
    for (judge, method, model), s in scores.group_by("judge", "method", "model", maintain_order=True):
        pp = s.group_by("prompt_id").agg(total=pl.col("score").sum(), n=pl.len().cast(pl.Float64))
        out[(judge, method, model)] = _figure("mean_score", [judge, model], s["score"].mean(), s.height,
                                              boot.sums(pp, _ratio("total", "n")), method=method)
    _, orders = _pairwise_frames(d)
    if orders is None:
        return out
    comb = combine_orders(orders).with_columns(
        lo=pl.col("unit").str.split("-").list.get(0).cast(pl.Int64),
        hi=pl.col("unit").str.split("-").list.get(1).cast(pl.Int64))
    comb = (comb.join(g.rename({"response_id": "lo", "model": "gen_lo"}), on="lo")
            .join(g.rename({"response_id": "hi", "model": "gen_hi"}), on="hi")
            .filter(pl.col("gen_lo") != pl.col("gen_hi")))
    for side, other in (("lo", "hi"), ("hi", "lo")):
        won = "first" if side == "lo" else "second"
        comb = comb.with_columns(pl.when(pl.col("label") == "tie").then(0.5)
                                 .when(pl.col("label") == won).then(1.0).otherwise(0.0).alias(f"score_{side}"))
    rows = pl.concat([comb.select("prompt_id", "judge", model=f"gen_{s}", score=f"score_{s}") for s in ("lo", "hi")])
    for (judge, model), s in rows.group_by("judge", "model", maintain_order=True):
        pp = s.group_by("prompt_id").agg(total=pl.col("score").sum(), n=pl.len().cast(pl.Float64))
        out[(judge, str(HumanMethod.PAIRWISE), model)] = _figure(
            "win_rate", [judge, model], s["score"].mean(), s.height, boot.sums(pp, _ratio("total", "n")),
            method=str(HumanMethod.PAIRWISE))
    return out


def _table(db: Database, d: _Data, rep: dict[str, Any], boot: _Boot) -> dict[str, Any]:
    gen = _generators(d)
    parents = _parents(db)
    known = gen.filter(pl.col("model") != UNKNOWN_MODEL)
    models = sorted(known["model"].unique().to_list())
    generators = [{"generator": m, "family": family(parents, m),
                   "n_responses": known.filter(pl.col("model") == m).height} for m in models]
    cand = d.responses.filter(~pl.col("origin").is_in(_NOT_CANDIDATES)).join(gen.select("response_id", "model"),
                                                                            on="response_id")
    by_gen: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for m in models:
        ids = known.filter(pl.col("model") == m)["response_id"].to_list()
        pure = (cand.group_by("prompt_id").agg(ok=(pl.col("model") == m).all()).filter(pl.col("ok"))
                ["prompt_id"].to_list())
        by_gen[m] = _agreement(_subset(d, _of_generator(d, d.human, ids, pure), _of_generator(d, d.model, ids, pure)))
    means = _mean_scores(d, boot, gen)
    head = rep.get("headline", {})
    rows = []
    for h in head.get("rows", []) if head.get("available") else []:
        judge, method = h["judge"], h["method"]
        fam = family(parents, judge) if judge in parents else None
        cells = []
        for g in generators:
            a = by_gen[g["generator"]].get((judge, method))
            cells.append({"generator": g["generator"], "self": judge == g["generator"],
                          "same_family": fam is not None and fam == g["family"],
                          "agreement": a["main"] if a else None,
                          "reason": None if a and a["main"] else
                          (a or {}).get("reason") or "no verdict of this judge on this generator's responses alone",
                          "mean_score": means.get((judge, method, g["generator"]))})
        rows.append({"judge": judge, "method": method, "family": fam, "compared_with": h["compared_with"],
                     "overall": h["main"], "cells": cells})
    return {"generators": generators, "rows": rows}


def _pre_rows(d: _Data, method: str, weights: dict[str, float], name: str) -> pl.DataFrame:
    """PRE's verdicts as model rows of judge `name`, shaped as the report reads a judge's rows: pairwise as
    both per-order rows naming the same winner (so `combine_orders` gives the vote back), scores as
    response-level rows in the method's score column."""
    schema = d.model.schema
    base = {"judge_kind": "model", "judge": name, "method": method, "status": "ok", "stage": "blind"}
    if d.mapping[method]["compared_with"] == HumanMethod.PAIRWISE:
        _, orders = _pairwise_frames(d)
        if orders is None:
            raise ValueError("no per-order pairwise verdicts (variant order:<first>-<second>) to vote with")
        comb = combine_orders(orders)
        v = weighted_verdicts(comb.select("prompt_id", "unit", "judge", "label"), weights)
        lo = v["unit"].str.split("-").list.get(0).cast(pl.Int64)
        hi = v["unit"].str.split("-").list.get(1).cast(pl.Int64)
        winner = (pl.when(v["label"] == "first").then(lo.cast(pl.String))
                  .when(v["label"] == "second").then(hi.cast(pl.String)).otherwise(pl.lit("tie")))
        w = v.select("prompt_id", lo=lo, hi=hi, label=winner)
        parts = [w.select("prompt_id", response_id="lo", response_b_id="hi", label="label",
                          variant=pl.format("order:{}-{}", "lo", "hi")),
                 w.select("prompt_id", response_id="hi", response_b_id="lo", label="label",
                          variant=pl.format("order:{}-{}", "hi", "lo"))]
        rows = pl.concat(parts)
    else:
        col = d.mapping[method]["score_column"]
        s = weighted_scores(_score_rows(d, [method]).select("prompt_id", "response_id", "judge", "score"), weights)
        rows = s.select("prompt_id", "response_id", **{col: "score"})
    rows = rows.with_columns(**{k: pl.lit(v) for k, v in base.items()})
    return pl.DataFrame([rows.get_column(c).cast(t) if c in rows.columns else pl.Series(c, [None] * rows.height,
                                                                                          dtype=t)
                         for c, t in schema.items()])


def _pre_method(d: _Data, method: str, seed: int, threshold: float, name: str) -> dict[str, Any]:
    q = d.mapping[method]["compared_with"]
    out: dict[str, Any] = {"method": method, "compared_with": q}
    labelled = d.human.filter(pl.col("method") == q)["prompt_id"].unique().to_list()
    exam = exam_prompts(labelled, seed)
    held = sorted(set(labelled) - exam)
    out.update(n_labelled_prompts=len(labelled), n_exam_prompts=len(exam), n_heldout_prompts=len(held),
               exam_prompt_ids=sorted(exam))
    if not exam:
        return {**out, "available": False, "reason": f"{len(labelled)} prompt(s) with human {q} labels: an exam "
                                                     "needs two or more"}
    mine = d.model.filter(pl.col("method") == method)
    in_exam = pl.col("prompt_id").is_in(sorted(exam))
    scores = _agreement(_subset(d, d.human.filter(in_exam), mine.filter(in_exam)))
    judges = sorted(mine["judge"].unique().to_list())
    exam_rows = [{"judge": j, "score": (scores.get((j, method)) or {}).get("main"),
                  "reason": (scores.get((j, method)) or {}).get("reason")} for j in judges]
    weights = qualified({r["judge"]: (r["score"] or {}).get("value") for r in exam_rows}, threshold)
    for r in exam_rows:
        r["qualified"] = r["judge"] in weights
        r["weight"] = weights.get(r["judge"])
    out.update(exam=exam_rows, n_qualified=len(weights))
    if not weights:
        return {**out, "available": False, "reason": f"no judge scored {threshold} or more on the exam"}
    pre = _pre_rows(d, method, weights, name)
    in_held = pl.col("prompt_id").is_in(held)
    held_rows = _agreement(_subset(d, d.human.filter(in_held), pl.concat([mine, pre]).filter(in_held)))
    out["heldout"] = [{"judge": j, "main": (held_rows.get((j, method)) or {}).get("main"),
                       "reason": (held_rows.get((j, method)) or {}).get("reason")} for j in [name, *judges]]
    out["n_pre_verdicts"] = pre.height // 2 if q == HumanMethod.PAIRWISE else pre.height
    return {**out, "available": True}


def _pre(d: _Data, seed: int, threshold: float) -> dict[str, Any]:
    name = PRE_JUDGE if PRE_JUDGE not in set(d.model["judge"].to_list()) else f"{PRE_JUDGE} (weighted vote)"
    methods = [m for m in _mapped(d, "compared_with", [str(q) for q in _PRE_QUESTIONS])
               if d.mapping[m]["compared_with"] == HumanMethod.PAIRWISE or
               d.mapping[m]["score_column"] in ("value", "prob")]
    methods = [m for m in sorted(methods) if d.model.filter(pl.col("method") == m).height]
    return {"judge": name, "exam_share": EXAM_SHARE, "seed": seed, "threshold": threshold,
            "exam": ("the labelled prompts of the method's human question sorted by md5('pre:<seed>:<prompt id>'), "
                     "the first round(share · n) of them (at least 1, at most n − 1); exam score = the headline's "
                     "main figure of the judge on the exam prompts"),
            "vote": ("judges with an exam score ≥ threshold vote with their exam score as weight: pairwise, the "
                     "class (first / second / tie) of a unit with the largest summed weight of the judges' "
                     "combined verdicts, a shared largest sum being a tie; scores, Σ weight · score / Σ weight "
                     "over the qualified judges that scored the response"),
            "methods": [_guarded(d, m, seed, threshold, name) for m in methods]}


def _guarded(d: _Data, method: str, seed: int, threshold: float, name: str) -> dict[str, Any]:
    """One method's PRE, or why not: a method that cannot be voted on must not hide the others."""
    try:
        return _pre_method(d, method, seed, threshold, name)
    except Exception as e:  # noqa: BLE001 - e.g. pairwise verdicts stored without their per-order rows
        return {"method": method, "available": False, "reason": f"could not compute: {type(e).__name__}: {e}"}


def _judges(db: Database, d: _Data, rep: dict[str, Any], n_boot: int, seed: int,
            pre_seed: int | None = None, pre_threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    if d.model.height == 0:
        return _unavailable("no model judgments")
    boot = _Boot(n_boot, seed)
    table = _table(db, d, rep, boot)
    failed = boot.run()
    if failed:
        return _unavailable(f"could not compute: {next(iter(failed.values()))}")
    return {"available": True, "cell_rule": CELL_RULE, "self_rule": SELF_RULE,
            "self_preference": "bias.self_preference (the judge's own-minus-other gap against the humans')",
            **table, "pre": _pre(d, d.study.id if pre_seed is None else pre_seed, pre_threshold)}


def pre_exam(db: Database, study_id: int, method: str, method_info: MethodInfo, *, seed: int | None = None,
             threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The PRE exam of one method as the report computes it (blind human labels; `seed` defaults to the study
    id, as in the report): the `judges.pre.methods` entry, plus `weights` (qualified judge → weight) and
    `judge` (PRE's name). For the export's `--source pre:METHOD`, which votes with these weights."""
    d = _load(db, study_id, "blind", method_info)
    info = d.mapping.get(method)
    if info is None or d.model.filter(pl.col("method") == method).height == 0:
        raise ValueError(f"no current model verdicts of a known method {method!r} in this study")
    if info["compared_with"] not in _PRE_QUESTIONS or (info["compared_with"] != HumanMethod.PAIRWISE
                                                       and info["score_column"] not in ("value", "prob")):
        raise ValueError(f"PRE votes on pairwise verdicts or on value/prob scores compared with human ratings or "
                         f"correct labels; {method!r} ({info['compared_with']}, {info['score_column']}) is neither")
    name = PRE_JUDGE if PRE_JUDGE not in set(d.model["judge"].to_list()) else f"{PRE_JUDGE} (weighted vote)"
    out = _pre_method(d, method, study_id if seed is None else seed, threshold, name)
    weights = {r["judge"]: r["weight"] for r in out.get("exam", []) if r["qualified"]}
    return {**out, "weights": weights, "judge": name}
