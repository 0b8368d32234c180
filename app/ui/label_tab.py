"""The Label tab: the prompt, up to 8 response cards side by side, best pick, ratings, comment.

The cards are created once and shown or hidden per item (re-rendered inputs lose their values).
Callbacks only call app.services.labelling and render what it returns.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from app.render import chat_to_safe_html, to_safe_html
from app.ui.model_view_md import render_view
from app.services import labelling
from app.services.context import AppContext, ServiceError
from storage import studies
from storage.models import MAX_RESPONSES

KEY_HELP = ("Keys: **1–8** pick the best · **J/K** move between cards · **Shift+1–7** rate the highlighted "
            "card · **Ctrl+Enter** submit · **S** skip · **←** back to the previous item")
RESET_ACTIVE_JS = "() => { window.critlabSetActiveCard && window.critlabSetActiveCard(1); }"


@dataclass
class LabelTab:
    study: gr.Dropdown
    progress: gr.Markdown
    prompt: gr.Markdown
    guidelines: gr.Markdown
    columns: list[gr.Column]
    titles: list[gr.Markdown]
    texts: list[gr.Markdown]
    view_boxes: list[gr.Accordion]
    views: list[gr.Markdown]
    ratings: list[gr.Radio]
    best: gr.Radio
    comment: gr.Textbox
    status: gr.Markdown
    state: gr.State

    def outputs(self) -> list[Any]:
        return [self.progress, self.prompt, self.guidelines, *self.columns, *self.titles, *self.texts,
                *self.view_boxes, *self.views, *self.ratings, self.best, self.comment, self.status, self.state]


def build(ctx: AppContext, user_of: Callable[[gr.Request], str]) -> LabelTab:
    with gr.Row():
        study = gr.Dropdown(label="Study", choices=[], elem_id="study-select", scale=2, allow_custom_value=False)
        progress = gr.Markdown(elem_id="progress")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            prompt = gr.Markdown(elem_id="prompt", elem_classes=["prompt-box"])
            columns, titles, texts, view_boxes, views, ratings, picks = [], [], [], [], [], [], []
            for start in (0, 4):
                with gr.Row(equal_height=False):
                    for k in range(start + 1, start + 5):
                        with gr.Column(visible=False, elem_id=f"card-{k}", elem_classes=["resp-card"],
                                       min_width=220) as col:
                            titles.append(gr.Markdown(f"**Response {k}**", elem_id=f"title-{k}",
                                                      elem_classes=["card-title"]))
                            texts.append(gr.Markdown(elem_id=f"resp-{k}", elem_classes=["resp-text"]))
                            with gr.Accordion("Model's view", open=False, visible=False,
                                              elem_id=f"view-{k}") as box:
                                views.append(gr.Markdown(elem_id=f"view-md-{k}", elem_classes=["model-view"]))
                            view_boxes.append(box)
                            ratings.append(gr.Radio([str(i) for i in range(1, 8)], label="Rating (1 = poor, 7 = "
                                                    "excellent)", elem_id=f"rating-{k}", elem_classes=["rating"]))
                            picks.append(gr.Button(f"Best: {k}", elem_id=f"pick-{k}", size="sm"))
                        columns.append(col)
            best = gr.Radio([], label="Best response", elem_id="best")
            comment = gr.Textbox(label="Comment (optional)", lines=2, elem_id="comment")
            with gr.Row():
                back = gr.Button("← Back", elem_id="back-btn", size="sm")
                skip = gr.Button("Skip (S)", elem_id="skip-btn", size="sm")
                submit = gr.Button("Submit (Ctrl+Enter)", variant="primary", elem_id="submit-btn")
            status = gr.Markdown(elem_id="status")
            gr.Markdown(KEY_HELP, elem_classes=["key-help"])
        with gr.Column(scale=1, min_width=240):
            guidelines = gr.Markdown(elem_id="guidelines", elem_classes=["guidelines"])
    state = gr.State(None)
    tab = LabelTab(study, progress, prompt, guidelines, columns, titles, texts, view_boxes, views, ratings, best,
                   comment, status, state)

    for k, pick in enumerate(picks, start=1):
        pick.click(None, None, best, js=f"() => {{ window.critlabSetActiveCard && window.critlabSetActiveCard({k});"
                                        f" return '{k}'; }}")

    def render(item: labelling.LabelItem | None, status_text: str, study_name: str | None) -> list[Any]:
        guidelines_md = ""
        if study_name:
            s = studies.get_study(ctx.db, study_name)
            guidelines_md = "### Guidelines\n\n" + to_safe_html(s.guidelines) if s.guidelines else ""
        if item is None:
            hidden = [gr.Column(visible=False)] * MAX_RESPONSES
            return [labelling.progress_text(None), "Nothing to label here right now: every ready item is done "
                    "(or the responses are still being generated).", guidelines_md, *hidden,
                    *[gr.skip()] * MAX_RESPONSES, *[""] * MAX_RESPONSES, *[gr.Accordion(visible=False)] * MAX_RESPONSES,
                    *[""] * MAX_RESPONSES, *[None] * MAX_RESPONSES, gr.Radio(choices=[], value=None), "",
                    status_text, None]
        n = len(item.cards)
        cols = [gr.Column(visible=i < n) for i in range(MAX_RESPONSES)]
        texts_ = [to_safe_html(c.text) + (" \n\n*[cut off at the token limit]*" if c.finish_reason == "length" else "")
                  if i < n else "" for i, c in _pad(item.cards)]
        ratings_ = [str(item.ratings[c.response_id]) if c and c.response_id in item.ratings else None
                    for _, c in _pad(item.cards)]
        best_pos = next((str(i + 1) for i, c in enumerate(item.cards) if c.response_id == item.best), None)
        positions = {c.response_id: i + 1 for i, c in enumerate(item.cards)}
        titles_, boxes_, views_ = [], [], []
        for i, c in _pad(item.cards):
            view = item.views.get(c.response_id) if c and item.show_model_view else None
            picked = f" · ★ {', '.join(view.picked_by)}" if view and view.picked_by else ""
            titles_.append(f"**Response {i + 1}**{picked}")
            boxes_.append(gr.Accordion(visible=view is not None))
            views_.append(render_view(view, positions) if view is not None else "")
        st = {"study": item.study, "prompt_id": item.prompt_id, "order": [c.response_id for c in item.cards],
              "key": uuid.uuid4().hex, "shown_at": time.time()}
        header = f"**Prompt {item.prompt_external_id}**" + (" · *editing your earlier label*" if item.editing else "")
        return [labelling.progress_text(item), header + "\n\n" + chat_to_safe_html([m.model_dump() for m in item.messages]),
                guidelines_md, *cols, *titles_, *texts_, *boxes_, *views_, *ratings_,
                gr.Radio(choices=[str(i) for i in range(1, n + 1)], value=best_pos), item.comment, status_text, st]

    def load(study_name: str | None, request: gr.Request) -> list[Any]:
        if not study_name:
            return render(None, "No study yet: an admin creates one in the Studies tab.", None)
        return render(labelling.next_item(ctx, user_of(request), study_name), "", study_name)

    def do_submit(st: dict | None, best_pos: str | None, comment_text: str, r1: str | None, r2: str | None,
                  r3: str | None, r4: str | None, r5: str | None, r6: str | None, r7: str | None, r8: str | None,
                  request: gr.Request) -> list[Any]:
        # Gradio injects the request only into a parameter annotated gr.Request, hence no *args here.
        rating_values = [r1, r2, r3, r4, r5, r6, r7, r8]
        if not st:
            return render(None, "Nothing to submit.", None)
        user = user_of(request)
        order = st["order"]
        sub = labelling.LabelSubmission(
            study=st["study"], prompt_id=st["prompt_id"], shown_order=order,
            best=order[int(best_pos) - 1] if best_pos else None,
            ratings={order[i]: int(v) for i, v in enumerate(rating_values[: len(order)]) if v},
            comment=comment_text, idempotency_key=st["key"],
            duration_ms=int((time.time() - st["shown_at"]) * 1000))
        try:
            labelling.submit(ctx, user, sub)
        except ServiceError as e:
            return _keep(tab, f"⚠️ {e}")
        nxt = labelling.next_item(ctx, user, st["study"], after=st["prompt_id"])
        return render(nxt, f"Saved prompt {_external(ctx, st['prompt_id'])}.", st["study"])

    def do_skip(st: dict | None, request: gr.Request) -> list[Any]:
        if not st:
            return _keep(tab, "Nothing to skip.")
        user = user_of(request)
        labelling.skip(ctx, user, st["study"], st["prompt_id"])
        nxt = labelling.next_item(ctx, user, st["study"], after=st["prompt_id"])
        return render(nxt, f"Skipped prompt {_external(ctx, st['prompt_id'])}; it comes back at the end.", st["study"])

    def do_back(st: dict | None, study_name: str | None, request: gr.Request) -> list[Any]:
        if not study_name:
            return _keep(tab, "")
        prev = labelling.previous_item(ctx, user_of(request), study_name, st["prompt_id"] if st else None)
        if prev is None:
            return _keep(tab, "Nothing earlier to go back to.")
        return render(prev, "Editing an earlier label: submit to replace it.", study_name)

    inputs = [state, best, comment, *ratings]
    # One submit at a time per session ("once") and a serialised writer underneath.
    submit.click(do_submit, inputs, tab.outputs(), api_visibility="private").then(None, js=RESET_ACTIVE_JS)
    skip.click(do_skip, [state], tab.outputs(), api_visibility="private").then(None, js=RESET_ACTIVE_JS)
    back.click(do_back, [state, study], tab.outputs(), api_visibility="private").then(None, js=RESET_ACTIVE_JS)
    study.input(load, [study], tab.outputs(), api_visibility="private").then(None, js=RESET_ACTIVE_JS)
    tab.load = load  # type: ignore[attr-defined]
    return tab


def _pad(cards: list[labelling.Card]) -> list[tuple[int, labelling.Card | None]]:
    return [(i, cards[i] if i < len(cards) else None) for i in range(MAX_RESPONSES)]


def _external(ctx: AppContext, prompt_id: int) -> str:
    return str(ctx.db.fetchval("SELECT external_id FROM prompt WHERE id = ?", [prompt_id]))


def _keep(tab: LabelTab, status_text: str) -> list[Any]:
    """Leave everything as it is except the status line."""
    outs = [gr.skip()] * len(tab.outputs())
    outs[tab.outputs().index(tab.status)] = status_text
    return outs
