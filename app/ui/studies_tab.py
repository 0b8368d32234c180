"""The Studies and Admin tabs (admins only; every handler checks the role again server-side)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from app.services.context import AppContext, EngineConfig, PermissionDenied, ServiceError
from app.services.ops import run_op
from app.ui import study_settings
from app.ui.errors import shown_errors
from backend.methods.registry import method_ids
from storage import jobs, studies
from storage.models import Job



def progress_markdown(job: Job | None) -> str:
    """A text progress bar for a job.

    >>> progress_markdown(Job(id=3, kind="generate", status="running", done=5, total=10))
    '**Job #3 (generate): running** `██████████░░░░░░░░░░` 5 / 10 (50%)'
    """
    if job is None:
        return "No job yet."
    frac = job.done / job.total if job.total else (1.0 if job.status == "done" else 0.0)
    bar = "█" * round(20 * frac) + "░" * (20 - round(20 * frac))
    text = f"**Job #{job.id} ({job.kind}): {job.status}** `{bar}` {job.done} / {job.total} ({frac:.0%})"
    if job.error:
        text += f"\n\n⚠️ {job.error}"
    return text


@dataclass
class StudiesTab:
    study_choices: list[gr.Dropdown]
    overview: gr.Dataframe
    settings: study_settings.SettingsPanel


def build(ctx: AppContext, admin_of: Callable[[gr.Request], str], other_study_pickers: list[gr.Dropdown]) -> StudiesTab:
    gr.Markdown("### Create a study")
    with gr.Row():
        name = gr.Textbox(label="Name", elem_id="new-study-name")
        description = gr.Textbox(label="Description", elem_id="new-study-description")
    guidelines = gr.Textbox(label="Guidelines for annotators (Markdown)", lines=4, elem_id="new-study-guidelines")
    create = gr.Button("Create study", elem_id="create-study-btn")
    create_status = gr.Markdown(elem_id="create-status")

    gr.Markdown("### Import prompts")
    gr.Markdown("JSONL, CSV or Parquet; each record has `prompt` (text) or `messages` (a chat list), and "
                "optionally `id`, `reference`, `category`; other fields are kept as metadata.")
    with gr.Row():
        import_study = gr.Dropdown(label="Study (pick one, or type a new name)", choices=[], allow_custom_value=True,
                                   elem_id="import-study")
        upload = gr.File(label="Prompts file", file_types=[".jsonl", ".ndjson", ".csv", ".parquet"],
                         type="filepath", elem_id="prompts-file")
    import_btn = gr.Button("Import", elem_id="import-btn")
    import_status = gr.Markdown(elem_id="import-status")

    gr.Markdown("### Generate responses")
    with gr.Row():
        gen_study = gr.Dropdown(label="Study", choices=[], elem_id="gen-study")
        engine = gr.Radio(["embedded", "sglang"], value=ctx.default_engine.engine, label="Engine", elem_id="gen-engine")
        sglang_url = gr.Textbox(label="SGLang URL (sglang engine only)", value=ctx.default_engine.sglang_url or "",
                                elem_id="gen-sglang-url")
    with gr.Row():
        n = gr.Slider(1, 8, value=4, step=1, label="Responses per prompt (n)", elem_id="gen-n")
        temperature = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="Temperature", elem_id="gen-temperature")
        top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p", elem_id="gen-top-p")
        max_tokens = gr.Number(value=256, precision=0, minimum=1, maximum=32768, label="Max tokens",
                               elem_id="gen-max-tokens")
        seed = gr.Textbox(value="", label="Seed (blank = random)", elem_id="gen-seed")
    new_run = gr.Checkbox(label="Start a new run (needed when the settings differ from the study's run)",
                          elem_id="gen-new-run")
    start = gr.Button("Start generation", variant="primary", elem_id="gen-start")

    gr.Markdown("### Self-scoring")
    gr.Markdown("The model checks, critiques and scores its own responses (study and engine as above). "
                "Idempotent: what is already stored for the same model and method version is skipped.")
    methods = gr.CheckboxGroup(method_ids(), value=method_ids(), label="Methods (see docs/methods.md)",
                               elem_id="score-methods")
    score_btn = gr.Button("Score", variant="primary", elem_id="score-start")
    job_state = gr.State(None)
    job_progress = gr.Markdown("No job yet.", elem_id="job-progress")
    timer = gr.Timer(1.0)

    gr.Markdown("### Studies")
    overview = gr.Dataframe(headers=["study", "prompts", "runs", "responses", "labelled prompts"],
                            interactive=False, elem_id="studies-table")

    @shown_errors(1)
    def do_create(name_: str, desc: str, guide: str, request: gr.Request) -> str:
        admin_of(request)
        s = studies.create_study(ctx.db, name_, description=desc, guidelines=guide)
        return f"Created study **{s.name}**."

    @shown_errors(1)
    def do_import(study_: str | None, path: str | None, request: gr.Request) -> str:
        user = admin_of(request)
        if not study_:
            raise ServiceError("choose or type a study name first")
        if not path:
            raise ServiceError("upload a prompts file first")
        r = run_op(ctx, user, "import_prompts", {"study": study_, "path": path})
        return f"Imported {r['imported']} prompts into **{r['study']}** ({r['total']} in all)."

    @shown_errors(2)
    def do_start(study_: str | None, engine_: str, url: str, n_: float, t: float, p: float, mt: float | None,
                 seed_: str, new: bool, request: gr.Request) -> tuple[str, int]:
        user = admin_of(request)
        if not study_:
            raise ServiceError("choose a study first")
        if seed_.strip() and not seed_.strip().isdigit():
            raise ServiceError(f"the seed must be a whole number, not {seed_!r}")
        cfg = engine_from_form(engine_, url)
        payload = {"study": study_, "new_run": bool(new), "engine": cfg.model_dump(),
                   "settings": {"n": int(n_), "temperature": float(t), "top_p": float(p),
                                "max_tokens": int(mt or 256), "seed": int(seed_) if seed_.strip() else None}}
        job = run_op(ctx, user, "generate", payload)
        return progress_markdown(jobs.get_job(ctx.db, job["id"])), job["id"]

    @shown_errors(2)
    def do_score(study_: str | None, engine_: str, url: str, chosen: list[str], request: gr.Request
                 ) -> tuple[str, int]:
        user = admin_of(request)
        if not study_:
            raise ServiceError("choose a study first")
        if not chosen:
            raise ServiceError("choose at least one method")
        cfg = engine_from_form(engine_, url)
        job = run_op(ctx, user, "score", {"study": study_, "methods": ",".join(chosen), "engine": cfg.model_dump()})
        return progress_markdown(jobs.get_job(ctx.db, job["id"])), job["id"]

    @shown_errors(1)
    def poll(job_id: int | None, request: gr.Request) -> str:
        admin_of(request)
        if job_id is None:
            latest = jobs.list_jobs(ctx.db, limit=1)
            return progress_markdown(latest[0]) if latest else "No job yet."
        return progress_markdown(jobs.get_job(ctx.db, job_id))

    settings_panel = study_settings.build(ctx, admin_of)
    cfg_study = settings_panel.study
    pickers = [import_study, gen_study, cfg_study, *other_study_pickers]

    def engine_from_form(engine_: str, url: str) -> EngineConfig:
        """The server's engine settings with the form's engine choice and URL on top."""
        return EngineConfig(**{**ctx.default_engine.model_dump(), "engine": engine_,
                               "sglang_url": url.strip() or ctx.default_engine.sglang_url})

    def refresh(request: gr.Request) -> list[Any]:
        """After a study changes: the overview table and every study picker's choices."""
        if not role_ok(request):
            return [gr.skip()] * (1 + len(pickers))
        names = [s.name for s in studies.list_studies(ctx.db)]
        return [overview_rows(ctx), *[gr.Dropdown(choices=names) for _ in pickers]]

    def role_ok(request: gr.Request) -> bool:
        try:
            admin_of(request)
        except PermissionDenied:
            return False
        return True

    create.click(do_create, [name, description, guidelines], [create_status], api_visibility="private")
    import_btn.click(do_import, [import_study, upload], [import_status], api_visibility="private")
    start.click(do_start, [gen_study, engine, sglang_url, n, temperature, top_p, max_tokens, seed, new_run],
                [job_progress, job_state], api_visibility="private")
    score_btn.click(do_score, [gen_study, engine, sglang_url, methods], [job_progress, job_state],
                    api_visibility="private")
    timer.tick(poll, [job_state], [job_progress], api_visibility="private", show_progress="hidden")
    for btn in (create, import_btn, start):
        btn.click(refresh, None, [overview, *pickers], api_visibility="private")
    return StudiesTab([import_study, gen_study, cfg_study], overview, settings_panel)


def overview_rows(ctx: AppContext) -> list[list[Any]]:
    return [list(r) for r in ctx.db.fetchall(
        """SELECT s.name,
                  (SELECT count(*) FROM prompt p WHERE p.study_id = s.id),
                  (SELECT count(*) FROM generation_run g WHERE g.study_id = s.id),
                  (SELECT count(*) FROM response r JOIN prompt p ON p.id = r.prompt_id WHERE p.study_id = s.id),
                  (SELECT count(DISTINCT prompt_id) FROM judgment j WHERE j.study_id = s.id
                     AND j.judge_kind = 'human' AND j.superseded_at IS NULL)
           FROM study s ORDER BY s.id""")]

