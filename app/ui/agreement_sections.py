"""Rows of the Agreement tab's tables for the report sections ppi, rankings, annotators, bias and planning:
plain formatting of the report dict (app/services/agreement.report), one list of rows per table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.services.agreement import target_text

PPI_COLUMNS = ["model", "method", "target", "labelled", "unlabelled", "human only [95% CI]", "PPI++ [95% CI]", "λ",
               "effective n", "labels gained", "note"]
RANKING_COLUMNS = ["level", "ranked by", "generator", "score [95% CI]", "wins", "losses", "ties",
                   "Spearman vs humans"]
ANNOTATOR_COLUMNS = ["question", "annotator", "votes with a consensus", "agreement", "Dawid–Skene", "MACE",
                     "median s per item"]
BIAS_COLUMNS = ["judge", "method", "kind", "pairs", "length slope [95% CI]", "intercept",
                "first-position rate", "self-preference [95% CI]"]
PLANNING_COLUMNS = ["judge", "method", "figure", "metric", "n", "width now", "target width", "n needed", "more"]


def _f(x: Any, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(est: Any, ci: list[Any] | None) -> str:
    if est is None:
        return ""
    return f"{_f(est)} [{_f(ci[0])}, {_f(ci[1])}]" if ci and None not in ci else _f(est)


def _on(sec: dict[str, Any] | None) -> bool:
    return bool(sec) and bool(sec.get("available"))


def section_note(rep: dict) -> str:
    """One line per new section: the PPI validity, or why a section has nothing to show."""
    lines = []
    ppi = rep.get("ppi") or {}
    if ppi.get("available"):
        lines.append(f"PPI validity: {ppi['validity']}")
    for key in ("ppi", "rankings", "annotators", "bias", "planning"):
        sec = rep.get(key) or {}
        if not sec.get("available", True):
            lines.append(f"{key}: {sec.get('reason')}")
    if (rep.get("bias") or {}).get("self_preference_note"):
        lines.append(f"self-preference: {rep['bias']['self_preference_note']}")
    return "; ".join(lines)


def gold_note(rep: dict, literal: Callable[[str], str] = str) -> str:
    """What the gold gate left out of the report (its `gold` key), for the status line; names through
    `literal` (the tab passes md_literal: names come from imported data).

    >>> gold_note({"gold": {"n_items": 5, "gated": [{"annotator": "spam", "accuracy": 0.2, "answered": 5}]}})
    ' 5 gold items left out; gold gate: the labels of spam (20% of 5 gold answers) are left out.'
    >>> gold_note({"gold": {"n_items": 0, "gated": []}})
    ''
    """
    g = rep.get("gold") or {}
    gated = g.get("gated") or []
    if not g.get("n_items") and not gated:
        return ""
    text = f" {g.get('n_items', 0)} gold items left out"
    if gated:
        text += "; gold gate: the labels of " + ", ".join(
            f"{literal(x['annotator'])} ({x['accuracy']:.0%} of {x['answered']} gold answers)" for x in gated
        ) + " are left out"
    return text + "."


def ppi_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("ppi")
    if not _on(sec):
        return []
    rows = []
    for r in sec["rows"]:
        h, p = r.get("human_only") or {}, r.get("ppi_plus") or {}
        rows.append([r["judge"], r["method"], target_text(r), _f(r["n_labelled"]), _f(r["n_unlabelled"]),
                     _ci(h.get("estimate"), h.get("ci")), _ci(p.get("estimate"), p.get("ci")), _f(r.get("lambda")),
                     _f(r.get("effective_n"), 1), _f(r.get("labels_gained"), 1), r.get("reason") or ""])
    return rows


def ranking_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("rankings")
    if not _on(sec):
        return []
    rows = []
    for level in ("runs", "models"):
        lv = sec[level]
        if not lv.get("available"):
            rows.append([level, "", "", lv.get("reason") or "", "", "", "", ""])
            continue
        for r in lv["rankings"]:
            if not r.get("available"):
                rows.append([level, r["judge"], "", r.get("reason") or "", "", "", "", ""])
                continue
            rho = (r.get("vs_humans") or {}).get("spearman")
            for s in r["scores"]:
                rows.append([level, r["judge"], s["item"], _ci(s["score"], [s["low"], s["high"]]), _f(s["wins"]),
                             _f(s["losses"]), _f(s["ties"]), _f(rho)])
    return rows


def annotator_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("annotators")
    if not _on(sec):
        return []
    times = {t["judge"]: t["median_seconds"] for t in sec["time_on_task"]}
    rows = []
    for q, v in sec["questions"].items():
        for a in v["annotators"]:
            rows.append([q, a["judge"], _f(a.get("n")), _f(a.get("agreement")), _f(a.get("dawid_skene")),
                         _f(a.get("mace")), _f(times.get(a["judge"]), 1)])
    return rows


def bias_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("bias")
    if not _on(sec):
        return []
    rows = []
    for r in sec["length_bias"]:
        pos = r.get("first_position_rate") or {}
        # the table does not wrap: a short mark here, the whole note is in the report
        pairs = _f(r["n"]) + (f" (+{r['n_empty']} left out: empty response)" if r.get("n_empty") else "")
        rows.append([r["judge"], r.get("method") or "", r["kind"], pairs,
                     _ci(r.get("slope"), r.get("slope_ci")) or (r.get("reason") or ""), _f(r.get("intercept")),
                     _ci(pos.get("value"), pos.get("ci")), ""])
    for r in sec.get("self_preference", []):
        rows.append([r["judge"], r["method"], "self-preference", _f(r.get("n_prompts")), "", "", "",
                     _ci(r.get("self_preference"), [r.get("low"), r.get("high")]) if r.get("available")
                     else r.get("reason") or ""])
    return rows


def planning_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("planning")
    if not _on(sec):
        return []
    rows = [[r["judge"], r["method"], r["figure"], r["metric"], _f(r["n"]), _f(r["width_now"]), _f(r["target_width"]),
             _f(r["n_needed"]), _f(r["more"])] for r in sec["headline"]]
    rows += [[r["judge"], r["method"], "PPI++", target_text(r), _f(r["n"]), _f(r["width_now"]), _f(r["target_width"]),
              _f(r["n_needed"]) if r["n_needed"] is not None else "unreachable", _f(r["more"])] for r in sec["ppi"]]
    return rows
