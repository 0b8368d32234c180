"""Frames the rankings and bias sections share: each response's generator (run and model) and every
pairwise verdict of humans and model judges, best-of-N picks included as wins over the other candidates."""

from __future__ import annotations

import polars as pl

from storage.analysis.pairwise import TIE_LABELS
from storage.analysis.report.loading import _Data, _mapped
from storage.models import HumanMethod

UNKNOWN_MODEL = "unknown model"
IMPORTED = "imported"
_NOT_CANDIDATES = ["revision", "aggregate"]  # responses written from others, never shown as a candidate
_VERDICT_SCHEMA = {"source": pl.String, "judge": pl.String, "method": pl.String, "kind": pl.String,
                   "prompt_id": pl.Int64, "first": pl.Int64, "second": pl.Int64, "result": pl.String}


def _generators(d: _Data) -> pl.DataFrame:
    """response_id, prompt_id, run ("run <id>", or "imported" for a response without a run), model (the
    response's model id, else its run's, else "unknown model"), length (characters of the text)."""
    if "generators" not in d.cache:
        r = d.responses
        d.cache["generators"] = r.select(
            "response_id", "prompt_id",
            run=pl.when(pl.col("run_id").is_not_null()).then(pl.format("run {}", pl.col("run_id")))
            .otherwise(pl.lit(IMPORTED)),
            model=pl.col("model_id").fill_null(UNKNOWN_MODEL), length="length")
    return d.cache["generators"]


def _result(label: pl.Expr, first: pl.Expr, second: pl.Expr) -> pl.Expr:
    lab = label.cast(pl.String)
    return (pl.when(lab.is_in(list(TIE_LABELS))).then(pl.lit("tie"))
            .when(lab == first.cast(pl.String)).then(pl.lit("a"))
            .when(lab == second.cast(pl.String)).then(pl.lit("b")).otherwise(pl.lit(None, dtype=pl.String)))


def _pairwise_rows(rows: pl.DataFrame, source: str) -> pl.DataFrame:
    ok = pl.col("response_id").is_not_null() & pl.col("response_b_id").is_not_null() & pl.col("label").is_not_null()
    p = rows.filter((pl.col("method") == HumanMethod.PAIRWISE) & ok)
    if source == "model":  # the per-order rows only: the stored combined row restates them
        p = p.filter(pl.col("variant").str.starts_with("order:"))
    return p.select(source=pl.lit(source), judge="judge", method="method", kind=pl.lit("pairwise"),
                    prompt_id="prompt_id", first="response_id", second="response_b_id",
                    result=_result(pl.col("label"), pl.col("response_id"), pl.col("response_b_id"))
                    ).drop_nulls("result")


def _pick_rows(picks: pl.DataFrame, source: str) -> pl.DataFrame:
    """picks: judge, method, prompt_id, pick, other (one row per other candidate) → verdicts oriented by
    response id (first = the lower id), so that the pick is not always shown first."""
    p = picks.filter(pl.col("other") != pl.col("pick"))
    lo, hi = pl.min_horizontal("pick", "other"), pl.max_horizontal("pick", "other")
    return p.select(source=pl.lit(source), judge="judge", method="method", kind=pl.lit("best pick"),
                    prompt_id="prompt_id", first=lo, second=hi,
                    result=pl.when(pl.col("pick") == lo).then(pl.lit("a")).otherwise(pl.lit("b")))


def _verdicts(d: _Data) -> pl.DataFrame:
    """Every pairwise verdict: ``source`` (human / model), ``judge``, ``method``, ``kind`` (pairwise / best
    pick), ``prompt_id``, ``first`` and ``second`` (response ids; for pairwise the one shown first and
    second), ``result`` (a: first preferred, b: second, tie). A human best-of-N pick counts as a win of the
    pick over each other response shown with it; a model selector's pick (score column response_id) over
    each other candidate response of the prompt (revisions and aggregates are not candidates)."""
    if "verdicts" in d.cache:
        return d.cache["verdicts"]
    parts = [_pairwise_rows(d.human, "human"), _pairwise_rows(d.model, "model")]
    hb = d.human.filter((pl.col("method") == HumanMethod.BEST) & pl.col("response_id").is_not_null()
                        & pl.col("shown_order").is_not_null())
    if hb.height:
        parts.append(_pick_rows(hb.select("judge", "method", "prompt_id", pick="response_id",
                                          other="shown_order").explode("other").drop_nulls("other"), "human"))
    selectors = [m for m in _mapped(d, "score_column", ["response_id"])
                 if d.mapping[m]["compared_with"] == HumanMethod.BEST]
    mb = d.model.filter(pl.col("method").is_in(selectors) & pl.col("variant").is_null()
                        & pl.col("response_id").is_not_null())
    if mb.height:
        cand = d.responses.filter(~pl.col("origin").is_in(_NOT_CANDIDATES)).select("prompt_id", other="response_id")
        parts.append(_pick_rows(mb.select("judge", "method", "prompt_id", pick="response_id").join(
            cand, on="prompt_id"), "model"))
    out = pl.concat([p.cast(_VERDICT_SCHEMA) for p in parts]) if parts else pl.DataFrame(schema=_VERDICT_SCHEMA)
    d.cache["verdicts"] = out
    return out
