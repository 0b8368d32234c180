"""Blocks of the report's extended sections (ppi, rankings, annotators, bias, planning, self_correction, scaling,
iterations; see `blocks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage.analysis.report.figures import _est, _f
from storage.analysis.report.intervals import interval_text
from storage.analysis.report.judges_blocks import judges_blocks
from storage.analysis.report.ppi_section import target_text
from storage.analysis.report.svg import _curve_svg, _scores_svg
# the sections of issue 17 (self-correction, the scaling curve, model iterations) render from their own modules
from storage.analysis.report.iterations_section import iteration_blocks
from storage.analysis.report.scaling_section import scaling_blocks
from storage.analysis.report.self_correction_section import self_correction_blocks


def _ppi_blocks(doc: Any, sec: dict[str, Any]) -> None:
    doc.p(f"Validity: {sec['validity']}. {sec['validity_note']}. {sec['estimator']}.")
    doc.table(["judge", "method", "target", "labelled", "unlabelled", "human only [95% CI]", "PPI++ [95% CI]", "λ",
               "effective n", "labels gained", "note"],
              [[r["judge"], r["method"], target_text(r), r["n_labelled"], r["n_unlabelled"], _est(r.get("human_only")),
                _est(r.get("ppi_plus")), _f(r.get("lambda")), _f(r.get("effective_n"), 1),
                _f(r.get("labels_gained"), 1), r.get("reason") or r.get("prediction") or ""] for r in sec["rows"]])


def _ranking_blocks(doc: Any, sec: dict[str, Any]) -> None:
    doc.p(f"Verdicts: {sec['verdicts']}. Intervals: {sec['intervals']}.")
    for key, title in (("runs", "Runs"), ("models", "Models")):
        lv = sec[key]
        doc.h(3, f"Bradley–Terry scores of {title.lower()}")
        if not lv.get("available"):
            doc.p(f"Not available: {lv.get('reason')}")
            continue
        for r in lv["rankings"]:
            who = r["judge"]
            if not r.get("available"):
                doc.p(f"{who}: not available: {r.get('reason')}")
                continue
            vs = r.get("vs_humans")
            doc.p(f"{who}: {r['n_verdicts']} verdicts" + (f", prior {r['prior']}" if r.get("prior") else "")
                  + (f"; against the humans' ranking: Spearman {_f(vs['spearman'])}, Kendall τ-b "
                     f"{_f(vs['kendall_tau_b'])} over {vs['n_items']} generators" if vs else ""))
            doc.svg(_scores_svg(r["scores"], f"{title}: Bradley–Terry scores, {who}"))
            doc.table(["generator", "score [95% CI]", "se", "wins", "losses", "ties"],
                      [[s["item"], f"{_f(s['score'])} [{_f(s['low'])}, {_f(s['high'])}]", _f(s["se"]), s["wins"],
                        s["losses"], s["ties"]] for s in r["scores"]])
    rs = sec.get("responses") or {}
    doc.h(3, "Bradley–Terry scores of each prompt's responses")
    if not rs.get("available"):
        doc.p(f"Not available: {rs.get('reason')}")
        return
    doc.p(f"{rs['n_prompts']} prompts with human verdicts; {rs['fit']}. Per-prompt scores of the first "
          f"{rs['n_listed']} prompts are in the JSON (`rankings.responses.prompts`).")
    doc.table(["judge", "prompts", "Kendall τ-b with the humans (mean)", "Spearman ρ (mean)"],
              [[r["judge"], r["n_prompts"], _f(r["kendall_tau_b_mean"]), _f(r["spearman_mean"])]
               for r in rs["judges"]])


def _annotator_blocks(doc: Any, sec: dict[str, Any]) -> None:
    doc.p(f"Agreement: {sec['agreement']}. Competence: {sec['competence']}.")
    for q, v in sec["questions"].items():
        doc.h(3, f"{q}: {v['n_votes']} votes on {v['n_units']} units")
        doc.table(["annotator", "votes with a consensus", "agreement", "Dawid–Skene", "MACE"],
                  [[a["judge"], a.get("n"), _f(a.get("agreement")), _f(a.get("dawid_skene")), _f(a.get("mace"))]
                   for a in v["annotators"]])
    if sec["time_on_task"]:
        doc.table(["annotator", "median seconds per item", "items"],
                  [[t["judge"], _f(t["median_seconds"], 1), t["n_items"]] for t in sec["time_on_task"]])
    else:
        doc.p("No time on task recorded.")


def _bias_blocks(doc: Any, sec: dict[str, Any]) -> None:
    doc.p(f"Length bias: {sec['length']}.")
    rows = sec["length_bias"]
    doc.table(["judge", "method", "kind", "pairs", "slope [95% CI]", "intercept", "first-position rate (order swap)",
               "note"],
              [[r["judge"], r.get("method") or "–", r["kind"], r["n"],
                f"{_f(r['slope'])} [{_f(r['slope_ci'][0])}, {_f(r['slope_ci'][1])}]" if r.get("available") else "–",
                _f(r.get("intercept")),
                (f"{_f(r['first_position_rate'].get('value'))} {interval_text(r['first_position_rate'])}"
                 if r.get("first_position_rate") else "–"),
                "; ".join(x for x in (r.get("reason"), r.get("note")) if x)] for r in rows])
    curves = [(f"{r['judge']}" + (f" · {r['method']}" if r.get("method") else "") + f" ({r['kind']})", r["curve"])
              for r in rows if r.get("available")]
    if curves:
        doc.svg(_curve_svg(curves, "Length bias: preference for A by length difference"))
    if sec.get("self_preference"):
        doc.table(["judge", "method", "self-preference [95% CI]", "judge gap", "human gap", "prompts", "note"],
                  [[r["judge"], r["method"],
                    f"{_f(r['self_preference'])} [{_f(r['low'])}, {_f(r['high'])}]" if r.get("available") else "–",
                    _f(r.get("judge_gap")), _f(r.get("human_gap")), r.get("n_prompts", "–"), r.get("reason") or ""]
                   for r in sec["self_preference"]])
    elif sec.get("self_preference_note"):
        doc.p(f"Self-preference: {sec['self_preference_note']}.")


def _planning_blocks(doc: Any, sec: dict[str, Any]) -> None:
    doc.p(f"Target: {sec['target']}. Assumption: {sec['assumption']}.")
    if sec["headline"]:
        doc.table(["judge", "method", "figure", "metric", "value", "n", "width now", "target width", "n needed",
                   "more"],
                  [[r["judge"], r["method"], r["figure"], r["metric"], _f(r["value"]), r["n"], _f(r["width_now"]),
                    _f(r["target_width"]), r["n_needed"], r["more"]] for r in sec["headline"]])
    if sec["ppi"]:
        doc.table(["judge", "method", "target", "labelled", "PPI++ width now", "target width", "labels needed", "more",
                   "floor"],
                  [[r["judge"], r["method"], target_text(r), r["n"], _f(r["width_now"]), _f(r["target_width"]),
                    r["n_needed"] if r["n_needed"] is not None else "unreachable", r["more"], _f(r["floor"])]
                   for r in sec["ppi"]])


SECTIONS: list[tuple[str, str, Callable[[Any, dict[str, Any]], None]]] = [
    ("ppi", "Judge-corrected estimates (PPI++)", _ppi_blocks),
    ("rankings", "Rankings (Bradley–Terry)", _ranking_blocks),
    ("annotators", "Annotators", _annotator_blocks),
    ("bias", "Judge bias", _bias_blocks),
    ("planning", "Planning: labels for a narrower interval", _planning_blocks),
    ("judges", "Judges side by side", judges_blocks),
    ("self_correction", "Self-correction (critique revisions)", self_correction_blocks),
    ("scaling", "Inference-time scaling (principles_critique, k samples summed)", scaling_blocks),
    ("iterations", "Model iterations (child vs parent)", iteration_blocks),
]


def extended_blocks(doc: Any, rep: dict[str, Any], unavailable: Callable[[dict[str, Any]], bool]) -> None:
    for key, title, fn in SECTIONS:
        if key not in rep:
            continue
        doc.h(2, title)
        if not unavailable(rep[key]):
            fn(doc, rep[key])
