"""Keep an open page current: a timer refreshes every study picker, the studies table and the jobs.

What a page was last sent is kept per session, so a tick sends only what changed: a picker's choices
are sent again only when the studies changed, and never while the person has that picker focused
(they are typing or choosing in it); it gets them on a later tick. Only choices are sent, never a value,
so a selection stays; the Agreement and Export pickers, when empty, start on the study chosen elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from app.services import overview
from app.services.context import AppContext, PermissionDenied
from app.ui import studies_tab

REFRESH_SECONDS = 2.0


@dataclass
class Pickers:
    label: gr.Dropdown  # the studies this person may label (every study for an admin)
    live: gr.Dropdown  # the studies this person may use live
    admin: list[gr.Dropdown]  # Studies tab: import, generate/score, settings
    follow: list[gr.Dropdown]  # Agreement, Export: start on a study
    gen: gr.Dropdown  # the Studies tab's study, which the follow pickers start on

    def all(self) -> list[gr.Dropdown]:
        return [self.label, self.live, *self.admin, *self.follow]


def _focus_js(ids: list[str]) -> str:
    """Passes the tick's inputs through, with the elem_id of the picker that has the focus (or "") as the
    second one."""
    return ("(shown, focused, ...rest) => { const ids = " + json.dumps(ids) + "; let e = document.activeElement; "
            "while (e && !ids.includes(e.id)) e = e.parentElement; return [shown, e ? e.id : '', ...rest]; }")


def initial(names: list[str], live_names: list[str], pickers: Pickers, admin: bool) -> dict[str, Any]:
    """What the page load sent, as the tick remembers it."""
    sent: dict[str, Any] = {pickers.label.elem_id: names, pickers.live.elem_id: live_names}
    if admin:
        sent.update({p.elem_id: names for p in [*pickers.admin, *pickers.follow]})
    return sent


def wire(ctx: AppContext, role_of: Callable[[str | None], str | None], user_of: Callable[[gr.Request], str],
         pickers: Pickers, studies: studies_tab.StudiesTab, sent: gr.State) -> None:
    timer = gr.Timer(REFRESH_SECONDS)
    focused = gr.Textbox(visible=False, elem_id="refresh-focus")
    ids = [p.elem_id for p in pickers.all()]
    outputs = [sent, studies.jobs, studies.ended, studies.overview, *pickers.all()]

    assert len(pickers.follow) == 2, "tick takes the Agreement and Export values by name"

    def tick(shown: dict[str, Any] | None, focus: str, gen_value: str | None, label_value: str | None,
             agr_value: str | None, export_value: str | None, request: gr.Request) -> list[Any]:
        follow_values = [agr_value, export_value]
        try:
            user = user_of(request)
        except PermissionDenied:
            return [gr.skip()] * len(outputs)
        admin = role_of(user) == "admin"
        ov = overview.page_overview(ctx, user, admin=admin)
        shown = dict(shown or {})
        wanted = [(pickers.label, ov.studies), (pickers.live, ov.live_studies)]
        if admin:
            wanted += [(p, ov.studies) for p in [*pickers.admin, *pickers.follow]]
        updates: dict[str, Any] = {}
        preferred = next((v for v in (gen_value, label_value) if v in ov.studies), ov.studies[0] if ov.studies else None)
        for picker, names in wanted:
            if picker.elem_id == focus:
                continue
            empty_follow = picker in pickers.follow and not follow_values[pickers.follow.index(picker)]
            if empty_follow and preferred:
                updates[picker.elem_id] = gr.Dropdown(choices=names, value=preferred)
            elif shown.get(picker.elem_id) != names:
                updates[picker.elem_id] = gr.Dropdown(choices=names)
            else:
                continue
            shown[picker.elem_id] = names
        out: list[Any] = [shown]
        if admin:
            jobs_text, rows = studies_tab.jobs_markdown(ov), studies_tab.table_rows(ov)
            ended = ",".join(str(j.job.id) for j in ov.ended)
            for key, value in (("jobs", jobs_text), ("ended", ended), ("table", rows)):
                out.append(value if shown.get(key) != value else gr.skip())
                shown[key] = value
        else:
            out += [gr.skip()] * 3
        return out + [updates.get(i, gr.skip()) for i in ids]

    timer.tick(tick, [sent, focused, pickers.gen, pickers.label, *pickers.follow], outputs, js=_focus_js(ids),
               api_visibility="private", show_progress="hidden", queue=True)
