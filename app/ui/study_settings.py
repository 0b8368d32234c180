"""Study settings inside the Studies tab (admins): questions, blind/reveal, overlap, routing,
answer extraction, the label set's runs, the queue order, gold rate and gate, the Live tab grant, guidelines;
per-annotator progress (with gold accuracy) and re-queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from app.render import md_literal
from app.services import study_settings as settings
from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from app.ui.errors import USER_ERRORS, shown_errors, warning
from storage.models import QUESTIONS

QUESTION_LABELS = settings.QUESTION_LABELS


@dataclass
class SettingsPanel:
    study: gr.Dropdown
    load: Callable[..., tuple[Any, ...]]  # (study name, request) -> the outputs below
    outputs: list[Any]


def build(ctx: AppContext, admin_of: Callable[[gr.Request], str]) -> SettingsPanel:
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
    with gr.Row():
        label_runs = gr.Textbox(label="Cards from runs: run ids and/or imported (blank = the latest run)",
                                placeholder="e.g. 3, 5, imported", elem_id="cfg-label-runs")
        queue_order = gr.Dropdown([("file position", "position"), ("random (uniform, seeded)", "random"),
                                   ("most informative first", "informative")], label="Queue order",
                                  elem_id="cfg-queue-order")
    with gr.Row():
        gold_rate = gr.Number(label="Gold rate: share of picks that are gold items (0 = off)", minimum=0, maximum=1,
                              elem_id="cfg-gold-rate")
        gold_min = gr.Number(label="Gold accuracy gate (blank = none)", minimum=0, maximum=1, elem_id="cfg-gold-min")
    live_ok = gr.Checkbox(label="Annotators may use the Live tab with this study (their Live labels are stored "
                                "as not blind)", elem_id="cfg-live")
    guidelines = gr.Textbox(label="Guidelines (Markdown)", lines=4, elem_id="cfg-guidelines")
    with gr.Row():
        save = gr.Button("Save settings", elem_id="cfg-save")
        confirm = gr.Button("Confirm and save", variant="stop", visible=False, elem_id="cfg-confirm")
        reload = gr.Button("↻ Reload settings and progress", elem_id="cfg-reload")
    status = gr.Markdown(elem_id="cfg-status")
    loaded = gr.State(None)  # the form as loaded (study_settings.SettingsForm), to send only what changed
    gr.Markdown("#### Annotators' progress")
    progress = gr.Dataframe(headers=["annotator", "labelled", "skipped", "gold right / answered"], interactive=False,
                            elem_id="cfg-progress")
    with gr.Row():
        requeue_id = gr.Textbox(label="Prompt id to re-queue (one more annotator)", elem_id="cfg-requeue-id")
        requeue = gr.Button("Re-queue", elem_id="cfg-requeue")
    form = [blind, reveal, questions, overlap, extra, answers, live_ok, label_runs, queue_order, gold_rate, gold_min,
            guidelines]

    def fill(study_name: str | None, request: gr.Request) -> tuple[Any, ...]:
        admin_of(request)
        if not study_name:
            return ("", None, gr.Button(visible=False), *[gr.skip()] * len(form), gr.skip())
        return shown(settings.load_panel(ctx, study_name))

    def shown(panel: settings.SettingsPanel, note: str = "") -> tuple[Any, ...]:
        f, v = panel.form, panel.form.values
        rows = [[a.name, a.labelled, a.skipped, a.gold] for a in panel.progress]
        return (note, f.model_dump(), gr.Button(visible=False), v["blind"], v["reveal"], list(v["questions"]),
                v["overlap"], v["extra_on_disagreement"], v["answer_extraction"], v["live_annotators"],
                ", ".join(map(str, v["label_runs"])), v["queue_order"], v["gold_rate"], v["gold_min_accuracy"],
                v["guidelines"], rows)

    def save_with(confirmed: bool) -> Callable[..., tuple[Any, ...]]:
        def do_save(study_name: str | None, form_state: dict | None, blind_: bool, reveal_: bool, qs: list[str],
                    overlap_: float | None, extra_: float | None, answers_: str, live_: bool, runs_: str,
                    order_: str, gold_rate_: float | None, gold_min_: float | None, guide: str,
                    request: gr.Request) -> tuple[Any, ...]:
            keep = (gr.skip(),) * (len(form) + 1)  # the form and the progress table
            try:
                user = admin_of(request)
                if not study_name or not form_state or form_state.get("study") != study_name:
                    raise ServiceError("choose a study (its settings load into the form)")
                if not qs:
                    raise ServiceError("choose at least one question")
                edited = {"blind": bool(blind_), "reveal": bool(reveal_), "questions": list(qs),
                          "overlap": int(overlap_) if overlap_ else None, "extra_on_disagreement": int(extra_ or 0),
                          "answer_extraction": (answers_ or "").strip() or "none", "live_annotators": bool(live_),
                          "label_runs": runs_ or "", "queue_order": order_ or "position",
                          "gold_rate": float(gold_rate_ or 0), "gold_min_accuracy": gold_min_, "guidelines": guide or ""}
                r = settings.save_panel(ctx, user, form_state, edited, confirm=confirmed)
                if r.panel is None:
                    return ("Nothing changed.", gr.skip(), gr.Button(visible=False), *keep)
            except settings.NeedsConfirmation as e:
                return (warning(e), gr.skip(), gr.Button(visible=True), *keep)
            except USER_ERRORS as e:
                return (warning(e), gr.skip(), gr.Button(visible=False), *keep)
            text = f"Saved the settings of **{md_literal(study_name)}**: {md_literal(r.described)}."
            if r.notes:
                text += " Note: " + "; ".join(md_literal(n) for n in r.notes) + "."
            return shown(r.panel, text)
        return do_save

    @shown_errors(1)
    def do_requeue(study_name: str | None, prompt: str, request: gr.Request) -> str:
        admin = admin_of(request)  # the role first: a refusal must not depend on what was typed
        if not study_name or not prompt.strip():
            raise ServiceError("choose a study and give a prompt id")
        run_op(ctx, admin, "requeue", {"study": study_name, "prompt": prompt.strip()})
        return f"Prompt **{md_literal(prompt.strip())}** will go to one more annotator."

    @shown_errors(1 + len(form) + 3)
    def load(study_name: str | None, request: gr.Request) -> tuple[Any, ...]:
        """The stored settings of the study into the form (and the progress table)."""
        return fill(study_name, request)

    outputs = [status, loaded, confirm, *form, progress]
    # load's first output is the status line (errors land there), then the form.
    # .change, not .input: the form also fills when the page load selects a study.
    study.change(load, [study], outputs, api_visibility="private")
    reload.click(load, [study], outputs, api_visibility="private")
    for button, confirmed in ((save, False), (confirm, True)):
        button.click(save_with(confirmed), [study, loaded, *form], outputs, api_visibility="private")
    requeue.click(do_requeue, [study, requeue_id], [status], api_visibility="private")
    return SettingsPanel(study, load, outputs)
