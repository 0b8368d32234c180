"""Study settings inside the Studies tab (admins): questions, blind/reveal, overlap, routing,
answer extraction, the Live tab grant, guidelines; per-annotator progress and re-queue."""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from app.ui.errors import shown_errors
from storage import studies
from storage.models import QUESTIONS

QUESTION_LABELS = {"best": "best-of-N pick", "rating": "1–7 rating per response",
                   "pairwise": "pairwise: response 1 vs 2 (A / B / tie / both bad)",
                   "correct": "correct / incorrect per response", "checklist": "answers to the model's checklist",
                   "critique": "agree / disagree with the model's critique (after reveal)",
                   "reference": "reference answer written by the annotator", "comment": "comment"}


def build(ctx: AppContext, admin_of: Callable[[gr.Request], str]) -> gr.Dropdown:
    gr.Markdown("### Study settings")
    with gr.Row():
        study = gr.Dropdown(label="Study", choices=[], elem_id="cfg-study")
        blind = gr.Checkbox(label="Blind: hide the model's judgments while people label", elem_id="cfg-blind")
        reveal = gr.Checkbox(label="Reveal after submit: show the model's view and allow a revised label",
                             elem_id="cfg-reveal")
    questions = gr.CheckboxGroup([(QUESTION_LABELS[q], q) for q in QUESTIONS], label="Questions people answer",
                                 elem_id="cfg-questions")
    with gr.Row():
        overlap = gr.Number(label="Annotators per prompt (blank = everyone labels everything)", precision=0,
                            elem_id="cfg-overlap")
        extra = gr.Number(label="Extra annotators where humans split or the model disagrees", precision=0,
                          minimum=0, elem_id="cfg-extra")
        answers = gr.Textbox(label="Answer extraction: none | last_number | boxed | regex:PATTERN",
                             elem_id="cfg-answers")
    live_ok = gr.Checkbox(label="Annotators may use the Live tab with this study (their Live labels are stored "
                                "as not blind)", elem_id="cfg-live")
    guidelines = gr.Textbox(label="Guidelines (Markdown)", lines=4, elem_id="cfg-guidelines")
    save = gr.Button("Save settings", elem_id="cfg-save")
    status = gr.Markdown(elem_id="cfg-status")
    gr.Markdown("#### Annotators' progress")
    progress = gr.Dataframe(headers=["annotator", "labelled", "skipped"], interactive=False, elem_id="cfg-progress")
    with gr.Row():
        requeue_id = gr.Textbox(label="Prompt id to re-queue (one more annotator)", elem_id="cfg-requeue-id")
        requeue = gr.Button("Re-queue", elem_id="cfg-requeue")

    @shown_errors(10)
    def load(study_name: str | None, request: gr.Request) -> tuple[Any, ...]:
        admin_of(request)
        if not study_name:
            raise ServiceError("choose a study")
        s = studies.get_study(ctx.db, study_name)
        c = s.config
        prog = run_op(ctx, admin_of(request), "annotator_progress", {"study": s.name})
        rows = [[a["name"], a["labelled"], a["skipped"]] for a in prog["annotators"]]
        return ("", c.blind, c.reveal, list(c.questions), c.overlap, c.extra_on_disagreement, c.answer_extraction,
                c.live_annotators, s.guidelines, rows)

    @shown_errors(1)
    def do_save(study_name: str | None, blind_: bool, reveal_: bool, qs: list[str], overlap_: float | None,
                extra_: float | None, answers_: str, live_: bool, guide: str, request: gr.Request) -> str:
        if not study_name:
            raise ServiceError("choose a study")
        if not qs:
            raise ServiceError("choose at least one question")
        config = {"blind": bool(blind_), "reveal": bool(reveal_), "questions": qs,
                  "overlap": int(overlap_) if overlap_ else None, "extra_on_disagreement": int(extra_ or 0),
                  "answer_extraction": answers_.strip() or "none", "live_annotators": bool(live_)}
        run_op(ctx, admin_of(request), "configure", {"study": study_name, "config": config, "guidelines": guide})
        return f"Saved the settings of **{study_name}**."

    @shown_errors(1)
    def do_requeue(study_name: str | None, prompt: str, request: gr.Request) -> str:
        if not study_name or not prompt.strip():
            raise ServiceError("choose a study and give a prompt id")
        run_op(ctx, admin_of(request), "requeue", {"study": study_name, "prompt": prompt.strip()})
        return f"Prompt **{prompt.strip()}** will go to one more annotator."

    # load's first output is the status line (errors land there), then the form.
    study.input(load, [study], [status, blind, reveal, questions, overlap, extra, answers, live_ok, guidelines,
                                progress], api_visibility="private")
    save.click(do_save, [study, blind, reveal, questions, overlap, extra, answers, live_ok, guidelines], [status],
               api_visibility="private")
    requeue.click(do_requeue, [study, requeue_id], [status], api_visibility="private")
    return study
