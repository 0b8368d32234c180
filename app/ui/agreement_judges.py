"""Rows of the Agreement tab's judge × generator table and PRE table: plain formatting of the report's
`judges` section (app/services/agreement.report). The table is long (one row per judge, method and
generator) since the generators differ from study to study; the self-judging diagonal is marked in its own
column as the Markdown/HTML report marks it."""

from __future__ import annotations

from typing import Any

from app.services.agreement import interval_text

JUDGES_COLUMNS = ["judge", "method", "generator", "self-judging", "agreement with humans (n)",
                  "mean score / win rate [95% CI]", "overall agreement [95% CI]"]
PRE_COLUMNS = ["method", "judge", "exam score (n)", "qualified", "weight", "held-out agreement (n)"]
SELF_MARK, FAMILY_MARK = "◆ self", "◇ same family"


def _fig(fig: dict[str, Any] | None, *, ci: bool = False) -> str:
    if not fig or fig.get("value") is None:
        return ""
    text = f"{fig['value']:.3f}"
    interval = interval_text(fig) if ci else ""
    if interval:
        text += " " + interval
    return text + (f" (n={fig.get('n', 0)})" if not ci else "")


def judges_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("judges") or {}
    if not sec.get("available"):
        return []
    rows = []
    for r in sec["rows"]:
        for c in r["cells"]:
            rows.append([r["judge"], r["method"], c["generator"],
                         SELF_MARK if c["self"] else FAMILY_MARK if c["same_family"] else "",
                         # why a cell is empty is in the full report: the long reason pushed the numbers out of view
                         _fig(c["agreement"]) or "–", _fig(c["mean_score"], ci=True) or "–",
                         _fig(r["overall"], ci=True)])
    return rows


def pre_rows(rep: dict) -> list[list[str]]:
    pre = (rep.get("judges") or {}).get("pre") or {}
    rows = []
    for m in pre.get("methods", []):
        held = {h["judge"]: h for h in m.get("heldout", [])}
        if m.get("available"):
            h = held.get(pre["judge"]) or {}
            rows.append([m["method"], pre["judge"], "", "", "", _fig(h.get("main")) or (h.get("reason") or "")])
        for e in m.get("exam", []):
            h = held.get(e["judge"]) or {}
            rows.append([m["method"], e["judge"], _fig(e["score"]) or (e.get("reason") or ""),
                         "yes" if e["qualified"] else "no", "" if e["weight"] is None else f"{e['weight']:.3f}",
                         _fig(h.get("main"))])
        if not m.get("available"):
            rows.append([m["method"], pre.get("judge", "pre"), "", "", "", m.get("reason") or ""])
    return rows


def pre_note(rep: dict) -> str:
    pre = (rep.get("judges") or {}).get("pre") or {}
    if not pre:
        sec = rep.get("judges") or {}
        return f"judges: {sec.get('reason')}" if sec and not sec.get("available") else ""
    return (f"PRE: exam = {pre['exam_share']:.0%} of the labelled prompts (seed {pre['seed']}); judges scoring "
            f"≥ {pre['threshold']} on it vote, weighted by that score; the vote, judge '{pre['judge']}', is scored on "
            "the other prompts only.")
