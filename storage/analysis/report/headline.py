"""The report's `headline`: one row per (model judge, method) with the section figure that answers "how
close is it to the humans", read from the sections already built."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.report.figures import HUMANS, METHOD_OF, _unavailable
from storage.analysis.report.loading import _Data
from storage.models import HumanMethod


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _headline(d: _Data, rep: dict[str, Any]) -> dict[str, Any]:
    pairs = d.model.select("judge", "method").unique().with_columns(
        method=pl.col("method").replace(METHOD_OF)).unique().sort("method", "judge")
    rows = []
    for judge, method in pairs.iter_rows():
        info = d.mapping.get(method)
        row: dict[str, Any] = {"judge": judge, "method": method, "compared_with": None, "human_question": None,
                               "metric_family": None, "main": None, "kappa": None, "ceiling": None,
                               "baseline": None, "reason": None}
        if info is None:
            row["reason"] = "method not in the method table (no human question mapped)"
            rows.append(row)
            continue
        row.update(compared_with=info["compared_with"], human_question=info["human_question"],
                   metric_family=info["metric_family"])
        q = info["compared_with"]
        if q == HumanMethod.PAIRWISE:
            sec = rep["pairwise"]
            if not sec.get("available"):
                row["reason"] = sec.get("reason")
            else:
                a = _find(sec["agreement"], judges=[judge, HUMANS], order="combined")
                v = _find(sec["vs_consensus"], judge=judge, order="combined")
                hh = _find(sec["agreement"], judges=[HUMANS, HUMANS])
                row.update(main=a["s1"] if a else None, kappa=v["kappa"] if v else None,
                           ceiling=hh["s1"] if hh else None)
                if a is None:
                    row["reason"] = "no pairwise verdict of this judge on a pair humans judged"
        elif q == HumanMethod.RATING:
            sec = rep["scores"]
            s = _find(sec.get("methods", []), judge=judge, method=method) if sec.get("available") else None
            if s is None or not s.get("available"):
                row["reason"] = (s or sec).get("reason") or "no scores"
            else:
                row.update(main=s["spearman_mean"], ceiling=sec["human_ceiling_mean"])
        elif q == HumanMethod.BEST:
            sec = rep["best_of_n"]
            rows_ = sec.get("selectors", []) if sec.get("available") else []
            s = next((r for r in rows_ if r["judge"] == judge and r["method"] == method
                      and r["kind"] in ("selector", "majority")), None)
            if s is None:
                row["reason"] = (sec.get("reason") if not sec.get("available") else
                                 "no pick of a shown response on a prompt with human picks"
                                 + (" (this method writes a new response instead of picking one)"
                                    if method == "gsa" else ""))
            else:
                rnd = _find(rows_, kind="random")
                row.update(main=s["accuracy_consensus"], ceiling=sec["human_ceiling"],
                           baseline=rnd["accuracy_consensus"] if rnd else None)
        elif q == HumanMethod.CORRECT:
            sec = rep["calibration"]
            s = _find(sec.get("methods", []), judge=judge, method=method) if sec.get("available") else None
            if s is None or not s.get("available"):
                row["reason"] = (s or sec).get("reason") or "no probabilities"
            else:
                row["main"] = s["auroc"]
                row["reason"] = "AUROC has no human–human counterpart (see calibration.human_vs_consensus)"
        elif q == "checklist":
            sec = rep["checklist"]
            s = _find(sec.get("models", []), judge=judge) if sec.get("available") else None
            if s is None:
                row["reason"] = sec.get("reason") or sec.get("note") or "no checklist answers"
            else:
                row.update(main=s["accuracy"], kappa=s["kappa"], ceiling=sec.get("human_ceiling"))
        rows.append(row)
    if not rows:
        return _unavailable("no model judgments")
    return {"available": True, "rows": rows}
