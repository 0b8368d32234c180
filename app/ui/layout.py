"""The Gradio Blocks: header, tabs, and the per-user set-up on page load."""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable

import gradio as gr

from app.render import md_literal
from app.services import label_flow, overview
from app.services.context import AppContext, PermissionDenied, ServiceError
from app.ui import admin_tab, agreement_tab, export_tab, label_tab, live_tab, refresh, studies_tab
from app.ui.errors import warning

# The page's own scripts: keyboard shortcuts, and what happens when the session ends (session.js).
HEAD = "".join(f"<script>\n{resources.files('app.ui').joinpath(name).read_text(encoding='utf-8')}\n</script>"
               for name in ("session.js", "hotkeys.js"))
CSS = resources.files("app.ui").joinpath("style.css").read_text(encoding="utf-8")

DEMO_MODEL_NOTE = ("⚠️ **Demo model.** Responses come from the embedded SmolLM2-135M: a tiny model that runs on "
                   "a laptop. Its answers are weak and its self-judgments carry **no signal**; for studies whose "
                   "numbers matter, serve a real model: your own GGUF (`--model PATH.gguf`) or an SGLang server.")


def demo_note(studies: list[str] | None) -> Any:
    """The banner as page load shows it (overview.demo_studies decides): hidden, or the note naming the
    studies whose responses or judgments come (or would come) from the demo model.

    >>> demo_note(["a_b"]).value.endswith("Studies concerned: a\\_b."), demo_note(None).visible
    (True, False)
    """
    if studies is None:
        return gr.Markdown(visible=False)
    names = f" Studies concerned: {', '.join(md_literal(n) for n in studies)}." if studies else ""
    return gr.Markdown(DEMO_MODEL_NOTE + names, visible=True)


def build_ui(ctx: AppContext, role_of: Callable[[str | None], str | None]) -> gr.Blocks:
    def user_of(request: gr.Request) -> str:
        if role_of(request.username) is None:
            raise PermissionDenied("log in first")
        return request.username

    def admin_of(request: gr.Request) -> str:
        if role_of(request.username) != "admin":
            raise PermissionDenied("admins only")
        return request.username

    with gr.Blocks(title="critlab") as demo:
        with gr.Row(elem_classes=["topbar"]):
            gr.Markdown("## critlab", elem_classes=["brand"])
            whoami = gr.Markdown(elem_id="whoami")
            # A button, not a Markdown link: Gradio opens Markdown links in a new tab, which left this
            # tab looking signed in. session.js logs out and replaces this page with the login form.
            logout = gr.Button("Log out", elem_id="logout-btn", size="sm", scale=0, min_width=90)
        # Hidden until page load: whether it shows depends on where the person's studies' responses and
        # judgments come from, not only on the server's engine (overview.demo_studies).
        demo_banner = gr.Markdown(DEMO_MODEL_NOTE, visible=False, elem_id="demo-note", elem_classes=["demo-note"])
        with gr.Tabs() as tabs:
            with gr.Tab("Label", id="label", elem_id="label-panel"):
                label = label_tab.build(ctx, user_of)
            with gr.Tab("Live", id="live", visible=False, elem_id="live-panel") as live_panel:
                lv = live_tab.build(ctx, user_of)
            with gr.Tab("Studies", id="studies", visible=False, elem_id="studies-panel") as studies_panel:
                st = studies_tab.build(ctx, admin_of, [label.study])
            with gr.Tab("Agreement", id="agreement", visible=False, elem_id="agreement-panel") as agreement_panel:
                agr = agreement_tab.build(ctx, admin_of)
            with gr.Tab("Admin", id="admin", visible=False, elem_id="admin-panel") as admin_panel:
                adm = admin_tab.build(ctx, admin_of)
            with gr.Tab("Export", id="export", visible=False, elem_id="export-panel") as export_panel:
                exp = export_tab.build(ctx, admin_of)
        sent = gr.State({})  # what the refresh timer last sent this page (app/ui/refresh.py)
        pickers = refresh.Pickers(label=label.study, live=lv.study, admin=st.study_choices,
                                  follow=[agr.study, exp.study], gen=st.gen_study)
        refresh.wire(ctx, role_of, user_of, pickers, st, sent)

        def refresh_agreement_studies(request: gr.Request) -> Any:
            admin_of(request)
            return gr.Dropdown(choices=overview.study_names(ctx))

        def open_in_label(study_name: str | None, prompt: str, request: gr.Request) -> list[Any]:
            """An admin opens one prompt of the Agreement tab in the Label tab (their own label view)."""
            user = admin_of(request)
            try:
                step = label_flow.open_prompt(ctx, user, study_name or "", prompt)
            except ServiceError as e:
                return [gr.skip(), gr.skip(), *label_tab.keep_status(label, warning(e))]
            return [gr.Tabs(selected="label"), gr.Dropdown(value=step.study),
                    *label_tab.render_step(label, step, f"Opened prompt {md_literal(step.prompt or '')} from the "
                                                        "Agreement tab.")]

        def on_load(request: gr.Request) -> list[Any]:
            user = user_of(request)
            role = role_of(user)
            is_admin = role == "admin"
            page = overview.page_load(ctx, user, admin=is_admin)
            ov, first, live_first = page.overview, page.first, page.live_first
            names, live_studies = ov.studies, ov.live_studies
            header = f"Signed in as **{md_literal(user)}** ({role})"  # a name is any text an admin typed
            admin_updates = ([studies_tab.table_rows(ov), studies_tab.jobs_markdown(ov),
                              studies_tab.model_rows(page.models), *admin_tab.people_updates(page.people),
                              *[gr.Dropdown(choices=names, value=first) for _ in (agr.study, exp.study)]]
                             if is_admin else [gr.skip()] * (5 + len(adm.outputs())))
            shown = refresh.initial(names, live_studies, pickers, is_admin)
            if is_admin:  # the tick sends the table and the jobs again only when they change
                shown.update(table=admin_updates[0], jobs=admin_updates[1])
            # Studies, Agreement, Admin and Export are for admins; Live also for its members
            return [header, demo_note(page.demo_model), *[gr.Tab(visible=is_admin) for _ in range(4)],
                    gr.Tab(visible=is_admin or bool(live_studies)),
                    gr.Dropdown(choices=live_studies, value=live_first),
                    gr.Dropdown(choices=page.live_prompts, value=None),
                    gr.Dropdown(choices=names, value=first),
                    *[gr.Dropdown(choices=names, value=first) for _ in st.study_choices], *admin_updates, shown,
                    *(label_tab.render_step(label, page.label) if page.label is not None
                      else label_tab.keep_status(label, warning(page.label_refused or "")))]

        logout.click(None, None, None, js="() => window.critlabLogout()")
        agreement_panel.select(refresh_agreement_studies, None, [agr.study], api_visibility="private")
        agr.open_btn.click(open_in_label, [agr.study, agr.open_id], [tabs, label.study, *label.outputs()],
                           api_visibility="private")
        demo.load(on_load, None, [whoami, demo_banner, studies_panel, agreement_panel, admin_panel, export_panel, live_panel,
                                  lv.study, lv.pick, label.study, *st.study_choices, st.overview, st.jobs,
                                  st.models, *adm.outputs(), agr.study, exp.study, sent, *label.outputs()],
                api_visibility="private")
    return demo
