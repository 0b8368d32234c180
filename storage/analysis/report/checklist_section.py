"""The report's `checklist` section: model checklist answers against the human consensus (pooled and per
item), the human ceiling and the criterion-validity votes."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.checklist import YES_NO, checklist_agreement, criterion_validity
from storage.analysis.consensus import consensus
from storage.analysis.report.figures import CONSENSUS, HUMANS, LOO, _figure, _unavailable
from storage.analysis.report.intervals import _Boot, _cm_cis, _cm_per_prompt, _ratio
from storage.analysis.report.loading import _Data, _with_external
from storage.analysis.report.shared import _vs_consensus_rows
from storage.models import HumanMethod


def _checklist(d: _Data, boot: _Boot) -> dict[str, Any]:
    ans = pl.col("response_id").is_not_null() & pl.col("checklist_item_id").is_not_null() & pl.col("label").is_in(
        list(YES_NO))
    cols = ("prompt_id", "response_id", pl.col("checklist_item_id").alias("item_id"), "judge", "label")
    h = d.human.filter((pl.col("method") == HumanMethod.CHECKLIST_ITEM) & ans).select(*cols)
    m = d.model.filter((pl.col("method") == HumanMethod.CHECKLIST_ITEM) & ans).select(*cols)
    validity = d.human.filter((pl.col("method") == HumanMethod.CRITERION_VALID) & pl.col("checklist_item_id").is_not_null()
                              & pl.col("label").is_in(["valid", "invalid"])).select(
        "prompt_id", item_id="checklist_item_id", judge="judge", valid=pl.col("label") == "valid")
    if h.height == 0 and validity.height == 0:
        return _unavailable("no human checklist answers")
    questions = d.items.select("item_id", "question")
    out: dict[str, Any] = {"available": True, "n_human_answers": h.height, "n_model_answers": m.height}
    models = []
    if h.height and m.height:
        table = checklist_agreement(h, m)
        hv = h.select("prompt_id", unit=pl.format("{}:{}", "response_id", "item_id"), judge="judge", label="label")
        cons = consensus(hv, YES_NO).select("prompt_id", "unit", "consensus")
        rows = m.with_columns(unit=pl.format("{}:{}", "response_id", "item_id")).join(
            cons, on=["prompt_id", "unit"], how="inner").filter(pl.col("consensus").is_not_null())
        pp_all = _cm_per_prompt(rows, "consensus", "label", YES_NO, ["judge"])
        item_prompt = m.select("item_id", "prompt_id").unique(subset="item_id")
        for judge in sorted(table["judge"].unique().to_list()):
            t = table.filter(pl.col("judge") == judge)
            pooled = t.filter(pl.col("item_id").is_null()).row(0, named=True)
            judges = [judge, CONSENSUS]
            cis = _cm_cis(boot, pp_all.filter(pl.col("judge") == judge).drop("judge"), 2, ("accuracy", "kappa"))
            items = (t.filter(pl.col("item_id").is_not_null())
                     .join(questions, on="item_id", how="left", maintain_order="left")
                     .join(item_prompt, on="item_id", how="left", maintain_order="left"))
            items = _with_external(items, d.prompts)
            models.append({
                "judge": judge, "method": "checklist", "n": pooled["n"], "n_no_consensus": pooled["n_no_consensus"],
                "accuracy": _figure("accuracy", judges, pooled["accuracy"], pooled["n"], cis["accuracy"],
                                    method="checklist"),
                "kappa": _figure("cohen_kappa", judges, pooled["kappa"], pooled["n"], cis["kappa"], method="checklist"),
                "items": [{"item_id": r["item_id"], "question": r["question"], "prompt_id": r["prompt_id"],
                           "external_id": r["external_id"], "n": r["n"], "n_no_consensus": r["n_no_consensus"],
                           "accuracy": _figure("accuracy", judges, r["accuracy"], r["n"], item_id=r["item_id"]),
                           "kappa": _figure("cohen_kappa", judges, r["kappa"], r["n"], item_id=r["item_id"])}
                          for r in items.iter_rows(named=True)]})
    elif h.height:
        out["note"] = "no model checklist answers (method checklist_item)"
    out["models"] = models
    human_rows: list[dict[str, Any]] = []
    ceiling = None
    if h.height and h["judge"].n_unique() >= 2:
        hv = h.select("prompt_id", unit=pl.format("{}:{}", "response_id", "item_id"), judge="judge", label="label")
        human_rows = _vs_consensus_rows(hv, None, YES_NO, {}, boot)
        loo = consensus(hv, YES_NO, leave_one_out=True).filter(pl.col("consensus").is_not_null())
        pp = loo.group_by("prompt_id").agg(hit=(pl.col("label") == pl.col("consensus")).sum().cast(pl.Int64),
                                           n=pl.len().cast(pl.Int64))
        n_h = int(pp["n"].sum()) if pp.height else 0
        ceiling = _figure("accuracy", [HUMANS, LOO], int(pp["hit"].sum()) / n_h if n_h else None, n_h,
                          boot.sums(pp, _ratio("hit", "n")))
    out["human_vs_consensus"] = human_rows
    out["human_ceiling"] = ceiling
    if validity.height:
        cv = criterion_validity(validity)
        per = _with_external(cv["per_item"].join(questions, on="item_id", how="left", maintain_order="left"),
                             d.prompts)
        jd = [HUMANS, HUMANS]
        out["criterion_validity"] = {
            "n_items": cv["n_items"],
            "share_unflagged": _figure("share_unflagged", jd, cv["share_unflagged"], cv["n_items"]),
            "share_valid_consensus": _figure("share_valid_consensus", jd, cv["share_valid_consensus"],
                                             cv["n_consensus"]),
            "vote_share_valid": _figure("vote_share_valid", jd, cv["vote_share_valid"], validity.height),
            "per_item": per.select("prompt_id", "external_id", "item_id", "question", "n_votes", "n_flagged",
                                   "valid_share")}
    else:
        out["criterion_validity"] = _unavailable("no human criterion-validity votes")
    return out
