"""The Agreement tab (admins): the headline table with the human ceiling beside each model method,
the calibration plot, the full report (confusion matrices, order swap, selectors ...), the most
disagreed items (each opens in the Label tab) and the self-contained HTML report to download."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr
import pandas as pd

from app.render import md_literal, to_safe_html
from app.services import agreement
from app.ui import agreement_judges as jdg
from app.ui import agreement_loop_sections as loop
from app.ui import agreement_sections as sec
from app.ui.errors import shown_errors
from app.ui.export_tab import DOWNLOAD_JS
from app.services.agreement import DEFAULT_THRESHOLD, interval_text
from app.ui.tables import NO_COPY

HEADLINE_COLUMNS = ["model", "method", "compared with", "metric", "value", "95% CI", "n", "κ vs consensus",
                    "human ceiling", "baseline"]
# Shares of the table's width (summing to 100%): left alone, Gradio sizes each column from its first rows, so
# a long model id pushed the last columns out of view and an empty "95% CI" squeezed its header into a tall
# column of single letters.
HEADLINE_WIDTHS = ["18%", "10%", "12%", "13%", "7%", "11%", "5%", "8%", "8%", "8%"]


@dataclass
class AgreementTab:
    study: gr.Dropdown
    open_id: gr.Textbox
    open_btn: gr.Button


def _fmt(x: Any) -> str:
    return "" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def headline_rows(rep: dict) -> list[list[str]]:
    """One row per (model, method): its main figure with humans, the human ceiling and the baseline."""
    head = rep.get("headline", {})
    rows = []
    for r in head.get("rows", []) if head.get("available", True) else []:
        main, kappa, ceiling, base = r.get("main") or {}, r.get("kappa") or {}, r.get("ceiling") or {}, r.get("baseline") or {}
        rows.append([r["judge"], r["method"], r.get("human_question") or "", main.get("metric") or r.get("reason") or "",
                     _fmt(main.get("value")), interval_text(main), _fmt(main.get("n")),
                     _fmt(kappa.get("value")), _fmt(ceiling.get("value")), _fmt(base.get("value"))])
    return rows


def reliability_frame(rep: dict) -> pd.DataFrame:
    """Reliability-diagram points of every calibrated method, plus the diagonal."""
    cal = rep.get("calibration", {})
    rows = [{"confidence": x, "accuracy": x, "series": "perfect calibration"} for x in (0.0, 1.0)]
    for m in cal.get("methods", []) if cal.get("available", True) else []:
        for b in m.get("reliability") or []:
            rows.append({"confidence": b["confidence"], "accuracy": b["accuracy"],
                         "series": f"{m['method']} ({m['judge']})"})
    return pd.DataFrame(rows)


def disagreement_rows(rep: dict) -> list[list[str]]:
    """The most disagreed prompts, human–human first, then human–model."""
    dis = rep.get("disagreements", {})
    if not dis.get("available", True):
        return []
    rows = []
    for kind, label in (("human_human", "humans vs humans"), ("human_model", "humans vs model")):
        for d in dis.get(kind, []):
            score = d.get("score") or {}
            rows.append([str(d.get("external_id")), label, _fmt(score.get("value")), _fmt(score.get("n"))])
    return rows


def build(ctx: Any, admin_of: Callable[[gr.Request], str]) -> AgreementTab:
    with gr.Row():
        study = gr.Dropdown(label="Study", choices=[], elem_id="agr-study")
        stage = gr.Radio(["blind", "revealed"], value="blind", label="Human labels", elem_id="agr-stage")
        n_boot = gr.Number(value=1000, precision=0, minimum=0, maximum=100_000, label="Bootstrap resamples",
                           elem_id="agr-boot")
    # The opt-in sections in a row of their own: beside the three inputs above they were squeezed to a word a
    # line at 800 px.
    with gr.Row():
        em = gr.Checkbox(value=False, label="Annotator models (Dawid–Skene, MACE: slower)", elem_id="agr-em")
        judges_on = gr.Checkbox(value=False, label="Judges side by side and PRE (re-reads each subset: slower)",
                                elem_id="agr-judges-on")
        per_prompt = gr.Checkbox(value=False, label="Rankings of each prompt's responses (a fit per prompt: slower)",
                                 elem_id="agr-response-rankings")
    # PRE's two choices, shown with the judges box (as `critlab agreement --pre-seed / --pre-threshold`)
    with gr.Row(visible=False) as pre_inputs:
        pre_seed = gr.Number(value=None, precision=0, label="PRE exam seed (empty: the study id)",
                             elem_id="agr-pre-seed")
        pre_threshold = gr.Number(value=DEFAULT_THRESHOLD, minimum=0, maximum=1, step=0.05,
                                  label="PRE threshold (the exam score a judge needs to vote, above 0, at most 1)",
                                  elem_id="agr-pre-threshold")
    judges_on.change(lambda on: gr.Row(visible=bool(on)), [judges_on], [pre_inputs], api_visibility="private")
    compute = gr.Button("Compute", variant="primary", elem_id="agr-compute")
    status = gr.Markdown(elem_id="agr-status")
    headline = gr.Dataframe(headers=HEADLINE_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-headline",
                            wrap=True, column_widths=HEADLINE_WIDTHS, elem_classes=["fit-table"])
    plot = gr.LinePlot(x="confidence", y="accuracy", color="series", x_lim=[0, 1], y_lim=[0, 1],
                       title="Calibration (reliability diagram: 10 equal-count bins, tied probabilities kept whole)", elem_id="agr-plot")
    gr.Markdown("#### Most disagreed items")
    disagreed = gr.Dataframe(headers=["prompt", "between", "disagreement rate", "vote pairs"], interactive=False,
                             buttons=NO_COPY, elem_id="agr-disagreed")
    # the section tables do not wrap: at 800 px they scroll sideways in their box, where wrapped headers of
    # narrow number columns broke into single letters
    gr.Markdown("#### Judge-corrected estimates (PPI++)")
    ext_note = gr.Markdown(elem_id="agr-ext-note")
    ppi = gr.Dataframe(headers=sec.PPI_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-ppi", wrap=False)
    gr.Markdown("#### Rankings of runs and models (Bradley–Terry)")
    rankings = gr.Dataframe(headers=sec.RANKING_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-rankings",
                            wrap=False)
    gr.Markdown("#### Annotators")
    annot = gr.Dataframe(headers=sec.ANNOTATOR_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-annotators",
                         wrap=False)
    gr.Markdown("#### Judge bias (length, position, self-preference)")
    bias = gr.Dataframe(headers=sec.BIAS_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-bias", wrap=False)
    gr.Markdown("#### Planning: labels to halve an interval")
    planning = gr.Dataframe(headers=sec.PLANNING_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-planning",
                            wrap=False)
    gr.Markdown("#### Judges side by side (agreement and mean score per generator; PRE)")
    judges_note = gr.Markdown(elem_id="agr-judges-note")
    judges = gr.Dataframe(headers=jdg.JUDGES_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-judges",
                          wrap=False)
    pre = gr.Dataframe(headers=jdg.PRE_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-pre", wrap=False)
    gr.Markdown("#### Self-correction (critique revisions), scaling by k, model iterations")
    loop_note = gr.Markdown(elem_id="agr-loop-note")
    selfcorr = gr.Dataframe(headers=loop.SELF_CORRECTION_COLUMNS, interactive=False, buttons=NO_COPY,
                            elem_id="agr-self-correction", wrap=False)
    scaling = gr.Dataframe(headers=loop.SCALING_COLUMNS, interactive=False, buttons=NO_COPY, elem_id="agr-scaling",
                           wrap=False)
    iterations = gr.Dataframe(headers=loop.ITERATION_COLUMNS, interactive=False, buttons=NO_COPY,
                              elem_id="agr-iterations", wrap=False)
    with gr.Row():
        open_id = gr.Textbox(label="Prompt id to open in the Label tab", elem_id="agr-open-id")
        open_btn = gr.Button("Open in Label tab", elem_id="agr-open")
    # Served by the server's admin-only download route, never Gradio's file route (see the Export tab).
    download = gr.Button("Download the HTML report", visible=False, elem_id="agr-download")
    report_url = gr.Textbox(visible=False, elem_id="agr-download-url")
    with gr.Accordion("Full report", open=False):
        full = gr.Markdown(elem_id="agr-full")

    @shown_errors(20)
    def do_compute(study_name: str | None, stage_: str, boot: float | None, models: bool, with_judges: bool,
                   responses_ranked: bool, seed_: float | None, threshold: float | None,
                   request: gr.Request) -> tuple[Any, ...]:
        user = admin_of(request)
        if not study_name:
            raise ValueError("choose a study")
        r = agreement.tab_report(ctx, user, study_name, stage=stage_, n_boot=int(boot or 0),
                                 annotator_models=bool(models), judges=bool(with_judges),
                                 response_rankings=bool(responses_ranked),
                                 pre_seed=None if seed_ is None else int(seed_),
                                 pre_threshold=DEFAULT_THRESHOLD if threshold is None else float(threshold))
        rep = r.report
        counts = rep.get("counts", {})
        note = (f"Study **{md_literal(study_name)}**, {stage_} labels: {counts.get('n_prompts', 0)} prompts, "
                f"{counts.get('n_prompts_with_human_labels', 0)} with human labels."
                + sec.gold_note(rep, md_literal))
        return (note, headline_rows(rep), reliability_frame(rep), disagreement_rows(rep),
                gr.Button(f"Download {r.filename}", visible=True), r.url,
                to_safe_html(r.markdown),  # names and ids in it come from imported data
                md_literal(sec.section_note(rep)), sec.ppi_rows(rep), sec.ranking_rows(rep), sec.annotator_rows(rep),
                sec.bias_rows(rep), sec.planning_rows(rep), md_literal(jdg.pre_note(rep)), jdg.judges_rows(rep),
                jdg.pre_rows(rep), md_literal(loop.section_note(rep)), loop.self_correction_rows(rep),
                loop.scaling_rows(rep), loop.iteration_rows(rep))

    compute.click(do_compute, [study, stage, n_boot, em, judges_on, per_prompt, pre_seed, pre_threshold],
                  [status, headline, plot, disagreed, download, report_url, full, ext_note, ppi, rankings, annot, bias,
                   planning, judges_note, judges, pre, loop_note, selfcorr, scaling, iterations],
                  api_visibility="private")
    download.click(None, [report_url], None, js=DOWNLOAD_JS)
    return AgreementTab(study, open_id, open_btn)
