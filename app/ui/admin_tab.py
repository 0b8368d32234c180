"""The Admin tab (admins only; every handler checks the role again server-side): add people, see who can
log in and which studies each may label, disable or enable them, reset their passwords, and choose an
annotator's studies (their memberships). Each action is one admin operation (app/services/ops.py), the same
one the CLI runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from app.services.context import AppContext, ServiceError
from app.services.ops import run_op, run_op_then_people
from app.render import md_literal
from app.ui.errors import USER_ERRORS, shown_errors

HEADERS = ["name", "role", "state", "studies"]
STUDIES_LABEL = "Studies this person may label (a member of each)"
ADMIN_STUDIES_LABEL = "Admins open every study"


@dataclass
class AdminTab:
    table: gr.Dataframe
    person: gr.Dropdown

    def outputs(self) -> list[gr.components.Component]:
        """What `people_updates` fills, in order."""
        return [self.table, self.person]


def _studies_cell(studies: list[str] | None) -> str:
    return "every study" if studies is None else ", ".join(studies) or "none"


def people_updates(people: list[dict[str, Any]]) -> list[Any]:
    """The people table and the person picker's choices for the list_annotators operation's rows."""
    rows = [[a["name"], a["role"], "disabled" if a["disabled"] else "active", _studies_cell(a["studies"])]
            for a in people]
    return [rows, gr.Dropdown(choices=[a["name"] for a in people])]


def studies_box(r: dict[str, Any] | None) -> Any:
    """The study checkboxes for a person_studies result (None: nobody chosen)."""
    if r is None:
        return gr.CheckboxGroup(choices=[], value=[], label=STUDIES_LABEL, interactive=False)
    if r["member_of"] is None:
        return gr.CheckboxGroup(choices=r["studies"], value=r["studies"], label=ADMIN_STUDIES_LABEL, interactive=False)
    return gr.CheckboxGroup(choices=r["studies"], value=r["member_of"], label=STUDIES_LABEL, interactive=True)


def build(ctx: AppContext, admin_of: Callable[[gr.Request], str]) -> AdminTab:
    gr.Markdown("### Add a person")
    with gr.Row():
        name = gr.Textbox(label="Name", elem_id="ann-name")
        role = gr.Radio(["annotator", "admin"], value="annotator", label="Role", elem_id="ann-role")
    add = gr.Button("Add (a password is generated and shown once)", elem_id="ann-add")
    gr.Markdown("### Manage a person")
    gr.Markdown("Disabling or resetting a password logs the person out of every open session at once; "
                "their labels stay.")
    with gr.Row():
        person = gr.Dropdown(label="Person", choices=[], elem_id="ann-pick", scale=2)
        disable = gr.Button("Disable", elem_id="ann-disable", variant="stop")
        enable = gr.Button("Enable", elem_id="ann-enable")
        reset = gr.Button("Reset password", elem_id="ann-reset")
    with gr.Row(equal_height=False):
        member_of = gr.CheckboxGroup([], label=STUDIES_LABEL, interactive=False, elem_id="ann-studies", scale=3)
        save_studies = gr.Button("Save studies", elem_id="ann-studies-save", scale=0, min_width=140)
    gr.Markdown("An annotator labels only the studies ticked here; removing one ends their access at once (the "
                "items they had reserved go back to the queue, their labels stay). New studies start with no "
                "members. The same as `critlab studies members add|remove`.", elem_classes=["key-help"])
    status = gr.Markdown(elem_id="ann-status")
    gr.Markdown("### People")
    table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="ann-table")

    @shown_errors(4)
    def do_add(name_: str, role_: str, request: gr.Request) -> tuple[Any, ...]:
        admin = admin_of(request)
        r, people = run_op_then_people(ctx, admin, "add_annotator", {"name": name_, "role": role_})
        msg = (f"Added **{md_literal(r['name'])}** ({r['role']}). Password: `{r['password']}` (shown once; pass it on "
               "securely).")
        return msg, *people_updates(people), ""  # the name box clears for the next person

    def change(op: str, done: Callable[[dict[str, Any]], str]) -> Callable[..., tuple[Any, ...]]:
        @shown_errors(3)
        def handler(name_: str | None, request: gr.Request) -> tuple[Any, ...]:
            admin = admin_of(request)
            if not name_:
                raise ServiceError("choose a person first")
            r, people = run_op_then_people(ctx, admin, op, {"name": name_})
            return done(r), *people_updates(people)
        handler.__name__ = f"do_{op}"  # names the event in /ui/config (the security tests list events)
        return handler

    def do_pick(name_: str | None, request: gr.Request) -> Any:
        # Leaves the status line alone: it may show a password that is shown only once.
        try:
            admin = admin_of(request)
            return studies_box(run_op(ctx, admin, "person_studies", {"name": name_}) if name_ else None)
        except USER_ERRORS:
            return gr.skip()

    @shown_errors(4)
    def do_save_studies(name_: str | None, chosen: list[str] | None, request: gr.Request) -> tuple[Any, ...]:
        admin = admin_of(request)
        if not name_:
            raise ServiceError("choose a person first")
        r, people = run_op_then_people(ctx, admin, "set_studies", {"name": name_, "studies": chosen or []})
        changes = [f"added to {', '.join(map(md_literal, r['added']))}"] * bool(r["added"]) + \
                  [f"removed from {', '.join(map(md_literal, r['removed']))}"] * bool(r["removed"])
        msg = (f"**{md_literal(r['name'])}** may label: {', '.join(map(md_literal, r['member_of'])) or 'no study'}"
               f" ({'; '.join(changes) or 'no change'}).")
        return msg, *people_updates(people)[:1], gr.skip(), studies_box(r)

    person.change(do_pick, [person], [member_of], api_visibility="private")
    save_studies.click(do_save_studies, [person, member_of], [status, table, person, member_of],
                       api_visibility="private")
    add.click(do_add, [name, role], [status, table, person, name], api_visibility="private")
    disable.click(change("disable_annotator", lambda r: f"Disabled **{md_literal(r['name'])}**: their sessions have ended."),
                  [person], [status, table, person], api_visibility="private")
    enable.click(change("enable_annotator", lambda r: f"Enabled **{md_literal(r['name'])}**: they can log in again."),
                 [person], [status, table, person], api_visibility="private")
    reset.click(change("reset_password", lambda r: (
        f"New password for **{md_literal(r['name'])}**: `{r['password']}` (shown once; pass it on securely). "
        "Their sessions have ended.")), [person], [status, table, person], api_visibility="private")
    return AdminTab(table, person)
