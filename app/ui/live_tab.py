"""The Live tab: type (or pick) a prompt, watch N samples stream in side by side, then the model's view
fill in under each card; label on the spot and add it all to a study.

Callbacks call app.services.live and render its snapshots; the sampling and scoring run on the
session's own thread, so a callback only polls. Label controls appear once the samples are complete
and are then left alone while the scores arrive (re-rendering them would wipe what the person chose).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import gradio as gr
from pydantic import ValidationError

from app.render import md_literal, to_safe_html
from app.services import labelling, live
from app.services.context import AppContext
from app.ui.errors import USER_ERRORS
from app.ui.label_tab import PAIR_CHOICES, CardControls, card
from app.ui.model_view_md import render_view
from backend.methods.registry import DEFAULT_METHODS, method_choices
from storage.models import MAX_RESPONSES

POLL_SECONDS = 0.25
# window.critlabLiveEdited is set by hotkeys.js whenever the person types in the prompt box.
PICK_JS = "(study, pick) => { window.critlabLiveEdited = false; return [study, pick]; }"
FILL_PICKED_JS = "(picked, current) => (window.critlabLiveEdited || !picked) ? current : picked"
Mode = Literal["hide", "reset", "keep", "refresh"]
STATE_NOTE = {"waiting": "*waiting…*", "streaming": "▍"}


@dataclass
class LiveTab:
    study: gr.Dropdown
    pick: gr.Dropdown
    prompt: gr.Textbox
    status: gr.Markdown
    cards: list[CardControls]
    best: gr.Radio
    pairwise: gr.Radio
    reference: gr.Textbox
    comment: gr.Textbox
    add_status: gr.Markdown
    state: gr.State

    def per_card(self, *names: str) -> list[Any]:
        return [getattr(c, n) for n in names for c in self.cards]

    def label_outputs(self) -> list[Any]:
        return [*self.per_card("rating", "correct", "checklist", "critique", "pick"), self.best, self.pairwise,
                self.reference, self.comment]

    def answer_inputs(self) -> list[Any]:
        return [*self.per_card("rating", "correct", "checklist", "critique"), self.best, self.pairwise,
                self.reference, self.comment]

    def outputs(self) -> list[Any]:
        return [self.status, self.state, *self.per_card("column", "title", "text", "view_box", "view"),
                *self.label_outputs()]


def _setting_label(snap: live.Snapshot, setting: int) -> str:
    return snap.settings[setting].label() if len(snap.settings) > 1 else ""


def _card_text(c: live.LiveCard) -> str:
    body = to_safe_html(c.text) if c.text else ""
    if c.state in STATE_NOTE:
        return f"{body}\n\n{STATE_NOTE[c.state]}" if body else STATE_NOTE[c.state]
    if c.state in ("stopped", "failed"):
        return f"{body}\n\n**{md_literal(c.error or c.state)}**"  # errors quote server text: untrusted
    return body + ("\n\n*[cut off at the token limit]*" if c.finish_reason == "length" else "")


def _status(snap: live.Snapshot) -> str:
    done = sum(c.state in ("done", "stopped", "failed") for c in snap.cards)
    parts = [f"Samples: {done} / {len(snap.cards)} complete"]
    marks = {"waiting": "…", "running": "⏳", "done": "✓", "failed": "✗", "n/a": "–"}
    if snap.methods:
        parts.append("Scores: " + ", ".join(
            f"{m.method} {marks[m.state]}" + (f" ({m.seconds:.1f} s)" if m.seconds is not None else "")
            + (f" — {md_literal(m.error)}" if m.state in ("failed", "n/a") and m.error else "")
            + (" (answer extraction is a study setting)" if m.state == "n/a" and "extract" in (m.error or "") else "")
            for m in snap.methods))
    if not snap.busy:
        parts.append("**done**: label below, then Add to study" if snap.sampling_done else "stopped")
    return " · ".join(parts)


def _labels(snap: live.Snapshot, q: set[str], mode: Mode) -> list[Any]:
    """Label controls: hidden while sampling, reset once when the samples are complete, then kept
    (only the checklist items and critique switches follow the scores as they arrive)."""
    n = len(snap.cards)
    skip = [gr.skip()] * MAX_RESPONSES
    if mode == "keep":
        return [*skip * 5, gr.skip(), gr.skip(), gr.skip(), gr.skip()]
    show = mode != "hide"
    items = [(f"{i + 1}. {text[:160]}", str(i)) for i, text in enumerate(snap.checklist)]
    per: dict[str, list[Any]] = {k: [] for k in ("rating", "correct", "checklist", "critique", "pick")}
    for i in range(MAX_RESPONSES):
        c = snap.cards[i] if i < n else None
        ok = show and c is not None and c.state == "done"
        view = snap.views.get(c.slot) if c else None
        critique = ok and "critique" in q and bool(view and view.critiques)
        checklist = ok and "checklist" in q and bool(items)
        if mode == "refresh":  # keep the chosen values; only what depends on the scores changes
            per["rating"].append(gr.skip())
            per["correct"].append(gr.skip())
            per["checklist"].append(gr.CheckboxGroup(choices=items, visible=checklist))
            per["critique"].append(gr.Radio(visible=critique))
            per["pick"].append(gr.skip())
            continue
        per["rating"].append(gr.Radio(visible=ok and "rating" in q, value=None))
        per["correct"].append(gr.Radio(visible=ok and "correct" in q, value=None))
        per["checklist"].append(gr.CheckboxGroup(choices=items, visible=checklist, value=[]))
        per["critique"].append(gr.Radio(visible=critique, value=None))
        per["pick"].append(gr.Button(visible=ok and "best" in q))
    if mode == "refresh":
        return [*[x for k in per for x in per[k]], gr.skip(), gr.skip(), gr.skip(), gr.skip()]
    complete = [str(c.slot) for c in snap.cards if c.state == "done"]
    return [*[x for k in per for x in per[k]],
            gr.Radio(choices=complete, value=None, visible=show and "best" in q),
            gr.Radio(value=None, visible=show and "pairwise" in q and n >= 2),
            gr.Textbox(value="", visible=show and "reference" in q), gr.Textbox(value="", visible=show)]


def render(tab: LiveTab, snap: live.Snapshot, q: set[str], mode: Mode) -> list[Any]:
    per: dict[str, list[Any]] = {k: [] for k in ("column", "title", "text", "view_box", "view")}
    positions = {c.slot: c.slot for c in snap.cards}
    for i in range(MAX_RESPONSES):
        c = snap.cards[i] if i < len(snap.cards) else None
        view = snap.views.get(c.slot) if c else None
        per["column"].append(gr.Column(visible=c is not None))
        setting = f" · {_setting_label(snap, c.setting)}" if c and _setting_label(snap, c.setting) else ""
        per["title"].append(f"**Response {i + 1}**{setting}" + (f" · seed {c.seed}" if c else ""))
        per["text"].append(_card_text(c) if c else "")
        per["view_box"].append(gr.Accordion(visible=bool(view and not view.empty)))
        per["view"].append(render_view(view, positions) if view and not view.empty else "")
    return [_status(snap), snap.id, *[x for k in per for x in per[k]], *_labels(snap, q, mode)]


def build(ctx: AppContext, user_of: Callable[[gr.Request], str]) -> LiveTab:
    sessions = live.LiveSessions(ctx)
    gr.Markdown("Type a prompt (or pick one from a study), sample it, and watch the model judge its own "
                "responses. Labels made here see the model's scores, so they are stored as **not blind** "
                "(`revealed`, source `live`) and never count in blind agreement figures.")
    with gr.Row():
        study = gr.Dropdown(label="Study (prompts to pick from; labels are added to it)", choices=[],
                            elem_id="live-study", scale=2)
        pick = gr.Dropdown(label="Pick a prompt of the study", choices=[], elem_id="live-pick", scale=1)
    prompt = gr.Textbox(label="Prompt", lines=3, placeholder="Ask the model something…", elem_id="live-prompt")
    # The picked prompt's text arrives here first; a script then moves it into the prompt box unless the
    # person typed there since picking (a fast typist's edit must not be replaced by the late answer).
    picked_text = gr.Textbox(visible=False, elem_id="live-picked-text")
    with gr.Row():
        n = gr.Slider(1, MAX_RESPONSES, value=4, step=1, label="Samples per setting (n)", elem_id="live-n")
        temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature", elem_id="live-temperature")
        top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="Top-p", elem_id="live-top-p")
        cap = f"samples × max tokens: at most {ctx.live_token_cap:,}" if ctx.live_token_cap else None
        max_tokens = gr.Number(value=256, precision=0, minimum=1, maximum=4096, label="Max tokens", info=cap,
                               elem_id="live-max-tokens")
    with gr.Row():
        compare = gr.Checkbox(label="Compare with a second sampling setting (n samples each, side by side)",
                              elem_id="live-compare")
        temperature_b = gr.Slider(0, 2, value=1.0, step=0.05, label="Temperature (second setting)", visible=False,
                                  elem_id="live-temperature-b")
        top_p_b = gr.Slider(0.05, 1, value=0.9, step=0.05, label="Top-p (second setting)", visible=False,
                            elem_id="live-top-p-b")
    with gr.Accordion(f"Self-evaluation methods ({len(DEFAULT_METHODS)} by default, none of which writes text: "
                      "seconds per card)",
                      open=False, elem_id="live-methods-box"):
        methods = gr.CheckboxGroup(method_choices(), value=list(DEFAULT_METHODS), elem_id="live-methods",
                                   label="Run once the samples are complete (checklist, critique, rubric and gsa "
                                         "write text: minutes on the embedded model)")
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id="live-generate")
        regen_all = gr.Button("↻ New samples for all", elem_id="live-regen-all")
        stop = gr.Button("Stop", variant="stop", elem_id="live-stop")
    status = gr.Markdown(elem_id="live-status")
    cards: list[CardControls] = []
    for start in (0, 4):
        with gr.Row(equal_height=False):
            cards += [card(k, prefix="live-", regenerate=True) for k in range(start + 1, start + 5)]
    best = gr.Radio([], label="Best response", visible=False, elem_id="live-best")
    pairwise = gr.Radio(PAIR_CHOICES, label="Response 1 vs Response 2", visible=False, elem_id="live-pairwise")
    reference = gr.Textbox(label=f"Your reference answer (optional, up to {labelling.MAX_REFERENCE_CHARS:,} characters)",
                           lines=2, max_length=labelling.MAX_REFERENCE_CHARS, visible=False, elem_id="live-reference")
    comment = gr.Textbox(label=f"Comment (optional, up to {labelling.MAX_COMMENT_CHARS:,} characters)", lines=2,
                         max_length=labelling.MAX_COMMENT_CHARS, visible=False, elem_id="live-comment")
    add = gr.Button("Add to study", variant="primary", elem_id="live-add")
    add_status = gr.Markdown(elem_id="live-add-status")
    state = gr.State(None)
    tab = LiveTab(study, pick, prompt, status, cards, best, pairwise, reference, comment, add_status, state)
    n_out = len(tab.outputs())

    def message(text: str | BaseException) -> list[Any]:
        return [f"⚠️ {md_literal(str(text))}", *[gr.skip()] * (n_out - 1)]

    def follow(run: live.LiveRun) -> Iterator[list[Any]]:
        q = set(run.questions)
        shown = False
        while True:
            snap = run.session.snapshot()
            busy = snap.busy
            if snap.sampling_done and not shown:
                mode: Mode = "reset"
                shown = True
            elif shown:
                mode = "keep" if busy else "refresh"
            else:
                mode = "hide"
            yield render(tab, snap, q, mode)
            if not busy:
                return
            time.sleep(POLL_SECONDS)

    def do_generate(study_name: str | None, picked: str | None, text: str, n_: float, t: float, p: float,
                    mt: float | None, cmp: bool, tb: float, pb: float, methods_: list[str],
                    request: gr.Request) -> Iterator[list[Any]]:
        try:
            user = user_of(request)
            if not (text or "").strip():
                raise ValueError("type a prompt first")
            settings = [live.LiveSetting(temperature=t, top_p=p, max_tokens=int(mt or 256))]
            if cmp:
                settings.append(live.LiveSetting(temperature=tb, top_p=pb, max_tokens=int(mt or 256)))
            n_cards = int(n_) * len(settings)
            if n_cards > MAX_RESPONSES:
                raise ValueError(f"{int(n_)} samples x {len(settings)} settings is more than {MAX_RESPONSES} cards")
            req = live.LiveRequest(messages=[{"role": "user", "content": text.strip()}], n=int(n_), settings=settings,
                                   methods=methods_ or [], study=study_name or None)
            run = sessions.generate(user, req, picked)
        except ValidationError as e:
            yield message("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()))
            return
        except USER_ERRORS as e:
            yield message(e)
            return
        yield from follow(run)

    def restart(slots: list[int] | None) -> Callable[..., Iterator[list[Any]]]:
        def run(session_id: str | None, study_name: str | None, request: gr.Request) -> Iterator[list[Any]]:
            try:
                run_ = sessions.regenerate(user_of(request), session_id, slots, study_name or None)
            except USER_ERRORS as e:
                yield message(e)
                return
            yield from follow(run_)
        return run

    def do_stop(session_id: str | None, request: gr.Request) -> str:
        try:
            sessions.stop(user_of(request), session_id)
        except USER_ERRORS as e:
            return f"⚠️ {md_literal(str(e))}"
        return "Stopping: what has arrived is kept."

    def do_add(data: dict, request: gr.Request) -> str:
        try:
            result = sessions.add(user_of(request), data[state], data[study] or None, _answers(tab, data))
        except USER_ERRORS as e:
            return f"⚠️ {md_literal(str(e))}"
        if result.already_added:
            return f"Already added to **{md_literal(result.study)}** as prompt `{result.prompt_external_id}`."
        return (f"Added to **{md_literal(result.study)}** as prompt `{result.prompt_external_id}`: "
                f"{result.responses} responses, "
                f"{result.model_judgments} model judgments, {result.labels} labels (stored as not blind). "
                "It is now in the study's Label queue.")

    def on_study(study_name: str | None, request: gr.Request) -> Any:
        try:
            ids = live.study_prompts(ctx, user_of(request), study_name) if study_name else []
        except USER_ERRORS:
            ids = []
        return gr.Dropdown(choices=ids, value=None)

    def on_pick(study_name: str | None, picked: str | None, request: gr.Request) -> str:
        if not (study_name and picked):
            return ""
        try:
            return live.prompt_text(ctx, user_of(request), study_name, picked)
        except USER_ERRORS:
            return ""

    for k, c in enumerate(cards, start=1):
        c.pick.click(None, None, best, js=f"() => '{k}'")
        assert c.regenerate is not None
        c.regenerate.click(restart([k]), [state, study], tab.outputs(), api_visibility="private")
    compare.change(lambda on: [gr.Slider(visible=on), gr.Slider(visible=on)], [compare], [temperature_b, top_p_b],
                   api_visibility="private")
    study.input(on_study, [study], [pick], api_visibility="private")
    pick.input(on_pick, [study, pick], [picked_text], api_visibility="private", js=PICK_JS).then(
        None, [picked_text, prompt], [prompt], js=FILL_PICKED_JS)
    generate.click(do_generate, [study, pick, prompt, n, temperature, top_p, max_tokens, compare, temperature_b,
                                 top_p_b, methods], tab.outputs(), api_visibility="private")
    regen_all.click(restart(None), [state, study], tab.outputs(), api_visibility="private")
    # A new run makes the last "Added to …" or error message stale.
    for button in (generate, regen_all, *[c.regenerate for c in cards]):
        button.click(lambda: "", None, [add_status], api_visibility="private", queue=False)
    stop.click(do_stop, [state], [status], api_visibility="private")
    add.click(do_add, {state, study, *tab.answer_inputs()}, [add_status], api_visibility="private")
    return tab


def _answers(tab: LiveTab, data: dict) -> labelling.Answers:
    """The form's values as answers keyed by card slot (checklist items by index)."""
    def slots(name: str) -> list[tuple[int, Any]]:
        return [(k, data[c]) for k, c in enumerate(tab.per_card(name), start=1) if data[c] not in (None, "", [])]

    return labelling.Answers(
        best=int(data[tab.best]) if data[tab.best] else None,
        ratings={k: int(v) for k, v in slots("rating")},
        pairwise=data[tab.pairwise] or None,
        correct={k: v == "correct" for k, v in slots("correct")},
        checklist_yes={k: [int(x) for x in v] for k, v in slots("checklist")},
        critique=dict(slots("critique")),
        reference=data[tab.reference] or "", comment=data[tab.comment] or "")
