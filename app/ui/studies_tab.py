"""The Studies and Admin tabs (admins only; every handler checks the role again server-side)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from app.services import estimate, file_import, overview
from app.services.context import AppContext, EngineConfig, PermissionDenied, ServiceError
from app.services.ops import run_op
from app.render import md_literal
from app.ui import study_settings
from app.ui.errors import shown_errors
from backend.methods.registry import DEFAULT_METHODS, method_choices
from storage.models import Job

TABLE_HEADERS = ["study", "prompts", "runs", "responses", "labelled prompts"]


def progress_markdown(job: Job, study: str | None = None) -> str:
    """One job as a line of text with a progress bar; texts from the database are escaped.

    >>> progress_markdown(Job(id=3, kind="generate", status="running", done=5, total=10), "s1")
    '**Job #3 (generate) · s1: running** `██████████░░░░░░░░░░` 5 / 10 (50%)'
    """
    frac = job.done / job.total if job.total else (1.0 if job.status == "done" else 0.0)
    bar = "█" * round(20 * frac) + "░" * (20 - round(20 * frac))
    where = f" · {md_literal(study)}" if study else ""
    text = f"**Job #{job.id} ({job.kind}){where}: {job.status}** `{bar}` {job.done} / {job.total} ({frac:.0%})"
    if job.message:
        text += f" — {md_literal(job.message)}"
    if job.error:
        text += f"  \n⚠️ {md_literal(job.error)}"
    return text


def jobs_markdown(ov: overview.PageOverview) -> str:
    """Every running job with its own bar, then the jobs that ended last with their outcome."""
    lines = ["**Running**", ""]
    lines += [f"- {progress_markdown(j.job, j.study)}" for j in ov.running] or ["- No job is running."]
    if ov.ended:
        lines += ["", "**Ended last**", ""] + [f"- {progress_markdown(j.job, j.study)}" for j in ov.ended]
    return "\n".join(lines)


def table_rows(ov: overview.PageOverview) -> list[list[Any]]:
    return [[c.name, c.prompts, c.runs, c.responses, c.labelled_prompts] for c in ov.table]


# No name column: a GGUF's id is its metadata name with the quantisation and a SHA-256 prefix, an SGLang
# model's is its name. The lineage is one cell: the iteration, then parent and export when recorded. The
# SHA-256 column shows a prefix with the whole digest as the cell's title: 64 unbreakable characters took a
# third of the table and squeezed "iteration" and "quant" into broken words, at 1400 px and more at 800.
MODEL_HEADERS = ["study", "used for", "model id", "iteration", "quant", "size", "SHA-256"]
MODEL_TYPES = ["str", "str", "str", "str", "str", "str", "html"]
# Shares of the width that hold "iteration", "Q4_K_M", "4.58 GiB" and the SHA prefix on one line down to
# 800 px (with the smaller type style.css gives the table below 1100 px); the model id and the lineage wrap
# at their hyphens and spaces instead.
MODEL_WIDTHS = ["13%", "15%", "23%", "12%", "10%", "11%", "16%"]
SHA_SHOWN = 12  # hex digits: as many as a GGUF's model id carries


def sha_cell(sha256: str | None) -> str:
    """A SHA-256 as its prefix with the whole value in the title (escaped: the column renders HTML).

    >>> sha_cell("ab" * 32)
    '<span title="abababababababababababababababababababababababababababababababab">abababababab…</span>'
    >>> sha_cell(None), sha_cell('"><b>x')
    ('', '<span title="&quot;&gt;&lt;b&gt;x">&quot;&gt;&lt;b&gt;x</span>')
    """
    if not sha256:
        return ""
    shown = sha256[:SHA_SHOWN] + ("…" if len(sha256) > SHA_SHOWN else "")
    return f'<span title="{html.escape(sha256)}">{html.escape(shown)}</span>'


def lineage_cell(u: overview.ModelUse) -> str:
    """
    >>> lineage_cell(overview.ModelUse(study="s", role="r", model_id="b", parent_model_id="a",
    ...              trained_on_export_id=3, iteration=1))
    '1 · from a · export #3'
    >>> lineage_cell(overview.ModelUse(study="s", role="r", model_id="a", iteration=0))
    '0'
    """
    if u.iteration is None:
        return ""
    parts = [str(u.iteration)]
    if u.parent_model_id is not None:
        parts.append(f"from {u.parent_model_id}")
    if u.trained_on_export_id is not None:
        parts.append(f"export #{u.trained_on_export_id}")
    return " · ".join(parts)


def model_rows(uses: list[overview.ModelUse]) -> list[list[Any]]:
    """
    >>> model_rows([overview.ModelUse(study="s", role="run #1 (batch, embedded)", model_id="m@ab",
    ...             quantisation="Q4_K_M", size_bytes=4_920_000_000, sha256="ab" * 32, iteration=0)])
    ... # doctest: +ELLIPSIS
    [['s', 'run #1 (batch, embedded)', 'm@ab', '0', 'Q4_K_M', '4.58 GiB', '<span title="abab...abab">abababababab…</span>']]
    """
    def size(n: int | None) -> str:
        return "" if n is None else (f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB")

    return [[u.study, u.role, u.model_id, lineage_cell(u), u.quantisation or "", size(u.size_bytes),
             sha_cell(u.sha256)] for u in uses]


def lineage_fields(parent: str | None, export: str | None) -> dict[str, Any]:
    """The Generate and Score forms' optional lineage inputs as the `generate` / `score` payload's fields
    (the same the CLI's --parent-model / --trained-on-export send); blank inputs send nothing.

    >>> lineage_fields(" it0 ", "3"), lineage_fields(None, " ")
    ({'parent_model': 'it0', 'trained_on_export': 3}, {})
    """
    out: dict[str, Any] = {}
    if parent and parent.strip():
        out["parent_model"] = parent.strip()
    text = (export or "").strip().lstrip("#")
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ServiceError(f"the export run (--trained-on-export) must be an export run's number such as 3, "
                               f"not {export!r}")
        out["trained_on_export"] = int(text)
    return out


def _duration(seconds: float) -> str:
    """
    >>> _duration(42.4), _duration(540), _duration(7200)
    ('42 s', '9.0 min', '2.0 h')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_markdown(est: estimate.ScoreEstimate) -> str:
    """The estimate as a sentence and a per-method table."""
    rates = []
    nothing_left = not (est.reads or est.generations)  # then every measured speed is worth showing
    for kind, rate, n in (("read", est.read_rate, est.reads), ("generation", est.generation_rate, est.generations)):
        if rate is not None and (n or nothing_left):
            rates.append(f"{rate.seconds_per_call:.2f} s per {kind} (measured on job #{rate.job_id}, "
                         f"{rate.calls} {kind}s)")
    total = est.seconds
    if total is None:
        missing = [k for k, n, r in (("reads", est.reads, est.read_rate),
                                     ("generations", est.generations, est.generation_rate)) if n and r is None]
        when = (f"time unknown: no finished job of {md_literal(est.engine)} has measured {' or '.join(missing)} "
                "yet (the first job measures it)")
    else:
        when = f"about **{_duration(total)}**"
    pending = (f" {est.without_responses} of {est.n_prompts} prompts have no responses yet and are not counted "
               "(their samples may still be generating)." if est.without_responses else "")
    lines = [f"**Estimate** for **{md_literal(est.study)}**: {est.reads} prefill reads and {est.generations} "
             f"generations still to run, {when}." + (f" At {'; '.join(rates)}." if rates else "") + pending, "",
             "| method | prompts | already scored | reads | generations | time |", "|---|---|---|---|---|---|"]
    for m in est.methods:
        t = "–" if not (m.reads or m.generations) else ("unknown" if m.seconds is None else _duration(m.seconds))
        lines.append(f"| {m.method} | {m.prompts} | {m.stored} | {m.reads} | {m.generations} | {t} |")
    return "\n".join(lines)


@dataclass
class StudiesTab:
    study_choices: list[gr.Dropdown]  # import, generate/score, settings
    gen_study: gr.Dropdown
    overview: gr.Dataframe
    jobs: gr.Markdown
    ended: gr.Textbox  # hidden: the ids of the last ended jobs, so the estimate follows what they stored
    models: gr.Dataframe
    settings: study_settings.SettingsPanel


def build(ctx: AppContext, admin_of: Callable[[gr.Request], str], other_study_pickers: list[gr.Dropdown]) -> StudiesTab:
    gr.Markdown("### Create a study")
    with gr.Row():
        name = gr.Textbox(label="Name", elem_id="new-study-name")
        description = gr.Textbox(label="Description", elem_id="new-study-description")
    guidelines = gr.Textbox(label="Guidelines for annotators (Markdown)", lines=4, elem_id="new-study-guidelines")
    create = gr.Button("Create study", elem_id="create-study-btn")
    create_status = gr.Markdown(elem_id="create-status")

    gr.Markdown("### Import prompts or judgments")
    gr.Markdown("Prompts: JSONL, CSV or Parquet; each record has `prompt` (text) or `messages` (a chat list), and "
                "optionally `id`, `reference`, `category`; other fields are kept as metadata. Judgments: items with "
                "their responses and human or model verdicts, in critlab's format or another tool's "
                "(docs/formats.md); the whole file is checked before anything is stored.")
    with gr.Row():
        import_study = gr.Dropdown(label="Study (pick one, or type a new name)", choices=[], allow_custom_value=True,
                                   elem_id="import-study")
        import_kind = gr.Dropdown(label="What the file holds", choices=[(v, k) for k, v in file_import.KINDS.items()],
                                  value="prompts", elem_id="import-kind")
    with gr.Row():
        upload = gr.File(label="File", file_types=[".jsonl", ".ndjson", ".csv", ".parquet", ".json"],
                         type="filepath", elem_id="prompts-file")
        # No file_types: which file the format needs is for its reader to check (and say, naming the file).
        companion = gr.File(label="Second file", type="filepath", visible=False, elem_id="import-companion")
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
    gr.Markdown("**Model lineage** (optional, for Generate and Score): the engine's model is a later iteration, "
                "trained from a parent model on an export run, as `--parent-model` / `--trained-on-export` record "
                "it. A lineage once recorded is kept; a different one is refused.", elem_id="gen-lineage-help")
    with gr.Row():
        parent_model = gr.Dropdown(label="Parent model (--parent-model; blank = none)", choices=[], value=None,
                                   allow_custom_value=True, elem_id="gen-parent-model")
        trained_on = gr.Textbox(label="Trained on export run # (--trained-on-export; blank = none)", value="",
                                elem_id="gen-trained-on-export")
    start = gr.Button("Start generation", variant="primary", elem_id="gen-start")

    gr.Markdown("### Self-scoring")
    gr.Markdown("The model checks, critiques and scores its own responses (study and engine as above). "
                "Idempotent: what is already stored for the same model and method version is skipped. "
                f"The {len(DEFAULT_METHODS)} methods ticked at first write no text; checklist, critique, rubric "
                "and gsa generate text and take far longer (see docs/methods.md).")
    methods = gr.CheckboxGroup(method_choices(), value=list(DEFAULT_METHODS), label="Methods",
                               elem_id="score-methods")
    estimate_box = gr.Markdown(elem_id="score-estimate")
    score_btn = gr.Button("Score", variant="primary", elem_id="score-start")
    start_status = gr.Markdown(elem_id="job-start-status")

    gr.Markdown("### Jobs")
    jobs_box = gr.Markdown("No job is running.", elem_id="job-progress")
    ended = gr.Textbox(visible=False, elem_id="jobs-ended")

    gr.Markdown("### Studies")
    overview_table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="studies-table")
    gr.Markdown("### Models")
    gr.Markdown("The model behind each generation run and each model judge: an embedded GGUF is named by its "
                "metadata and told apart by its SHA-256 (its first 12 digits; hover for all 64); an SGLang model by "
                "the id its server reports. "
                "Iteration: steps from the model's family root, recorded with `--parent-model` and "
                "`--trained-on-export` on `critlab generate` / `critlab score`.")
    models_table = gr.Dataframe(headers=MODEL_HEADERS, datatype=MODEL_TYPES, interactive=False,
                                column_widths=MODEL_WIDTHS, elem_id="models-table", wrap=True)

    @shown_errors(1)
    def do_create(name_: str, desc: str, guide: str, request: gr.Request) -> str:
        user = admin_of(request)
        r = run_op(ctx, user, "create_study", {"name": name_, "description": desc, "guidelines": guide})
        return (f"Created study **{md_literal(r['study'])}**. Annotators label it once they are its members: tick it "
                "for them in the Admin tab.")

    @shown_errors(1)
    def do_import(study_: str | None, kind: str, path: str | None, second: str | None, request: gr.Request) -> str:
        user = admin_of(request)
        r = file_import.import_upload(ctx, user, study_, kind, path, second)
        if r["kind"] == "prompts":
            return f"Imported {r['imported']} prompts into **{md_literal(r['study'])}** ({r['total']} in all)."
        return md_literal(r["message"][0].upper() + r["message"][1:]) + "."

    def show_companion(kind: str, request: gr.Request) -> Any:
        admin_of(request)
        if kind in file_import.COMPANIONS:
            return gr.File(visible=True, label=file_import.COMPANIONS[kind][0].capitalize())
        return gr.File(visible=False)

    @shown_errors(1)
    def do_start(study_: str | None, engine_: str, url: str, n_: float, t: float, p: float, mt: float | None,
                 seed_: str, new: bool, parent: str | None, export: str, request: gr.Request) -> str:
        user = admin_of(request)
        if not study_:
            raise ServiceError("choose a study first")
        if seed_.strip() and not seed_.strip().isdigit():
            raise ServiceError(f"the seed must be a whole number, not {seed_!r}")
        cfg = engine_from_form(engine_, url)
        payload = {"study": study_, "new_run": bool(new), "engine": cfg.model_dump(), **lineage_fields(parent, export),
                   "settings": {"n": int(n_), "temperature": float(t), "top_p": float(p),
                                "max_tokens": int(mt or 256), "seed": int(seed_) if seed_.strip() else None}}
        return started(run_op(ctx, user, "generate", payload))

    @shown_errors(1)
    def do_score(study_: str | None, engine_: str, url: str, chosen: list[str], parent: str | None, export: str,
                 request: gr.Request) -> str:
        user = admin_of(request)
        if not study_:
            raise ServiceError("choose a study first")
        if not chosen:
            raise ServiceError("choose at least one method")
        cfg = engine_from_form(engine_, url)
        return started(run_op(ctx, user, "score", {"study": study_, "methods": ",".join(chosen),
                                                    "engine": cfg.model_dump(), **lineage_fields(parent, export)}))

    def started(job: dict[str, Any]) -> str:
        if job["status"] == "failed":
            return f"⚠️ Job #{job['id']} ({job['kind']}) failed: {md_literal(job['error'] or '')}"
        return f"Started job #{job['id']} ({job['kind']}); its progress is under **Jobs**."

    @shown_errors(1)
    def do_estimate(study_: str | None, engine_: str, url: str, chosen: list[str], request: gr.Request) -> str:
        admin_of(request)
        if not study_:
            return "Choose a study to see what scoring it would take."
        if not chosen:
            return "Choose at least one method."
        return estimate_markdown(estimate.estimate_scoring(ctx, study_, chosen, engine_from_form(engine_, url)))

    settings_panel = study_settings.build(ctx, admin_of)
    cfg_study = settings_panel.study
    pickers = [import_study, gen_study, cfg_study, *other_study_pickers]

    def engine_from_form(engine_: str, url: str) -> EngineConfig:
        """The server's engine settings with the form's engine choice and URL on top."""
        return EngineConfig(**{**ctx.default_engine.model_dump(), "engine": engine_,
                               "sglang_url": url.strip() or ctx.default_engine.sglang_url})

    def refresh(request: gr.Request) -> list[Any]:
        """After a study changes: the overview table and every study picker's choices."""
        try:
            ov = overview.page_overview(ctx, admin_of(request), admin=True)
        except PermissionDenied:
            return [gr.skip()] * (1 + len(pickers))
        return [table_rows(ov), *[gr.Dropdown(choices=ov.studies) for _ in pickers]]

    create.click(do_create, [name, description, guidelines], [create_status], api_visibility="private")
    import_btn.click(do_import, [import_study, import_kind, upload, companion], [import_status],
                     api_visibility="private")
    import_kind.change(show_companion, [import_kind], [companion], api_visibility="private", show_progress="hidden")
    start.click(do_start, [gen_study, engine, sglang_url, n, temperature, top_p, max_tokens, seed, new_run,
                           parent_model, trained_on], [start_status], api_visibility="private")
    score_btn.click(do_score, [gen_study, engine, sglang_url, methods, parent_model, trained_on], [start_status],
                    api_visibility="private")
    estimate_inputs = [gen_study, engine, sglang_url, methods]
    for changed in (gen_study.change, engine.change, methods.change, ended.change):
        # A job that ends changes what is stored, and the speed measured.
        changed(do_estimate, estimate_inputs, [estimate_box], api_visibility="private", show_progress="hidden")
    for btn in (create, import_btn, start):
        btn.click(refresh, None, [overview_table, *pickers], api_visibility="private")

    def show_models(request: gr.Request) -> list[list[Any]]:
        admin_of(request)
        return model_rows(overview.model_usage(ctx))

    def known_models(request: gr.Request) -> Any:
        """The parent picker offers the models the Models table lists (any other id may be typed)."""
        admin_of(request)
        return gr.Dropdown(choices=list(dict.fromkeys(u.model_id for u in overview.model_usage(ctx))))

    parent_model.focus(known_models, None, [parent_model], api_visibility="private", show_progress="hidden")
    # A run starts with its model; a job that ends may have stored a new judge.
    for changed in (start.click, score_btn.click, ended.change):
        changed(show_models, None, [models_table], api_visibility="private", show_progress="hidden")
    return StudiesTab([import_study, gen_study, cfg_study], gen_study, overview_table, jobs_box, ended, models_table,
                      settings_panel)
