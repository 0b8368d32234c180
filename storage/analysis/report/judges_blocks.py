"""Blocks of the report's `judges` section (see `blocks`): the judge × generator tables with the
self-judging diagonal marked in the cell text (◆ self, ◇ same family), so Markdown and HTML both show it,
and the PRE exam and held-out agreement."""

from __future__ import annotations

from typing import Any

from storage.analysis.report.figures import _f
from storage.analysis.report.intervals import interval_text

SELF_MARK = "◆ self"
FAMILY_MARK = "◇ same family"


def mark(cell: dict[str, Any]) -> str:
    return f" {SELF_MARK}" if cell.get("self") else f" {FAMILY_MARK}" if cell.get("same_family") else ""


def figure_text(fig: dict[str, Any] | None, *, n: bool = True) -> str:
    """'0.750 [0.500, 1.000] (n=6)'; '–' without a figure."""
    if not fig:
        return "–"
    s = _f(fig.get("value"))
    if interval_text(fig):
        s += " " + interval_text(fig)
    return s + (f" (n={fig.get('n', 0)})" if n else "")


def judges_blocks(doc: Any, sec: dict[str, Any]) -> None:
    gens = [g["generator"] for g in sec["generators"]]
    doc.p(f"Cells: {sec['cell_rule']}. {sec['self_rule']}: marked {SELF_MARK} / {FAMILY_MARK}. "
          f"Self-preference: see {sec['self_preference']} in the Judge bias section.")
    if gens:
        doc.p("Generators: " + "; ".join(f"{g['generator']} (family {g['family']}, {g['n_responses']} responses)"
                                         for g in sec["generators"]))
        doc.h(3, "Agreement with humans (the headline's main figure) per generator")
        doc.table(["judge", "method", "overall", *gens],
                  [[r["judge"], r["method"], figure_text(r["overall"]),
                    *[(figure_text(c["agreement"], n=True) if c["agreement"] else "–") + mark(c) for c in r["cells"]]]
                   for r in sec["rows"]])
        doc.h(3, "Mean score (win rate for pairwise) per generator")
        doc.table(["judge", "method", *gens],
                  [[r["judge"], r["method"], *[figure_text(c["mean_score"]) + mark(c) for c in r["cells"]]]
                   for r in sec["rows"]])
    else:
        doc.p("No generator model recorded with the responses: no judge × generator table.")
    pre = sec.get("pre") or {}
    doc.h(3, "Peer review of judges (PRE)")
    doc.p(f"Judge '{pre.get('judge')}': exam share {pre.get('exam_share')}, seed {pre.get('seed')}, threshold "
          f"{pre.get('threshold')}. Exam: {pre.get('exam')}. Vote: {pre.get('vote')}.")
    for m in pre.get("methods", []):
        if "exam" in m:
            doc.table(["method", "judge", "exam score", "qualified", "weight", "note"],
                      [[m["method"], r["judge"], figure_text(r["score"]), "yes" if r["qualified"] else "no",
                        _f(r["weight"]), r.get("reason") or ""] for r in m["exam"]])
        if not m.get("available"):
            doc.p(f"{m['method']}: no PRE verdict: {m.get('reason')}")
            continue
        doc.table([f"{m['method']}: on the {m['n_heldout_prompts']} held-out prompts", "agreement with humans"],
                  [[r["judge"], figure_text(r["main"]) if r["main"] else (r.get("reason") or "–")]
                   for r in m["heldout"]])
