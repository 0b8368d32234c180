"""Rows of the Agreement tab's tables for the report sections of the self-improvement loop: self_correction,
scaling (principles_critique by k) and iterations (child vs parent): plain formatting of the report dict."""

from __future__ import annotations

from typing import Any

from app.ui.agreement_sections import _ci, _f, _on

SELF_CORRECTION_COLUMNS = ["critique judge", "attempts", "accuracy before", "accuracy after", "Δ", "Δ i→c", "Δ c→i",
                           "confidence level", "critique score"]
SCALING_COLUMNS = ["judge", "k", "responses", "Spearman ρ mean [95% CI]", "Kendall τ-b mean [95% CI]"]
# the value before who gave it: at 800 px the table scrolls sideways and the value stays in view
ITERATION_COLUMNS = ["parent → child", "measure", "value [95% CI]", "n", "by"]
KEYS = ("self_correction", "scaling", "iterations")


def _est(x: dict[str, Any] | None) -> str:
    return _ci((x or {}).get("estimate"), (x or {}).get("ci"))


def section_note(rep: dict) -> str:
    """Why each of these sections has nothing to show (empty when all have)."""
    return "; ".join(f"{k}: {(rep.get(k) or {}).get('reason')}" for k in KEYS
                     if not (rep.get(k) or {}).get("available", True))


def self_correction_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("self_correction")
    if not _on(sec):
        return []
    figures = ("accuracy_before", "accuracy_after", "delta", "delta_i_to_c", "delta_c_to_i", "confidence_level",
               "critique_score")
    return [[r["judge"], _f(r.get("n", 0)), *((_est(r.get(f)) for f in figures) if r.get("available")
                                               else [r.get("reason") or "", *[""] * (len(figures) - 1)])]
            for r in sec["judges"]]


def scaling_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("scaling")
    if not _on(sec):
        return []
    return [[r["judge"], _f(p["k"]), _f(p["n_responses"]),
             _est(p.get("spearman_mean")) if p.get("available") else p.get("reason") or "",
             _est(p.get("kendall_mean"))] for r in sec["judges"] for p in r["points"]]


def iteration_rows(rep: dict) -> list[list[str]]:
    sec = rep.get("iterations")
    if not _on(sec):
        return []
    rows = []
    for p in sec["pairs"]:
        name = f"{p['parent']} → {p['child']}"
        h = p["human"]
        rows.append([name, "child win rate",
                     _est(h.get("win_rate")) if h.get("available", True) else h.get("reason") or "",
                     _f(h.get("n_units")), "humans"])
        for j in p["judges"]:
            who = f"{j['judge']} ({j['role']}) · {j['method']}"
            rows.append([name, "child win rate", _est(j["win_rate"]), _f(j["n_units"]), who])
            ppi = j["ppi"]
            rows.append([name, "child win rate, PPI++ (humans + judge)",
                         _est(ppi.get("ppi_plus")) if ppi.get("available") else ppi.get("reason") or "",
                         _f(ppi["n_labelled"]), who])
        for c in p["consistency"]:
            rows.append([name, "ranking consistency, mean Kendall τ-b", _est(c.get("mean_tau_b")),
                         _f(c["n_prompts"]), f"{' vs '.join(c['judges'])} · {c['method']}"])
    return rows
