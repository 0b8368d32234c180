"""The rendered report as a list of blocks (headings, paragraphs, tables, SVG) that the Markdown and the
HTML renderer both walk, so both show the same numbers."""

from __future__ import annotations

from typing import Any

from storage.analysis.report.blocks_extended import extended_blocks
from storage.analysis.report.figures import CONSENSUS, MEAN_RATING, _f
from storage.analysis.report.intervals import interval_text
from storage.analysis.report.svg import _reliability_svg
from storage.analysis.settings_section import settings_blocks


def _fig(fig: dict[str, Any] | None, *, n: bool = True) -> str:
    """A figure as '0.412 [0.201, 0.600] (n=37)'."""
    if not fig:
        return "–"
    s = _f(fig.get("value"))
    if interval_text(fig):
        s += " " + interval_text(fig)
    if n:
        s += f" (n={fig.get('n', 0)})"
    return s


def _vs(fig: dict[str, Any] | None) -> str:
    return " vs ".join(fig["judges"]) if fig else "–"


class _Doc:
    """Blocks shared by the Markdown and HTML renderers, so both show the same numbers."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (headers, [["–" if c is None else str(c) for c in r] for r in rows])))

    def svg(self, svg: str) -> None:
        self.blocks.append(("svg", svg))


def _blocks(rep: dict[str, Any]) -> _Doc:
    doc = _Doc()
    st = rep.get("study", {})
    doc.h(1, f"Agreement report: {st.get('name', '')}")
    b = rep.get("bootstrap", {})
    doc.p(f"Format {rep.get('format')}; human labels at stage '{st.get('stage')}'; 95% percentile bootstrap "
          f"intervals over prompts ({b.get('n_resamples')} resamples, seed {b.get('seed')}).")
    c = rep.get("counts", {})
    doc.table(["prompts", "responses", "prompts with human labels", "humans", "models", "failed model rows",
               "human rows at the other stage (excluded)"],
              [[c.get("n_prompts"), c.get("n_responses"), c.get("n_prompts_with_human_labels"),
                len(c.get("humans", [])), len(c.get("models", [])), c.get("n_model_failed"),
                c.get("n_human_other_stage")]])
    if c.get("unmapped_methods"):
        doc.p("Methods not in the method table (not compared): " + ", ".join(c["unmapped_methods"]))
    for m in c.get("mixed_method_versions", []):
        doc.p(f"{m['judge']} / {m['method']}: its current judgments come from more than one method version, "
              "pooled here (" + ", ".join(f"{v['method_version'] or 'no version'}: {v['n']}" for v in m["versions"])
              + "); re-score the rest to compare one version.")
    g = rep.get("gold") or {}
    if g.get("n_items") or g.get("gated"):
        gated = ", ".join(f"{x['annotator']} ({x['right']}/{x['answered']} gold answers right, "
                          f"{x['n_labels_left_out']} labels)" for x in g.get("gated", []))
        doc.p(f"Gold items: {g.get('n_items', 0)}, left out of every figure. Gold gate: "
              + ("none" if g.get("min_accuracy") is None else
                 f"accuracy below {g['min_accuracy']:.0%} over at least {g.get('min_answers')} gold answers; "
                 + (f"labels left out: {gated}" if gated else "nobody gated")) + ".")
    settings_blocks(doc, rep.get("settings_history"))

    def unavailable(sec: dict[str, Any]) -> bool:
        if not sec.get("available"):
            doc.p(f"Not available: {sec.get('reason')}")
            return True
        return False

    doc.h(2, "Headline")
    hl = rep.get("headline", {})
    if not unavailable(hl):
        doc.table(["judge", "method", "compared with", "metric", "value [95% CI] (n)", "κ", "human–human ceiling",
                   "baseline", "note"],
                  [[r["judge"], r["method"], r.get("human_question") or "–",
                    r["main"]["metric"] if r.get("main") else "–", _fig(r.get("main")), _fig(r.get("kappa")),
                    (f"{r['ceiling']['metric']}: {_fig(r['ceiling'])}" if r.get("ceiling") else "–"),
                    _fig(r.get("baseline")), r.get("reason") or ""] for r in hl["rows"]])

    doc.h(2, "Pairwise")
    pw = rep.get("pairwise", {})
    if not unavailable(pw):
        u = pw["units"]
        doc.p(f"{u['n_units']} units (prompt, response pair); {u['n_with_consensus']} with a human consensus, "
              f"{u['n_no_consensus']} without (left out of consensus figures); classes in the pair's own order: "
              f"first = lower id wins, second, tie.")
        if u["no_consensus"]:
            doc.table(["prompt id", "external id", "unit", "votes"],
                      [[x["prompt_id"], x["external_id"], x["unit"], x["n_votes"]] for x in u["no_consensus"]])
        doc.h(3, "Raw agreement (MT-Bench)")
        doc.table(["judges", "order", "S1 with ties", "agree / n", "S2 without ties", "agree / n"],
                  [[_vs(r["s1"]), r.get("order") or "–", _fig(r["s1"], n=False),
                    f"{r['s1']['agree']} / {r['s1']['n']}",
                    _fig(r["s2"], n=False), f"{r['s2']['agree']} / {r['s2']['n']}"] for r in pw["agreement"]])
        if pw.get("by_turn"):
            doc.p("Per turn (FastChat's compute_agreement.py: model orders combined, S1 with ties, S2 without).")
            doc.table(["judges", "turn", "S1 agree / n", "S2 agree / n"],
                      [[" vs ".join(r["judges"]), r["turn"], f"{r['s1_agree']} / {r['s1_n']}",
                        f"{r['s2_agree']} / {r['s2_n']}"] for r in pw["by_turn"]])
        doc.h(3, "Against the human consensus")
        doc.table(["judges", "kind", "order", "n", "no consensus", "accuracy", "macro P", "macro R", "macro F1",
                   "Cohen's κ"],
                  [[_vs(r["accuracy"]), r["kind"], r.get("order") or "–", r["n"], r["n_no_consensus"],
                    _fig(r["accuracy"], n=False), _fig(r["precision_macro"], n=False),
                    _fig(r["recall_macro"], n=False), _fig(r["f1_macro"], n=False), _fig(r["kappa"], n=False)]
                   for r in pw["vs_consensus"]])
        for r in pw["vs_consensus"]:
            cm = r["confusion"]
            doc.p(f"Confusion matrix, {' vs '.join(cm['judges'])}"
                  + (f" (order {r['order']})" if r.get("order") else "") + ": rows = " + cm["rows"]
                  + ", columns = " + cm["columns"])
            doc.table([f"{cm['rows']} \\ {cm['columns']}", *cm["classes"]],
                      [[cls, *row] for cls, row in zip(cm["classes"], cm["matrix"])])
        doc.h(3, "Cohen's κ for every pair of judges")
        km = pw["kappa_matrix"]
        cell = {tuple(p["judges"]): p for p in km["pairs"]}

        def kappa_cell(a: str, bj: str) -> str:
            pair = cell.get((a, bj)) or cell.get((bj, a))
            return "–" if a == bj or pair is None else _fig(pair["kappa"])
        doc.table(["κ (rows vs columns)", *km["judges"]],
                  [[a, *[kappa_cell(a, bj) for bj in km["judges"]]] for a in km["judges"]])
        fk, al = pw["fleiss_kappa"], pw["krippendorff_alpha"]
        doc.table(["metric", "judges", "value [95% CI] (n)", "detail"],
                  [["Fleiss' κ", _vs(fk), _fig(fk), (f"overlap {fk.get('overlap')} ({fk.get('overlap_source')}); "
                                                     f"{fk.get('n_units_below')} units below, "
                                                     f"{fk.get('n_units_truncated')} truncated")],
                   ["Krippendorff's α (nominal)", _vs(al), _fig(al), al.get("note", "")]])
        if pw["order_swap"]:
            doc.h(3, "Order swap")
            doc.table(["judge", "units in both orders", "consistency", "first-position rate", "tie rate",
                       "accuracy ab", "accuracy ba", "mean of orders", "combined"],
                      [[r["judge"], r["n_units"], _fig(r["consistency"], n=False),
                        _fig(r["first_position_rate"]), _fig(r["tie_rate"], n=False), _fig(r["accuracy_ab"]),
                        _fig(r["accuracy_ba"]), _fig(r["accuracy_order_mean"]), _fig(r["accuracy_combined"])]
                       for r in pw["order_swap"]])

    doc.h(2, "Ratings (human–human)")
    ra = rep.get("ratings", {})
    if not unavailable(ra):
        doc.p(f"{ra['n_ratings']} ratings of {ra['n_units']} responses ({ra['n_units_multi']} rated by two or more "
              f"humans); values {', '.join(_f(v, 0) for v in ra['values'])}.")
        doc.table(["metric", "judges", "value [95% CI] (n)"],
                  [[f["metric"], _vs(f), _fig(f)] for f in ra["krippendorff_alpha"].values()])
        if ra["human_vs_others"]:
            doc.table(["judges", "n", "MAE", "Pearson", "Spearman"],
                      [[_vs(r["mae"]), r["n"], _fig(r["mae"], n=False), _fig(r["pearson"], n=False),
                        _fig(r["spearman"], n=False)] for r in ra["human_vs_others"]])

    doc.h(2, "Scores vs human ratings")
    sc = rep.get("scores", {})
    if not unavailable(sc):
        doc.table(["judges", "method", "prompts (skipped)", "Spearman per prompt", "Kendall τ-b per prompt",
                   "Spearman pooled", "Kendall τ-b pooled"],
                  [[f"{r['judge']} vs {MEAN_RATING}", r["method"], "–", r.get("reason", ""), "", "", ""]
                   if not r.get("available") else
                   [_vs(r["spearman_mean"]), r["method"], f"{r['n_prompts']} ({r['n_prompts_skipped']})",
                    _fig(r["spearman_mean"], n=False), _fig(r["kendall_mean"], n=False),
                    _fig(r["spearman_pooled"]), _fig(r["kendall_pooled"])] for r in sc["methods"]]
                  + [[_vs(r["spearman_mean"]), "human ceiling", f"{r['n_prompts']} ({r['n_prompts_skipped']})",
                      _fig(r["spearman_mean"], n=False), _fig(r["kendall_mean"], n=False),
                      _fig(r["spearman_pooled"]), _fig(r["kendall_pooled"])] for r in sc["human_ceiling"]])
        doc.p(f"Human ceiling (mean over humans of the per-prompt Spearman): {_fig(sc['human_ceiling_mean'])}")

    doc.h(2, "Best of N")
    bn = rep.get("best_of_n", {})
    if not unavailable(bn):
        doc.p(f"{bn['n_prompts']} prompts with human picks; {bn['n_consensus']} with a consensus pick, "
              f"{bn['n_no_consensus']} without; mean N = {_f(bn['mean_candidates'], 2)}; "
              f"{bn['n_picks_outside_candidates']} selector picks outside the shown responses left out.")
        doc.table(["judge", "method", "kind", "top-1 vs consensus", "top-1 vs each human (mean)", "tied argmax"],
                  [[r["judge"], r.get("method") or "–", r["kind"], _fig(r["accuracy_consensus"]),
                    _fig(r["accuracy_human_mean"]), r.get("n_tied_argmax", "")] for r in bn["selectors"]]
                  + [[_vs(bn["human_ceiling"]), "–", "human ceiling", _fig(bn["human_ceiling"]), "–", ""]])
        if not bn["majority"]["available"]:
            doc.p(f"Majority vote: {bn['majority']['reason']}.")

    doc.h(2, "Calibration vs human correct labels")
    ca = rep.get("calibration", {})
    if not unavailable(ca):
        doc.p(f"{ca['n_units']} responses labelled; {ca['n_consensus']} with a consensus label, "
              f"{ca['n_no_consensus']} without." + (f" {ca['note']}." if ca.get("note") else ""))
        ok = [r for r in ca["methods"] if r.get("available")]
        if ca["methods"]:
            doc.p("ECE and RMS-CE: 10 equal-count bins, a run of tied probabilities kept whole in the bin of its "
                  "first element, empty bins dropped; the mean is over the bins used.")
            doc.table(["judges", "method", "n", "base rate", "AUROC", "Brier", "ECE", "bins used", "RMS-CE",
                       "acc. above 0.5"],
                      [[_vs(r["auroc"]), r["method"], r["n"], _fig(r["base_rate"], n=False), _fig(r["auroc"], n=False),
                        _fig(r["brier"], n=False), _fig(r["ece"], n=False), r["ece"].get("bins_used", "–"),
                        _fig(r["rms_ce"], n=False), _fig(r["accuracy_above_half"])] if r.get("available") else
                       [f"{r['judge']} vs {CONSENSUS}", r["method"], 0, r.get("reason", ""), "", "", "", "", "", ""]
                       for r in ca["methods"]])
        for r in ok:
            title = f"{r['judge']} · {r['method']}"
            if r["reliability"]:
                doc.p(f"Reliability diagram, {title} vs {CONSENSUS}")
                doc.svg(_reliability_svg(r["reliability"], title))
                doc.table(["bin", "count", "confidence", "accuracy", "p min", "p max"],
                          [[x["bin"], x["count"], _f(x["confidence"]), _f(x["accuracy"]), _f(x["p_min"]),
                            _f(x["p_max"])] for x in r["reliability"]])
        if ca["human_vs_consensus"]:
            doc.table(["judges", "n", "accuracy", "Cohen's κ"],
                      [[_vs(r["accuracy"]), r["n"], _fig(r["accuracy"], n=False), _fig(r["kappa"], n=False)]
                       for r in ca["human_vs_consensus"]])

    doc.h(2, "Checklist")
    ck = rep.get("checklist", {})
    if not unavailable(ck):
        if ck.get("note"):
            doc.p(ck["note"])
        for r in ck["models"]:
            doc.p(f"{r['judge']}: accuracy {_fig(r['accuracy'])}, κ {_fig(r['kappa'], n=False)} against the human "
                  f"consensus ({r['n_no_consensus']} answers without consensus)")
            doc.table(["prompt id", "external id", "item", "question", "n", "accuracy", "κ"],
                      [[i["prompt_id"], i["external_id"], i["item_id"], i["question"], i["n"],
                        _fig(i["accuracy"], n=False), _fig(i["kappa"], n=False)] for i in r["items"]])
        if ck.get("human_ceiling"):
            doc.p(f"Human ceiling: {_vs(ck['human_ceiling'])}: {_fig(ck['human_ceiling'])}")
        cv = ck["criterion_validity"]
        if cv.get("available", True):
            doc.p(f"Criterion validity ({cv['n_items']} items): unflagged {_fig(cv['share_unflagged'], n=False)}, "
                  f"valid by consensus {_fig(cv['share_valid_consensus'])}, "
                  f"valid votes {_fig(cv['vote_share_valid'])}")
        else:
            doc.p(f"Criterion validity not available: {cv['reason']}")

    doc.h(2, "Reveal")
    rv = rep.get("reveal", {})
    if not unavailable(rv):
        doc.table(["question", "changed after reveal", "changed / (annotator, prompt) pairs"],
                  [[f.get("question"), _fig(f, n=False), f"{f['n_changed']} / {f['n']}"]
                   for f in [rv["overall"], *rv["by_question"]]])
        doc.table(["annotator", "changed after reveal", "changed / pairs"],
                  [[f["judge"], _fig(f, n=False), f"{f['n_changed']} / {f['n']}"] for f in rv["by_annotator"]])
        if rv["toward_others"]:
            doc.table(["question", "n", "blind = others' blind consensus", "revised = it", "changed", "toward",
                       "away", "moved toward the others"],
                      [[t["question"], t["n"], _fig(t["blind_match"], n=False), _fig(t["revised_match"], n=False),
                        t["n_changed"], t["n_moved_toward"], t["n_moved_away"],
                        {True: "yes", False: "no", None: "–"}[t["moved_toward_others"]]]
                       for t in rv["toward_others"]])

    doc.h(2, "Most disagreed items")
    dg = rep.get("disagreements", {})
    if not unavailable(dg):
        doc.p(f"Score: {dg['score']}.")
        for key, title in (("human_human", "Human–human"), ("human_model", "Human–model")):
            doc.h(3, title)
            if dg[key]:
                doc.table(["prompt id", "external id", "disagreement", "disagreeing pairs / pairs"],
                          [[x["prompt_id"], x["external_id"], _f(x["score"]["value"]),
                            f"{x['score']['n_disagree']} / {x['score']['n']}"] for x in dg[key]])
            else:
                doc.p("No disagreement.")
    extended_blocks(doc, rep, unavailable)
    return doc
