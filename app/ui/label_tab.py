"""The Label tab: the prompt, up to 8 response cards side by side, and the study's questions.

The cards and their controls are created once and shown or hidden per item (re-rendered inputs
lose their values). Callbacks only call app.services.labelling and render what it returns.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from app.render import chat_to_safe_html, earlier_turns_html, md_literal, to_safe_html
from app.services import label_flow, labelling
from app.services.context import AppContext, ServiceError
from app.services.label_flow import Step
from app.services.labelling import MAX_COMMENT_CHARS, MAX_REFERENCE_CHARS
from app.ui.errors import warning
from app.ui.model_view_md import render_view
from storage.members import NotMember
from storage.models import MAX_RESPONSES

KEY_HELP = ("Keys: **1–8** pick the best · **J/K** move between cards · **Shift+1–7** rate the highlighted "
            "card · **Ctrl+Enter** submit · **S** skip · **←** back to the previous item")
SUBMIT_START_JS = "() => { window.critlabSubmitStart && window.critlabSubmitStart(); }"
SUBMIT_END_JS = "() => { window.critlabSubmitEnd && window.critlabSubmitEnd(); }"
LONG_PROMPT = 2000  # characters: a longer prompt shows collapsed, with "Show all"
# Gradio puts elem_classes on the block and on its prose inside: both are toggled.
TOGGLE_PROMPT_JS = """() => {
  const box = document.querySelector('#prompt'), b = document.querySelector('#prompt-toggle');
  const open = !box.classList.contains('prompt-open');
  for (const e of [box, ...box.querySelectorAll('.prompt-box')]) e.classList.toggle('prompt-open', open);
  if (b) b.textContent = open ? 'Show less' : 'Show all of the prompt';
}"""
PAIR_CHOICES = [("Response 1 is better", "A"), ("Response 2 is better", "B"), ("Tie", "tie"), ("Both bad", "both_bad")]


@dataclass
class CardControls:
    column: gr.Column
    title: gr.Markdown
    text: gr.Markdown
    view_box: gr.Accordion
    view: gr.Markdown
    rating: gr.Radio
    correct: gr.Radio
    checklist: gr.CheckboxGroup
    critique: gr.Radio
    pick: gr.Button
    regenerate: gr.Button | None = None


@dataclass
class LabelTab:
    study: gr.Dropdown
    progress: gr.Markdown
    prompt: gr.Markdown
    guidelines: gr.Markdown
    cards: list[CardControls]
    best: gr.Radio
    pairwise: gr.Radio
    invalid: gr.CheckboxGroup
    reference: gr.Textbox
    comment: gr.Textbox
    status: gr.Markdown
    state: gr.State
    prompt_toggle: gr.Button
    submit: gr.Button
    skip: gr.Button

    def per_card(self, name: str) -> list[Any]:
        return [getattr(c, name) for c in self.cards]

    def outputs(self) -> list[Any]:
        names = ("column", "title", "text", "view_box", "view", "rating", "correct", "checklist", "critique", "pick")
        return [self.progress, self.prompt, self.prompt_toggle, self.guidelines,
                *[x for n in names for x in self.per_card(n)],
                self.best, self.pairwise, self.invalid, self.reference, self.comment, self.status, self.state,
                self.submit, self.skip]

    def answer_inputs(self) -> list[Any]:
        return [self.state, self.best, self.pairwise, self.invalid, self.reference, self.comment,
                *self.per_card("rating"), *self.per_card("correct"), *self.per_card("checklist"),
                *self.per_card("critique")]


def card(k: int, prefix: str = "", regenerate: bool = False) -> CardControls:
    """Response card k with its label controls; `prefix` keeps element ids apart between tabs (the
    keyboard shortcuts address the Label tab's unprefixed ids)."""
    with gr.Column(visible=False, elem_id=f"{prefix}card-{k}", elem_classes=["resp-card"], min_width=220) as col:
        title = gr.Markdown(f"**Response {k}**", elem_id=f"{prefix}title-{k}", elem_classes=["card-title"])
        text = gr.Markdown(elem_id=f"{prefix}resp-{k}", elem_classes=["resp-text"])
        with gr.Accordion("Model's view", open=True, visible=False, elem_id=f"{prefix}view-{k}") as box:
            view = gr.Markdown(elem_id=f"{prefix}view-md-{k}", elem_classes=["model-view"])
        rating = gr.Radio([str(i) for i in range(1, 8)], label="Rating (1 = poor, 7 = excellent)",
                          elem_id=f"{prefix}rating-{k}", elem_classes=["rating"])
        correct = gr.Radio(["correct", "incorrect"], label="Is it correct?", visible=False,
                           elem_id=f"{prefix}correct-{k}", elem_classes=["rating"])
        checklist = gr.CheckboxGroup([], label="Checklist: tick every item this response satisfies", visible=False,
                                     elem_id=f"{prefix}checklist-{k}")
        critique = gr.Radio(["agree", "disagree"], label="Do you agree with the model's critique?", visible=False,
                            elem_id=f"{prefix}critique-{k}", elem_classes=["rating"])
        pick = gr.Button(f"Best: {k}", elem_id=f"{prefix}pick-{k}", size="sm")
        regen = gr.Button("↻ New sample", elem_id=f"{prefix}regen-{k}", size="sm") if regenerate else None
    return CardControls(col, title, text, box, view, rating, correct, checklist, critique, pick, regen)


def build(ctx: AppContext, user_of: Callable[[gr.Request], str]) -> LabelTab:
    with gr.Row():
        study = gr.Dropdown(label="Study", choices=[], elem_id="study-select", scale=2, allow_custom_value=False)
        progress = gr.Markdown(elem_id="progress")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            prompt = gr.Markdown(elem_id="prompt", elem_classes=["prompt-box"])
            prompt_toggle = gr.Button("Show all of the prompt", visible=False, size="sm", elem_id="prompt-toggle")
            cards: list[CardControls] = []
            for start in (0, 4):
                with gr.Row(equal_height=False):
                    cards += [card(k) for k in range(start + 1, start + 5)]
            best = gr.Radio([], label="Best response", elem_id="best")
            pairwise = gr.Radio(PAIR_CHOICES, label="Response 1 vs Response 2", visible=False, elem_id="pairwise")
            invalid = gr.CheckboxGroup([], label="Checklist items that are not a valid criterion for this prompt",
                                       visible=False, elem_id="invalid-items")
            reference = gr.Textbox(label=f"Your reference answer (optional, up to {MAX_REFERENCE_CHARS:,} characters)",
                                   lines=2, max_length=MAX_REFERENCE_CHARS, visible=False, elem_id="reference")
            comment = gr.Textbox(label=f"Comment (optional, up to {MAX_COMMENT_CHARS:,} characters)", lines=2,
                                 max_length=MAX_COMMENT_CHARS, elem_id="comment")
            # Kept in view at the bottom of the window (style.css): a warning must not land below the fold.
            with gr.Column(elem_id="label-actions"):
                with gr.Row():
                    back = gr.Button("← Back", elem_id="back-btn", size="sm")
                    skip = gr.Button("Skip (S)", elem_id="skip-btn", size="sm")
                    submit = gr.Button("Submit (Ctrl+Enter)", variant="primary", elem_id="submit-btn")
                status = gr.Markdown(elem_id="status")
            gr.Markdown(KEY_HELP, elem_classes=["key-help"])
        with gr.Column(scale=1, min_width=240):
            guidelines = gr.Markdown(elem_id="guidelines", elem_classes=["guidelines"])
    state = gr.State(None)
    tab = LabelTab(study, progress, prompt, guidelines, cards, best, pairwise, invalid, reference, comment, status,
                   state, prompt_toggle, submit, skip)
    prompt_toggle.click(None, js=TOGGLE_PROMPT_JS)

    for k, c in enumerate(cards, start=1):
        c.pick.click(None, None, best, js=f"() => {{ window.critlabSetActiveCard && window.critlabSetActiveCard({k});"
                                          f" return '{k}'; }}")

    def load(study_name: str | None, request: gr.Request) -> list[Any]:
        try:
            return render_step(tab, label_flow.open_study(ctx, user_of(request), study_name))
        except NotMember as e:  # removed from the study while the page still listed it
            return keep_status(tab, warning(e))

    def do_submit(data: dict, request: gr.Request) -> list[Any]:
        # The inputs are given as a set, so Gradio passes one {component: value} dict.
        values = [data[c] for c in tab.answer_inputs()]
        st = values[0]
        if not st:
            return keep_status(tab, "Nothing to submit.")
        try:
            sub = _submission(st, values)
        except ServiceError as e:  # a text over its length limit
            return keep_status(tab, warning(e))
        # Answers already warned about (submitted again), or shown as they were stored (the reveal step, an
        # edit), need no second warning: the person confirms them by submitting.
        answered = _signature(sub)
        confirmed = answered in (st.get("warned"), st.get("prefill"))
        try:
            step = label_flow.submit_and_next(ctx, user_of(request), sub, confirmed=confirmed)
        except label_flow.CheckAnswers as e:
            return keep_status(tab, warning(e), state={**st, "warned": answered})
        except (ServiceError, NotMember) as e:  # NotMember: removed from the study with the item open
            return keep_status(tab, warning(e))
        return render_step(tab, step)

    def do_skip(st: dict | None, request: gr.Request) -> list[Any]:
        if not st:
            return keep_status(tab, "Nothing to skip.")
        try:
            step = label_flow.skip_and_next(ctx, user_of(request), st["study"], st["prompt_id"])
        except NotMember as e:
            return keep_status(tab, warning(e))
        return render_step(tab, step)

    def do_back(st: dict | None, study_name: str | None, request: gr.Request) -> list[Any]:
        if not study_name:
            return keep_status(tab, "")
        try:
            step = label_flow.back(ctx, user_of(request), study_name, st["prompt_id"] if st else None)
        except NotMember as e:
            return keep_status(tab, warning(e))
        return keep_status(tab, STATUS["no_back"]) if step.item is None else render_step(tab, step)

    # One submit at a time per session ("once") and a serialised writer underneath.
    submit.click(None, js=SUBMIT_START_JS)
    submit.click(do_submit, set(tab.answer_inputs()), tab.outputs(), api_visibility="private").then(
        None, js=SUBMIT_END_JS)
    skip.click(do_skip, [state], tab.outputs(), api_visibility="private")
    back.click(do_back, [state, study], tab.outputs(), api_visibility="private")
    study.input(load, [study], tab.outputs(), api_visibility="private")
    return tab


def _signature(a: labelling.Answers) -> list:
    """What the answer warnings look at, comparable across a round trip through Gradio's state."""
    return [a.best, sorted([int(r), v] for r, v in a.ratings.items())]


def _submission(st: dict, values: list[Any]) -> labelling.LabelSubmission:
    """The form's values (in `LabelTab.answer_inputs` order) as a submission."""
    _, best_pos, pair, invalid, reference, comment, *per_card = values
    ratings, correct, checks, critique = (per_card[i * MAX_RESPONSES:(i + 1) * MAX_RESPONSES] for i in range(4))
    order: list[int] = st["order"]
    n = len(order)
    return labelling.submission(
        study=st["study"], prompt_id=st["prompt_id"], shown_order=order, stage=st["stage"],
        best=order[int(best_pos) - 1] if best_pos else None,
        ratings={order[i]: int(v) for i, v in enumerate(ratings[:n]) if v},
        pairwise=pair or None,
        correct={order[i]: v == "correct" for i, v in enumerate(correct[:n]) if v},
        checklist_yes={order[i]: [int(x) for x in v] for i, v in enumerate(checks[:n]) if v},
        invalid_items=[int(x) for x in invalid or []],
        critique={order[i]: v for i, v in enumerate(critique[:n]) if v},
        reference=reference or "", comment=comment or "",
        idempotency_key=st["key"], duration_ms=min(max(0, int((time.time() - st["shown_at"]) * 1000)), labelling.MAX_DURATION_MS))


STATUS = {
    "opened": "",
    "no_study": ("No study to label yet: an admin creates one in the Studies tab, and adds annotators to its "
                 "members in the Admin tab."),
    "saved": "Saved prompt {prompt}.",
    "revised": "Saved prompt {prompt} (revised label after reveal).",
    "reveal": ("Saved prompt {prompt}. The model's view is now shown under each response: change anything and "
               "submit again to store a revised label, or submit as it is to go on."),
    "skipped": "Skipped prompt {prompt}; it comes back at the end.",
    "back": "Editing an earlier label: submit to replace it.",
    "back_revealed": ("Editing an earlier label. You have seen the model's view of this item, so your edit is "
                      "stored as a revised label; your blind label stays as it was."),
    "no_back": "Nothing earlier to go back to.",
}


# What the prompt box says when there is no item: a person with no study must not read "every item is done".
EMPTY_DONE = "Nothing to label here right now: every ready item is done (or the responses are still being generated)."
EMPTY_NO_STUDY = "No study for you to label yet (see below)."


def status_of(step: Step) -> str:
    """The status line after a step."""
    key = step.event
    if key == "saved" and step.revised:
        key = "revised"
    elif key == "back" and step.item is not None and step.item.blind and step.item.stage == "revealed":
        key = "back_revealed"
    return STATUS[key].format(prompt=md_literal(step.prompt or ""))


def render_step(tab: LabelTab, step: Step, status_text: str | None = None) -> list[Any]:
    """Every output of the Label tab for a step (status_text replaces the step's own status line)."""
    guidelines_md = "### Guidelines\n\n" + to_safe_html(step.guidelines) if step.guidelines else ""
    return _render(tab, step, guidelines_md, status_of(step) if status_text is None else status_text)


def _render(tab: LabelTab, step: Step, guidelines_md: str, status_text: str) -> list[Any]:
    item = step.item
    hidden = [gr.skip()] * MAX_RESPONSES
    if item is None:
        return [labelling.progress_text(None, step.done, step.total),
                gr.Markdown(EMPTY_NO_STUDY if step.event == "no_study" else EMPTY_DONE, elem_classes=["prompt-box"]),
                gr.Button(visible=False), guidelines_md,
                *[gr.Column(visible=False)] * MAX_RESPONSES, *hidden * 9,
                gr.Radio(choices=[], value=None, visible=False), gr.Radio(visible=False, value=None),
                gr.CheckboxGroup(visible=False, value=[]), gr.Textbox(visible=False, value=""),
                gr.Textbox(visible=False, value=""), status_text, None,
                gr.Button(visible=False), gr.Button(visible=False)]  # nothing to answer: no answer form
    q = set(item.questions)
    a = item.answers
    n = len(item.cards)
    positions = {c.response_id: i + 1 for i, c in enumerate(item.cards)}
    items = [(ci.question[:160], str(ci.id)) for ci in item.checklist]
    per: dict[str, list[Any]] = {k: [] for k in ("column", "title", "text", "view_box", "view", "rating", "correct",
                                                 "checklist", "critique", "pick")}
    for i in range(MAX_RESPONSES):
        c = item.cards[i] if i < n else None
        rid = c.response_id if c else None
        view = item.views.get(rid) if c and item.show_model_view else None
        picked = f" · ★ {', '.join(view.picked_by)}" if view and view.picked_by else ""
        per["column"].append(gr.Column(visible=c is not None))
        per["title"].append(f"**Response {i + 1}**{picked}")
        per["text"].append(earlier_turns_html([m.model_dump() for m in c.earlier_turns]) + to_safe_html(c.text)
                           + ("\n\n*[cut off at the token limit]*" if c.finish_reason == "length" else "")
                           if c else "")
        per["view_box"].append(gr.Accordion(visible=view is not None))
        per["view"].append(render_view(view, positions) if view is not None else "")
        per["rating"].append(gr.Radio(visible="rating" in q, value=str(a.ratings[rid]) if rid in a.ratings else None))
        per["correct"].append(gr.Radio(visible="correct" in q,
                                       value=None if rid not in a.correct else
                                       ("correct" if a.correct[rid] else "incorrect")))
        per["checklist"].append(gr.CheckboxGroup(choices=items, visible="checklist" in q and bool(items),
                                                 value=[str(x) for x in a.checklist_yes.get(rid, [])]))
        per["critique"].append(gr.Radio(visible="critique" in q and bool(view and view.critiques),
                                        value=a.critique.get(rid)))
        per["pick"].append(gr.Button(visible="best" in q))
    best_pos = next((str(i + 1) for i, c in enumerate(item.cards) if c.response_id == a.best), None)
    pair_value = a.pairwise
    st = {"study": item.study, "prompt_id": item.prompt_id, "order": [c.response_id for c in item.cards],
          "stage": item.stage, "revision": item.stage == "revealed" and item.blind, "key": uuid.uuid4().hex,
          "shown_at": time.time(), "prefill": _signature(a) if item.editing or item.stage == "revealed" else None}
    flags = " · *the model's view is shown*" if item.show_model_view else ""
    editing = " · *editing your earlier label*" if item.editing else ""
    header = f"**Prompt {md_literal(item.prompt_external_id)}**" + editing + flags
    long = sum(len(m.content) for m in item.messages) > LONG_PROMPT
    prompt_md = gr.Markdown(header + "\n\n" + chat_to_safe_html([m.model_dump() for m in item.messages]),
                            elem_classes=["prompt-box", "prompt-long"] if long else ["prompt-box"])
    return [labelling.progress_text(item), prompt_md,
            gr.Button("Show all of the prompt", visible=long), guidelines_md, *[x for k in per for x in per[k]],
            gr.Radio(choices=[str(i) for i in range(1, n + 1)], value=best_pos, visible="best" in q),
            gr.Radio(visible="pairwise" in q and n >= 2, value=pair_value),
            gr.CheckboxGroup(choices=items, visible="checklist" in q and bool(items), value=[str(x) for x in a.invalid_items]),
            gr.Textbox(visible="reference" in q, value=a.reference), gr.Textbox(visible="comment" in q, value=a.comment),
            status_text, st, gr.Button(visible=True), gr.Button(visible=True)]


def keep_status(tab: LabelTab, status_text: str, state: dict | None = None) -> list[Any]:
    """Leave everything as it is except the status line (and the item's state, when given)."""
    outs = [gr.skip()] * len(tab.outputs())
    outs[tab.outputs().index(tab.status)] = status_text
    if state is not None:
        outs[tab.outputs().index(tab.state)] = state
    return outs
