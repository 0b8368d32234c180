"""Vote frames derived from the loaded data that several sections read alike (pairwise votes, human
ratings, model scores, correct labels, coded best-of-N picks); the pairwise ones are cached on `_Data`
since they are the costliest."""

from __future__ import annotations

import polars as pl

from storage.analysis.pairwise import combine_orders, pairwise_votes
from storage.analysis.report.figures import CORRECT_CLASSES, VOTE
from storage.analysis.report.loading import _Data, _response_level
from storage.models import HumanMethod


def _pairwise_frames(d: _Data) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(human votes with created_at, model order votes or None) in unit order."""
    if "pairwise" not in d.cache:
        d.cache["pairwise"] = _make_pairwise_frames(d)
    return d.cache["pairwise"]


def _combined_orders(d: _Data, orders: pl.DataFrame) -> pl.DataFrame:
    """`combine_orders` of the model order votes, once per report."""
    if "combined" not in d.cache:
        d.cache["combined"] = combine_orders(orders)
    return d.cache["combined"]


def _make_pairwise_frames(d: _Data) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    ok = pl.col("response_id").is_not_null() & pl.col("response_b_id").is_not_null() & pl.col("label").is_not_null()
    hp = d.human.filter((pl.col("method") == HumanMethod.PAIRWISE) & ok)
    human = (pairwise_votes(hp.select("prompt_id", "judge", "response_id", "response_b_id", "label", "created_at"))
             .select(*VOTE, "created_at") if hp.height else pl.DataFrame())
    mp = d.model.filter((pl.col("method") == HumanMethod.PAIRWISE) & ok & pl.col("variant").str.starts_with("order:"))
    orders = (pairwise_votes(mp.select("prompt_id", "judge", "response_id", "response_b_id", "label"))
              .select("prompt_id", "unit", "judge", "shown", "label") if mp.height else None)
    return human, orders


def _human_ratings(d: _Data) -> pl.DataFrame:
    r = d.human.filter((pl.col("method") == HumanMethod.RATING) & pl.col("response_id").is_not_null()
                       & pl.col("value").is_not_null() & pl.col("value").is_finite())
    return r.select("prompt_id", unit=pl.col("response_id").cast(pl.String), judge="judge", value="value")


def _score_rows(d: _Data, methods: list[str]) -> pl.DataFrame:
    """Response-level aggregate rows of `methods` with their score column as `score`: judge, method,
    prompt_id, response_id, score."""
    parts = []
    for m in methods:
        col = d.mapping[m]["score_column"]
        if col not in ("value", "prob"):
            continue
        parts.append(d.model.filter((pl.col("method") == m) & _response_level()).select(
            "judge", "method", "prompt_id", "response_id", score=pl.col(col)))
    if not parts:
        return pl.DataFrame(schema={"judge": pl.String, "method": pl.String, "prompt_id": pl.Int64,
                                    "response_id": pl.Int64, "score": pl.Float64})
    return pl.concat(parts).filter(pl.col("score").is_not_null() & pl.col("score").is_finite())


def _code_picks(votes: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Best-pick votes (label = the picked response id as text) relabelled by the response's rank among the
    prompt's picked responses (the id kept in ``raw``), so a consensus needs as many classes as a prompt has
    distinct picks, not one per response of the study."""
    coded = votes.rename({"label": "raw"}).with_columns(
        label=pl.col("raw").cast(pl.Int64).rank("dense").over("prompt_id").cast(pl.Int64).cast(pl.String))
    return coded, sorted(coded["label"].unique().to_list())


def _correct_votes(d: _Data) -> pl.DataFrame:
    c = d.human.filter((pl.col("method") == HumanMethod.CORRECT) & pl.col("response_id").is_not_null()
                       & pl.col("label").is_in(list(CORRECT_CLASSES)))
    return c.select("prompt_id", unit=pl.col("response_id").cast(pl.String), judge="judge", label="label")
