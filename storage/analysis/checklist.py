"""Checklist items: the model's YES/NO answers against the human consensus per (response, item), and
criterion validity (how many items humans accept as valid criteria)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import check_labels, check_unique, frame, safe_div
from storage.analysis.consensus import consensus
from storage.human_labels import YES_NO  # the answers a checklist item takes

CHECKLIST_COLS = ("prompt_id", "response_id", "item_id", "judge", "label")


def _with_unit(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(unit=pl.format("{}:{}", "response_id", "item_id"))


def checklist_agreement(human_answers: Any, model_answers: Any, classes: Sequence[str] = YES_NO) -> pl.DataFrame:
    """Per model judge and checklist item: the model's answers against the human consensus of each
    (response, item) (plurality answer when a unique mode; otherwise left out and counted in
    ``n_no_consensus``). Returns ``judge, item_id, n, n_no_consensus, accuracy, kappa`` with one row per
    item and a pooled row per judge (``item_id`` null, over all its items). κ is Cohen's κ between the
    model's answers and the consensus over the item's responses (nan when both sides are constant on one
    answer, which is common for a single item).

    Input columns (both frames): ``prompt_id, response_id, item_id, judge, label`` (``"YES"``/``"NO"``).

    >>> h = pl.DataFrame({"prompt_id": 1, "response_id": [1, 1, 2, 2], "item_id": 7, "judge": ["a", "b"] * 2,
    ...                   "label": ["YES", "YES", "NO", "NO"]})
    >>> m = pl.DataFrame({"prompt_id": 1, "response_id": [1, 2], "item_id": 7, "judge": "m", "label": ["YES", "YES"]})
    >>> checklist_agreement(h, m).rows()  # po = 1/2; pe = (1*2 + 1*0)/4 = 1/2 → κ = 0
    [('m', 7, 2, 0, 0.5, 0.0), ('m', None, 2, 0, 0.5, 0.0)]
    """
    h = _with_unit(frame(human_answers, CHECKLIST_COLS, "human checklist answers"))
    m = _with_unit(frame(model_answers, CHECKLIST_COLS, "model checklist answers"))
    check_labels(m, "label", classes, "model checklist answers")
    check_unique(m, ("prompt_id", "response_id", "item_id", "judge"), "model checklist answers",
                 "one answer per judge, response and item")
    cons = consensus(h.select("prompt_id", "unit", "judge", "label"), classes).select("prompt_id", "unit", "consensus")
    rows = m.select("prompt_id", "unit", "item_id", "judge", "label").join(
        cons, on=["prompt_id", "unit"], how="left", maintain_order="left")
    has = pl.col("consensus").is_not_null()
    aggs = [pl.len().alias("_all"), has.sum().alias("n"),
            (pl.col("label") == pl.col("consensus")).filter(has).sum().alias("_agree")]
    for i, c in enumerate(classes):
        aggs += [(pl.col("label") == c).filter(has).sum().alias(f"_m{i}"),
                 (pl.col("consensus") == c).filter(has).sum().alias(f"_h{i}")]
    per_item = rows.group_by("judge", "item_id", maintain_order=True).agg(aggs)
    pooled = rows.group_by("judge", maintain_order=True).agg(aggs).with_columns(
        item_id=pl.lit(None, dtype=per_item["item_id"].dtype))
    g = pl.concat([per_item, pooled.select(per_item.columns)])
    n = g["n"].to_numpy().astype(np.float64)
    po = safe_div(g["_agree"].to_numpy(), n)
    pe = sum(g[f"_m{i}"].to_numpy() * g[f"_h{i}"].to_numpy() for i in range(len(classes))) / np.maximum(n * n, 1)
    out = g.with_columns(n=pl.col("n").cast(pl.Int64), n_no_consensus=(pl.col("_all") - pl.col("n")).cast(pl.Int64),
                         accuracy=pl.Series(po), kappa=pl.Series(safe_div(po - pe, 1 - pe)))
    return out.select("judge", "item_id", "n", "n_no_consensus", "accuracy", "kappa").sort(
        "judge", pl.col("item_id").is_null(), "item_id", maintain_order=True)


def criterion_validity(validity: Any) -> dict[str, Any]:
    """How many checklist items humans accept as valid criteria.

    Input: ``prompt_id, item_id, judge, valid`` (bool; False = the human flagged "not a valid criterion";
    from stored ``criterion_valid`` judgments: label ``"valid"`` → True).

    Returns ``n_items``; ``share_unflagged`` = share of items that NO human flagged (the headline figure);
    ``share_valid_consensus`` = share valid among the ``n_consensus`` items whose humans' plurality is a
    unique mode; ``vote_share_valid`` = share of all validity votes that are "valid"; and ``per_item``
    (``prompt_id, item_id, n_votes, n_flagged, valid_share``).

    >>> v = pl.DataFrame({"prompt_id": 1, "item_id": [1, 1, 2, 2, 3], "judge": ["a", "b", "a", "b", "a"],
    ...                   "valid": [True, True, True, False, False]})
    >>> r = criterion_validity(v)
    >>> r["n_items"], r["share_unflagged"], r["share_valid_consensus"], r["n_consensus"], r["vote_share_valid"]
    (3, 0.3333333333333333, 0.5, 2, 0.6)
    """
    v = frame(validity, ("prompt_id", "item_id", "judge", "valid"), "criterion validity")
    if v["valid"].dtype != pl.Boolean:
        raise ValueError(f"criterion validity: column 'valid' must be boolean, got {v['valid'].dtype}")
    check_unique(v, ("prompt_id", "item_id", "judge"), "criterion validity", "one vote per judge and item")
    per = v.group_by("prompt_id", "item_id", maintain_order=True).agg(
        n_votes=pl.len().cast(pl.Int64), n_flagged=(~pl.col("valid")).sum().cast(pl.Int64),
        valid_share=pl.col("valid").mean())
    decided = per.filter(pl.col("valid_share") != 0.5)
    return {"n_items": per.height,
            "share_unflagged": float((per["n_flagged"] == 0).mean()) if per.height else float("nan"),
            "share_valid_consensus": float((decided["valid_share"] > 0.5).mean()) if decided.height else float("nan"),
            "n_consensus": decided.height,
            "vote_share_valid": float(v["valid"].mean()) if v.height else float("nan"),
            "per_item": per}
