"""The Studies tab's services: one default method list for the Studies tab, the Live tab and the CLI;
the page overview (studies, every running job, the last ended ones); an upload's own name in errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.services import live, ops, overview
from app.services.context import AppContext
from app.ui.layout import build_ui
from backend.methods.registry import DEFAULT_METHODS, method_ids, parse_method_list
from backend.methods.table import calls_table_markdown
from storage import annotators, jobs, members, studies
from storage.db import Database
from storage.models import StudyConfig
from tests.builders import label, make_prompt, make_responses, make_run
from tests.scripted_engine import ScriptedEngine

ROOT = Path(__file__).resolve().parents[1]
ISSUE_DEFAULTS = ["neg_perplexity", "neg_entropy", "self_certainty", "select_majority", "select_borda", "p_true",
                  "judge_score"]


@pytest.fixture
def ctx(db: Database) -> AppContext:
    return AppContext(db=db, engine_factory=lambda cfg: ScriptedEngine())


# -- finding 7: one default list ------------------------------------------------------------------------
def _component_value(ctx: AppContext, elem_id: str) -> list[str]:
    config = build_ui(ctx, role_of=lambda name: "admin").get_config_file()
    return next(c["props"]["value"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)


def test_studies_tab_live_tab_and_the_service_default_to_the_same_list(ctx: AppContext) -> None:
    assert list(DEFAULT_METHODS) == ISSUE_DEFAULTS
    assert parse_method_list(None) == parse_method_list("default") == ISSUE_DEFAULTS
    assert parse_method_list("all") == method_ids()
    assert _component_value(ctx, "score-methods") == ISSUE_DEFAULTS
    assert _component_value(ctx, "live-methods") == ISSUE_DEFAULTS
    assert live.LiveRequest(messages=[{"role": "user", "content": "hi"}]).methods == ISSUE_DEFAULTS


def test_a_score_request_without_methods_runs_the_defaults(ctx: AppContext, db: Database) -> None:
    s = studies.create_study(db, "s")
    make_responses(db, make_prompt(db, s.id, "p1"), ["4", "5"])
    job = ops.score(ctx, "admin", ops.Score(study="s"))
    ctx.wait_jobs(timeout=60)
    row = json.loads(db.fetchval("SELECT params FROM job WHERE id = ?", [job["id"]]))
    assert row["methods"] == ISSUE_DEFAULTS
    assert jobs.get_job(db, job["id"]).status == "done"
    assert db.fetchval("SELECT count(DISTINCT method) FROM judgment WHERE judge_kind = 'model'") == 7


def test_cli_score_help_names_the_default_and_how_to_get_all() -> None:
    out = CliRunner().invoke(main, ["score", "--help"]).output
    flat = " ".join(out.split())
    assert "Default: " + ", ".join(ISSUE_DEFAULTS) + "." in flat
    assert "'all' for every method" in flat and "--methods all" in flat


@pytest.mark.model
def test_cli_score_without_methods_runs_the_defaults(tmp_path: Path) -> None:
    """`critlab score` with no --methods, on the real embedded engine: a study with no responses yet makes
    no engine call, and the job still records which methods it ran."""
    db_path = tmp_path / "c.duckdb"
    with Database(db_path) as db:
        make_prompt(db, studies.create_study(db, "s").id, "p1")
    r = CliRunner().invoke(main, ["score", "--study", "s", "--db", str(db_path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    with Database(db_path) as db:
        assert json.loads(db.fetchval("SELECT params FROM job"))["methods"] == ISSUE_DEFAULTS


def test_docs_and_readme_state_the_same_defaults() -> None:
    methods_doc = (ROOT / "docs" / "methods.md").read_text()
    assert calls_table_markdown() in methods_doc, "regenerate: python -m backend.methods.table"
    defaults_line = re.search(r"the methods that write no text: (.*?) \(`DEFAULT_METHODS`", methods_doc, re.S)
    assert defaults_line and re.findall(r"`(\w+)`", defaults_line.group(1)) == ISSUE_DEFAULTS
    readme = (ROOT / "README.md").read_text()
    said = re.search(r"it runs the seven methods that write no text \((.*?)\)", readme, re.S)
    assert said and re.findall(r"`(\w+)`", said.group(1)) == ISSUE_DEFAULTS


# -- finding 6: what a page refreshes ----------------------------------------------------------------------
def test_overview_lists_every_running_job_and_the_last_ended(ctx: AppContext, db: Database) -> None:
    a, b = studies.create_study(db, "alpha"), studies.create_study(db, "beta")
    run = make_run(db, a.id)
    pid = make_prompt(db, a.id, "p1")
    rids = make_responses(db, pid, ["x", "y"], run_id=run)
    label(db, a.id, pid, "ann", rids[0], {rids[0]: 5})
    ended = []
    for i in range(7):
        j = jobs.create_job(db, "score", study_id=a.id, total=4)
        jobs.update_job(db, j.id, status="failed" if i == 6 else "done", done=4,
                        error="engine went away" if i == 6 else None)
        ended.append(j.id)
    gen = jobs.create_job(db, "generate", study_id=b.id, total=10)
    jobs.update_job(db, gen.id, status="running", done=3)
    score = jobs.create_job(db, "score", study_id=a.id, total=8)
    jobs.update_job(db, score.id, status="running", done=1)
    queued = jobs.create_job(db, "score", study_id=b.id)

    ov = overview.page_overview(ctx, "admin", admin=True)
    assert ov.studies == ["alpha", "beta"]
    assert [(j.job.id, j.study, j.job.status) for j in ov.running] == [
        (gen.id, "beta", "running"), (score.id, "alpha", "running"), (queued.id, "beta", "queued")]
    assert [j.job.id for j in ov.ended] == ended[::-1][:overview.RECENT_JOBS]
    assert ov.ended[0].job.error == "engine went away"
    assert [(c.name, c.prompts, c.runs, c.responses, c.labelled_prompts) for c in ov.table] == [
        ("alpha", 1, 1, 2, 1), ("beta", 0, 0, 0, 0)]


def test_an_annotator_gets_the_study_lists_only(ctx: AppContext, db: Database) -> None:
    annotators.add_annotator(db, "ann", "annotator", "ann-pass-12")
    alpha = studies.create_study(db, "alpha")
    studies.create_study(db, "beta", config=StudyConfig(live_annotators=True))
    jobs.create_job(db, "score")
    ov = overview.page_overview(ctx, "ann", admin=False)
    assert ov.studies == [] and ov.live_studies == []  # a new study has no members
    members.add(db, alpha.id, "ann", "admin")
    ov = overview.page_overview(ctx, "ann", admin=False)
    assert ov.studies == ["alpha"] and ov.live_studies == []  # beta grants Live, but only to its members
    assert ov.table == [] and ov.running == [] and ov.ended == []


def test_the_admin_pickers_list_every_study_in_the_order_made(ctx: AppContext, db: Database) -> None:
    """The Agreement and Export pickers refresh from overview.study_names (no database call in app/ui)."""
    assert overview.study_names(ctx) == []
    for name in ("beta", "alpha", "gamma"):
        studies.create_study(db, name)
    assert overview.study_names(ctx) == ["beta", "alpha", "gamma"]
    assert overview.study_names(ctx) == overview.page_overview(ctx, "root", admin=True).studies


def test_a_page_opens_from_one_service_call(ctx: AppContext, db: Database) -> None:
    """overview.page_load is all the page load asks of the services (besides the Label tab's first item): the
    study it opens on (the first with work left), the Live tab's prompts, and for admins the models and people."""
    annotators.add_annotator(db, "boss", "admin", "boss-pass-12")
    annotators.add_annotator(db, "ann", "annotator", "ann-pass-12")
    done = studies.create_study(db, "done")  # nothing to label
    todo = studies.create_study(db, "todo", config=StudyConfig(live_annotators=True))
    for s in (done, todo):
        members.add(db, s.id, "ann", "admin")
    make_responses(db, make_prompt(db, todo.id, "q1"), ["a", "b"])
    page = overview.page_load(ctx, "ann", admin=False)
    assert page.overview == overview.page_overview(ctx, "ann", admin=False)
    assert (page.first, page.live_first, page.live_prompts) == ("todo", "todo", ["q1"])
    assert page.models == [] and page.people == []
    admin = overview.page_load(ctx, "boss", admin=True)
    assert admin.first == "todo" and admin.live_first == "todo" and admin.live_prompts == ["q1"]
    assert admin.models == overview.model_usage(ctx)
    assert admin.people == ops.run_op(ctx, "boss", "list_annotators", {})["annotators"]
    assert [p["name"] for p in admin.people] == ["boss", "ann"]


# -- finding 8 (one item): an upload's own name in import errors ------------------------------------------
def test_import_error_names_the_uploaded_file_not_its_temp_path(ctx: AppContext, db: Database,
                                                                tmp_path: Path) -> None:
    upload = tmp_path / "gradio" / "5f1c0ffee" / "my prompts.jsonl"  # how Gradio keeps an upload
    upload.parent.mkdir(parents=True)
    upload.write_text('{"id": "a", "prompt": "fine"}\n{"id": "b", "prompt": }\n')
    with pytest.raises(ValueError) as e:
        ops.run_op(ctx, "admin", "import_prompts", {"study": "new", "path": str(upload),
                                                    "display_name": "my prompts.jsonl"})
    assert str(e.value).startswith("my prompts.jsonl:2: invalid JSON")
    assert str(tmp_path) not in str(e.value)
    assert db.fetchval("SELECT count(*) FROM study") == 0 and db.fetchval("SELECT count(*) FROM prompt") == 0
